"""Launching a grid: resume after SIGKILL, status, filters, --force, failures and settings.

Real pieces only: cells run by the local and debug executors against a SQLite MLflow store;
the killed run is a real `asvp-bench run` process killed with SIGKILL mid-round.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import submitit
from launching import checkpointed_rounds, cli, outcome, runs_of, write_grid
from mlflow.tracking import MlflowClient

import benchmark.executors.job
from benchmark.cli import main
from benchmark.executors.base import LaunchError
from benchmark.executors.job import CellJob
from benchmark.executors.registry import check_tracking
from benchmark.executors.slurm import SlurmExecutor
from benchmark.grid import expand_cells, load_grid


def test_a_local_run_killed_mid_round_resumes_to_the_uninterrupted_result(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    budgets = (10, 20, 30, 40, 50)
    killed_grid = write_grid(tmp_path, "killed", budgets)
    reference_grid = write_grid(tmp_path, "reference", budgets)
    only_asvp = ("--pipeline", "asvp", "--tracking-uri", uri)
    driver = subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", "run", killed_grid, *only_asvp],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while max(checkpointed_rounds(tmp_path / "state"), default=0) < 2 and driver.poll() is None:
            assert time.monotonic() < deadline, "the cell never finished two rounds"
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its worker, mid-round
        driver.wait()
    (stopped_at,) = checkpointed_rounds(tmp_path / "state")
    assert 2 <= stopped_at < len(budgets), "killed too late to test resumption"

    status = cli("status", killed_grid, *only_asvp)
    assert "failed" in status.stdout and "is gone" in status.stdout, status.stdout

    assert cli("run", killed_grid, *only_asvp).returncode == 0
    assert cli("run", reference_grid, *only_asvp).returncode == 0
    killed, reference = runs_of(uri, "killed"), runs_of(uri, "reference")
    assert len(killed) == 1, "a resumed cell logs into its one run"
    (run_id,) = killed["run_id"]
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["state"] == "finished" and tags["attempts"] == "2"
    assert int(tags["resumed_rounds"]) == stopped_at
    assert tags["feature_updates_at"] == "[20]"
    assert outcome(uri, run_id) == outcome(uri, reference["run_id"].iloc[0])
    assert not list((tmp_path / "state" / "killed" / "checkpoints").iterdir())


def test_a_failed_cell_shows_in_status_and_a_rerun_runs_only_it(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = write_grid(tmp_path, "crash")
    real_run_cell = benchmark.executors.job.run_cell

    def crash_svpp(config, *args, **kwargs):
        if config.pipeline == "svpp":
            raise RuntimeError("out of memory, say")
        return real_run_cell(config, *args, **kwargs)

    monkeypatch.setattr(benchmark.executors.job, "run_cell", crash_svpp)
    assert main(["run", str(grid), "--executor", "debug", "--tracking-uri", uri]) == 1
    capsys.readouterr()
    assert main(["status", str(grid), "--tracking-uri", uri]) == 0
    printed = capsys.readouterr().out
    assert "3 cells: 0 pending, 0 running, 2 finished, 1 failed" in printed
    (failed_line,) = [line for line in printed.splitlines() if line.strip().startswith("failed")]
    assert "svpp-lpft/margin" in failed_line and "out of memory, say" in failed_line

    monkeypatch.setattr(benchmark.executors.job, "run_cell", real_run_cell)
    assert main(["run", str(grid), "--executor", "debug", "--tracking-uri", uri]) == 0
    assert "3 cells, 2 finished, 1 to run" in capsys.readouterr().out
    runs = runs_of(uri, "crash")
    assert len(runs) == 3 and set(runs["tags.state"]) == {"finished"}
    svpp = runs.loc[runs["tags.pipeline"] == "svpp"].iloc[0]
    assert svpp["tags.attempts"] == "2"


def test_filters_choose_cells_and_force_reruns_them_into_a_new_run(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = write_grid(tmp_path, "filters")
    run = ["run", str(grid), "--executor", "debug", "--tracking-uri", uri]
    assert main([*run, "--strategy", "random"]) == 0
    assert "1 cells, 0 finished, 1 to run" in capsys.readouterr().out
    assert len(runs_of(uri, "filters")) == 1

    assert main([*run, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "3 cells, 1 finished, 2 to run" in printed
    assert printed.count("  run ") == 2 and printed.count("  skip ") == 1

    assert main([*run, "--pipeline", "random-ft", "--force"]) == 0
    runs = runs_of(uri, "filters")
    assert sorted(runs["tags.state"]) == ["finished", "superseded"]
    old = runs.loc[runs["tags.state"] == "superseded"].iloc[0]
    new = runs.loc[runs["tags.state"] == "finished"].iloc[0]
    assert old["tags.superseded_by"] == new["run_id"]

    with pytest.raises(SystemExit) as error:
        main([*run, "--strategy", "badge"])
    assert error.value.code == 2
    assert "--strategy badge matches no cell" in capsys.readouterr().err

    capsys.readouterr()
    assert main(["status", str(grid), "--tracking-uri", uri, "--state", "pending"]) == 0
    printed = capsys.readouterr().out
    assert "2 cells: 2 pending" in printed and "never submitted" in printed


def test_the_slurm_executor_refuses_sqlite_unless_the_grid_allows_it(tmp_path, capsys):
    grid = write_grid(tmp_path, "refused")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["run", str(grid), "--executor", "slurm", "--tracking-uri", uri]) == 2
    error = capsys.readouterr().err
    assert str(grid) in error and "mlflow-server" in error and "allow_sqlite" in error
    assert not (tmp_path / "mlflow.db").exists(), "nothing is recorded before refusing"
    with pytest.raises(LaunchError):
        check_tracking("slurm", uri, allow_sqlite=False)
    check_tracking("slurm", uri, allow_sqlite=True)
    check_tracking("slurm", "http://head-node:5000", allow_sqlite=False)
    check_tracking("local", uri, allow_sqlite=False)


def test_grid_executor_settings_become_sbatch_options(tmp_path):
    path = write_grid(tmp_path, "sbatch")
    text = path.read_text().replace(
        "executor: {kind: local, max_parallel: 1}",
        "executor: {kind: slurm, partition: gpu, account: lab, qos: high, constraint: a100,"
        " gpus_per_node: 1, cpus_per_task: 8, mem_gb: 64, time_min: 240, array_parallelism: 16,"
        ' signal_delay_s: 120, setup: ["module load cuda"], sbatch: {exclude: node07}}',
    )
    path.write_text(text)
    grid = load_grid(path)
    parameters = SlurmExecutor(grid, grid.executor).sbatch_parameters()
    executor = submitit.SlurmExecutor(folder=tmp_path / "%j")
    executor.update_parameters(**parameters)  # submitit accepts every name
    script = executor._make_submission_file_text("python job.py", "uid")
    for line in (
        "--partition=gpu",
        "--account=lab",
        "--qos=high",
        "--constraint=a100",
        "--gpus-per-node=1",
        "--cpus-per-task=8",
        "--mem=65536M",
        "--time=240",
        "--exclude=node07",
        "--signal=USR2@120",
        "--job-name=asvp-sbatch",
        "module load cuda",
    ):
        assert line in script, line


def test_the_slurm_preflight_refuses_jobs_with_fewer_cpus_than_the_cells_threads(tmp_path):
    """A job given fewer CPUs than ``compute.threads`` would fail at start (a cell never
    computes with more threads than its CPUs): a problem that names the datasets and the key."""
    path = write_grid(tmp_path, "threads", executor="{kind: slurm, cpus_per_task: 2}")
    path.write_text(path.read_text() + "compute: {threads: 4}\n")
    grid = load_grid(path)
    executor = SlurmExecutor(grid, grid.executor)
    (problem,) = [p for p in executor.problems() if "compute.threads" in p.item]
    assert "compute.threads is 4" in problem.item and "mnist5k 2" in problem.item
    assert problem.where == "executor.cpus_per_task"
    path.write_text(path.read_text().replace("threads: 4", "threads: 2"))
    grid = load_grid(path)
    assert not [p for p in SlurmExecutor(grid, grid.executor).problems() if "threads" in p.item]


def test_a_job_started_again_after_its_cell_finished_does_nothing(tmp_path):
    """SLURM may requeue a job whose cell has just finished (preempted while exiting)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid_path = write_grid(tmp_path, "again")
    run = ["run", str(grid_path), "--executor", "debug", "--tracking-uri", uri]
    assert main([*run, "--strategy", "random"]) == 0
    (run_id,) = runs_of(uri, "again")["run_id"]
    grid = load_grid(grid_path)
    (cell,) = [c for c in expand_cells(grid) if c.config.strategy == "random"]
    job = CellJob(cell, "again", run_id, uri, str(tmp_path / "features"), str(tmp_path / "ck"))
    assert job() == "finished"
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["attempts"] == "1" and tags["state"] == "finished"
    assert tags["device"] == "cpu" and tags["finetune_precision"] == "fp32"
    assert not (tmp_path / "ck").exists()
