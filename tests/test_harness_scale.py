"""The harness's load generator (:mod:`perf.harness_load`): its fake runs look like those real
cells leave (metric names, tags, params, artifacts, each round's phases), and a grid of them is
what ``status`` calls finished, what a re-submission skips and what ``report`` tabulates.
No timing is asserted: speed is ``make bench``'s (:mod:`perf.harness_scale`)."""

import json

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from perf.harness_grid import cells_per_grid, write_grid
from perf.harness_load import generate

TINY = """
name: tiny
datasets:
  - name: mnist5k
    options: {{test_size: 100, pool_size: 200}}
    budgets: [10, 20, 30]
backbone: efficientnet_lite0
image_size: 32
seeds: [0]
strategies: [random, margin]
full_data: true
pipelines:
  - {{pipeline: standard, train_method: ft}}
  - {{pipeline: svpp, train_method: lpft}}
  - {{pipeline: asvp, train_method: auto, trigger: {{rule: schedule, at_labels: [20]}}}}
finetune: {{epochs: 1, batch_size: 8, lr_backbone: 0.003, lr_head: 0.03, milestones: []}}
linear_probe: {{epochs: 5}}
proxy: {{epochs: 5, batch_size: 64}}
costs: {{label_price: 0.1, device_hour: {{cpu: 1.0}}}}
executor: {{kind: local, max_parallel: 2}}
feature_store: {root}/features
state_dir: {root}/state
"""
SAME_TAG_VALUES = (
    "run_key", "grid", "dataset", "dataset_label", "backbone", "pipeline", "train_method",
    "strategy", "seed", "state", "executor", "feature_updates_at", "resumed_rounds", "attempts",
)  # fmt: skip


def _artifacts(client, run_id, path=None):
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(found)


def _rounds(uri, run_id, count):
    mlflow.set_tracking_uri(uri)
    records = [
        mlflow.artifacts.load_dict(f"runs:/{run_id}/rounds/round_{r:03d}.json")
        for r in range(count)
    ]
    return [(sorted(r), sorted(r["seconds"]), r["train_method"]) for r in records]


def _shape(uri, grid_name):
    """Per run key: what a run holds, values aside."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(grid_name)
    shapes = {}
    for run in client.search_runs([experiment.experiment_id]):
        tags = run.data.tags
        artifacts = _artifacts(client, run.info.run_id)
        rounds = sum(path.startswith("rounds/") for path in artifacts)
        shapes[tags["run_key"]] = {
            "status": run.info.status,
            "metrics": sorted(run.data.metrics),
            "params": sorted(run.data.params),
            "tags": sorted(tags),
            "tag values": {key: tags[key] for key in SAME_TAG_VALUES},
            "artifacts": artifacts,
            "rounds": _rounds(uri, run.info.run_id, rounds),
        }
    return shapes


@pytest.fixture(scope="module")
def real_and_fake(tmp_path_factory):
    """The same tiny grid: run for real (one store), and generated (another)."""
    root = tmp_path_factory.mktemp("harness")
    grid = root / "tiny.yaml"
    grid.write_text(TINY.format(root=root))
    real, fake = f"sqlite:///{root / 'real.db'}", f"sqlite:///{root / 'fake.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert main(["run", str(grid), "--tracking-uri", real]) == 0
        assert generate(grid, fake) == 5
    return _shape(real, "tiny"), _shape(fake, "tiny")


def test_fake_runs_hold_what_real_cells_log(real_and_fake):
    real, fake = real_and_fake
    assert sorted(fake) == sorted(real)  # the run keys the grid expands to, one run each
    for key, shape in real.items():
        assert fake[key] == shape, key


@pytest.fixture
def generated_grid(tmp_path, monkeypatch):
    """A 12-cell grid of the benchmark's shape with every run written by the generator."""
    monkeypatch.chdir(tmp_path)
    grid = write_grid(tmp_path, datasets=1, seeds=2, strategies=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cells_per_grid(1, 2, 2) == 12
    assert generate(grid, uri) == 12
    return grid, uri


def test_a_generated_grid_is_finished_skipped_and_reported(generated_grid, tmp_path, capsys):
    grid, uri = generated_grid
    capsys.readouterr()
    assert main(["status", str(grid), "--tracking-uri", uri, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["total"] == 12
    assert status["counts"]["finished"] == 12

    assert main(["run", str(grid), "--tracking-uri", uri]) == 0
    assert "12 cells, 12 finished, 0 to run" in capsys.readouterr().out
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("scale").experiment_id
    assert len(client.search_runs([experiment])) == 12  # nothing re-run, no new run

    out = tmp_path / "report"
    assert main(["report", str(grid), "--tracking-uri", uri, "--out", str(out)]) == 0
    table = pd.read_csv(out / "table2.csv")
    assert len(table) > 0
    assert table.notna().any(axis=None)
    assert list((out / "figures").glob("*.png"))
