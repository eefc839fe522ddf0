"""The slurm executor against a real SLURM cluster (``cluster/local-slurm.sh``, one node).

Started here if it is not up (and stopped again), with an MLflow server started here: a grid
runs as a job array; a job requeued mid-way (``scontrol requeue``) or signalled as at a time
limit (USR2, submitit's checkpoint hook) ends exactly as an uninterrupted run, in one MLflow
run; a job killed by the kernel shows as failed with its log, and re-running the grid re-runs
only that cell. The cluster needs root: without it these tests skip, except under CI.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from launching import outcome, rounds_saved, runs_of, write_grid
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from benchmark.grid import expand_cells, load_grid
from benchmark.mlflow_server import (
    ServerSettings,
    free_port,
    start_server,
    stop_server,
    wait_until_ready,
)
from benchmark.status import cell_statuses, slurm_job_states, wait_until_done

SCRIPT = Path(__file__).resolve().parents[1] / "cluster" / "local-slurm.sh"
EXECUTOR = "{kind: slurm, cpus_per_task: 1, mem_gb: 2, time_min: 15, array_parallelism: 2}"


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0:
        message = "the local SLURM cluster needs root: sudo cluster/local-slurm.sh up"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SLURM tests as root ({message})")
        pytest.skip(message)
    started_here = subprocess.run([SCRIPT, "status"], capture_output=True).returncode != 0
    if started_here:
        subprocess.run([SCRIPT, "up"], check=True)
    yield
    if started_here:
        subprocess.run([SCRIPT, "down"], check=True)


@pytest.fixture(scope="module")
def tracking_uri(slurm_cluster, tmp_path_factory):
    settings = ServerSettings(tmp_path_factory.mktemp("mlflow"), port=free_port())
    server = start_server(settings)
    try:
        wait_until_ready(settings.tracking_uri, process=server)
        yield settings.tracking_uri
    finally:
        stop_server(server.pid)


def _slurm_grid(root, name, **options):
    return write_grid(root, name, executor=EXECUTOR, **options)


def _wait(condition, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _run_of(uri, grid_name, pipeline):
    runs = runs_of(uri, grid_name)
    return runs.loc[runs["tags.pipeline"] == pipeline].iloc[0]


def test_a_grid_runs_as_a_job_array_and_its_runs_are_in_mlflow(tracking_uri, tmp_path, capsys):
    grid = _slurm_grid(tmp_path, "array")
    assert main(["run", str(grid), "--tracking-uri", tracking_uri]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"submitted 3 cells to SLURM: jobs (\d+)_0 \.\. \1_2", printed), printed

    assert main(["status", str(grid), "--tracking-uri", tracking_uri]) == 0
    printed = capsys.readouterr().out
    assert "grid 'array': 3 cells:" in printed
    assert len(re.findall(r"(pending|running|finished) +\d+_[0-2] ", printed)) == 3, printed

    run = ["run", str(grid), "--tracking-uri", tracking_uri, "--wait", "--poll-seconds", "2"]
    assert main(run) == 0  # submits nothing more: follows the queued cells until done
    printed = capsys.readouterr().out
    assert "0 to run" in printed and "3 finished, 0 not finished" in printed

    runs = runs_of(tracking_uri, "array")
    assert len(runs) == 3 and set(runs["tags.state"]) == {"finished"}
    assert (runs["tags.job_id"] == runs["tags.slurm_job_id"]).all()
    # the run is finished a moment before its job exits
    jobs = list(runs["tags.job_id"])
    _wait(lambda: set(slurm_job_states(jobs).values()) == {"COMPLETED"}, "jobs COMPLETED", 60)
    for log in runs["tags.log_path"]:
        assert Path(log).is_file()


def test_requeued_and_signalled_jobs_resume_to_the_uninterrupted_result(tracking_uri, tmp_path):
    budgets = tuple(range(10, 110, 10))  # 10 rounds: SLURM's SIGTERM comes 5 s before SIGKILL
    interrupted = _slurm_grid(tmp_path, "interrupted", budgets=budgets)
    reference = _slurm_grid(tmp_path, "reference", budgets=budgets)
    only = ("--pipeline", "svpp", "--pipeline", "asvp", "--tracking-uri", tracking_uri)
    assert main(["run", str(interrupted), *only]) == 0
    assert main(["run", str(reference), *only]) == 0  # queued behind: 2 CPUs

    state = tmp_path / "state" / "interrupted" / "checkpoints"
    interruptions = {"svpp": ["scontrol", "requeue"], "asvp": ["scancel", "--signal=USR2"]}
    for pipeline, command in interruptions.items():
        run = _run_of(tracking_uri, "interrupted", pipeline)
        checkpoint = state / run["tags.run_key"]
        _wait(lambda c=checkpoint: rounds_saved(c) >= 1, f"a finished round of {pipeline}")
        assert rounds_saved(checkpoint) < len(budgets), "interrupted too late to test resumption"
        subprocess.run([*command, run["tags.job_id"]], check=True)

    for grid in (interrupted, reference):
        assert main(["run", str(grid), *only, "--wait", "--poll-seconds", "2"]) == 0
    for pipeline in interruptions:
        resumed = _run_of(tracking_uri, "interrupted", pipeline)
        uninterrupted = _run_of(tracking_uri, "reference", pipeline)
        assert resumed["tags.attempts"] == "2", pipeline
        assert int(resumed["tags.resumed_rounds"]) >= 1, pipeline
        assert outcome(tracking_uri, resumed["run_id"]) == outcome(
            tracking_uri, uninterrupted["run_id"]
        )
    assert len(runs_of(tracking_uri, "interrupted")) == 2, "one run per cell, requeues included"


def test_a_killed_job_shows_failed_and_a_rerun_reruns_only_its_cell(tracking_uri, tmp_path, capsys):
    grid_path = _slurm_grid(tmp_path, "crash", budgets=(10, 20, 30, 40))
    run = ["run", str(grid_path), "--tracking-uri", tracking_uri]
    assert main(run) == 0
    grid = load_grid(grid_path)
    client = MlflowClient(tracking_uri)

    def svpp_run():
        return _run_of(tracking_uri, "crash", "svpp")

    checkpoint = tmp_path / "state" / "crash" / "checkpoints" / svpp_run()["tags.run_key"]
    _wait(lambda: rounds_saved(checkpoint) >= 1, "a finished round of the svpp cell")
    os.kill(int(svpp_run()["tags.pid"]), signal.SIGKILL)  # as the kernel's OOM killer would

    cells = expand_cells(grid)
    wait_until_done(client, grid, cells, 1.0, lambda status: None)
    capsys.readouterr()
    assert main(["status", str(grid_path), "--tracking-uri", tracking_uri]) == 0
    printed = capsys.readouterr().out
    assert "3 cells: 0 pending, 0 running, 2 finished, 1 failed" in printed
    (line,) = [row for row in printed.splitlines() if row.strip().startswith("failed")]
    log = line.rsplit("|", 1)[1].strip()
    assert "svpp-lpft/margin" in line and Path(log).is_file()

    assert main([*run, "--wait", "--poll-seconds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "3 cells, 2 finished, 1 to run" in printed and "submitted 1 cells" in printed
    assert {s.state for s in cell_statuses(client, grid, cells)} == {"finished"}
    rerun = svpp_run()
    assert rerun["tags.attempts"] == "2" and int(rerun["tags.resumed_rounds"]) >= 1
    assert len(runs_of(tracking_uri, "crash")) == 3
