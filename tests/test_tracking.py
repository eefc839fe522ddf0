"""MLflow tracking against a real SQLite store, written and read back through MLflow's API."""

import multiprocessing
import socket

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from asvp.environment import compute_environment, hardware_label
from benchmark import metric_names as names
from benchmark.cli import main
from benchmark.tracking import CellLogger, experiment_id


def _create(uri, barrier, results):
    import os

    os.environ["MLFLOW_TRACKING_URI"] = uri
    client = MlflowClient()
    client.search_experiments()  # connect (and migrate) before the race starts
    barrier.wait()
    results.put(experiment_id(client, "raced"))


def test_processes_racing_to_create_an_experiment_all_get_the_same_one(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # the tables exist, the experiment does not
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_create, args=(uri, barrier, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    ids = {results.get(timeout=5) for _ in workers}
    assert ids == {MlflowClient(uri).get_experiment_by_name("raced").experiment_id}


TINY = """
name: environment
datasets:
  - name: mnist5k
    options: {{test_size: 50, pool_size: 100}}
    budgets: [10, 20]
backbone: efficientnet_lite0
image_size: 32
seeds: [0]
strategies: [random]
pipelines:
  - {{pipeline: svpp, train_method: lpft}}
finetune: {{epochs: 1, batch_size: 8, lr_backbone: 0.003, lr_head: 0.03, milestones: []}}
costs: {{label_price: 0.1, device_hour: {{cpu: 1.0, cuda: 3.0}}}}
executor: {{kind: debug}}
feature_store: {root}/features
state_dir: {root}/state
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-cell grid (the random baseline, two rounds) run in this process into a fresh
    SQLite store: the store's URI and the run's id."""
    root = tmp_path_factory.mktemp("environment")
    grid = root / "environment.yaml"
    grid.write_text(TINY.format(root=root))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    assert main(["run", str(grid), "--tracking-uri", uri]) == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("environment").experiment_id])
    return uri, run.info.run_id


def _environment_json(uri, run_id):
    mlflow.set_tracking_uri(uri)
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/environment.json")


def test_a_cell_run_carries_what_it_computed_with_as_tags_and_in_environment_json(tiny_run):
    uri, run_id = tiny_run
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["state"] == "finished"
    env = {key[len("env.") :]: value for key, value in tags.items() if key.startswith("env.")}
    assert set(env) == set(compute_environment()) | {"hardware"}
    assert env["hardware"] == hardware_label(env)
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert int(env["torch_threads"]) >= 1
    assert env["host"] == socket.gethostname() and env["gpu"] == "none"
    assert {"env.cpu_model", "env.cuda", "env.cudnn", "env.driver", "env.slurm_job"} <= set(tags)
    record = _environment_json(uri, run_id)
    assert set(record) >= {"torch", "mlflow", "asvp-bench"}  # package versions, as before
    (attempt,) = record["attempts"]
    assert attempt["attempt"] == 1 and set(attempt["packages"]) >= {"torch", "mlflow"}
    assert {key: attempt[key] for key in env} == env


def test_a_resumed_attempt_elsewhere_replaces_the_tags_and_adds_an_attempt(tiny_run, monkeypatch):
    uri, run_id = tiny_run
    client = MlflowClient(uri)
    first = client.get_run(run_id).data.tags["env.hardware"]
    gpu = compute_environment() | {"gpu": "NVIDIA H100 80GB", "gpu_count": "1", "cuda": "12.4"}
    monkeypatch.setattr("benchmark.tracking.cell_logger.compute_environment", lambda: dict(gpu))
    logger = CellLogger(client, "environment", run_id, "cpu")
    assert client.get_run(run_id).data.tags["env.hardware"] == first  # not at creation
    logger.log_environment()
    logger.log_environment()  # once per attempt
    tags = client.get_run(run_id).data.tags
    assert tags["env.hardware"] == "NVIDIA H100 80GB x1, CUDA 12.4" and tags["env.cuda"] == "12.4"
    attempts = _environment_json(uri, run_id)["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert [a["hardware"] for a in attempts] == [first, "NVIDIA H100 80GB x1, CUDA 12.4"]


def test_every_rounds_fine_tune_logs_its_images_per_second_and_no_memory_on_cpu(tiny_run):
    """Each evaluation budget's fine-tune logs its throughput at that step (labels); the peak
    GPU memory is measured on CUDA only and never logged as a zero on a CPU."""
    uri, run_id = tiny_run
    client = MlflowClient(uri)
    history = client.get_metric_history(run_id, names.FINETUNE_IMAGES_PER_SECOND)
    assert sorted(point.step for point in history) == [10, 20]
    assert all(point.value > 0 for point in history)
    assert names.FINETUNE_PEAK_GPU_MEMORY_GIB not in client.get_run(run_id).data.metrics
