"""The executors package: settings and their declared ranges, the registry, each executor's
preflight and liveness, the old ``benchmark.launch`` names, and a command line that answers
without importing torch or MLflow."""

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import benchmark.executors.slurm
import benchmark.launch
from asvp.config import ComputeConfig
from asvp.options import OptionError, declared_options
from benchmark.executors.base import EXECUTOR_KINDS, Executor, LaunchError
from benchmark.executors.registry import EXECUTOR_CLASSES, executor_class, make_executor
from benchmark.executors.settings import ExecutorSettings
from benchmark.executors.slurm import SlurmExecutor
from benchmark.status import _liveness

ROOT = Path(__file__).resolve().parents[1]
_text = {"capture_output": True, "text": True, "check": True}


def _run(run_id, **tags):
    """A stand-in for an MLflow run: what liveness reads (its id and tags)."""
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(tags=tags))


@pytest.mark.parametrize(
    ("key", "bad", "good"),
    [
        ("max_parallel", 0, 1),
        ("gpus_per_node", -1, 0),
        ("cpus_per_task", 0, 1),
        ("mem_gb", 0.0, 0.5),
        ("time_min", 0, 1),
        ("array_parallelism", 0, 1),
        ("max_requeues", -1, 0),
        ("signal_delay_s", -1, 0),
        ("kind", "cloud", "slurm"),
    ],
)
def test_executor_settings_declare_their_ranges(key, bad, good):
    option = declared_options(ExecutorSettings)[key]
    assert option.check(good) == good
    with pytest.raises(OptionError) as error:
        option.check(bad)
    assert key in str(error.value) and repr(bad) in str(error.value)


def test_the_registry_builds_every_kind_and_names_them_for_an_unknown_one():
    assert tuple(EXECUTOR_CLASSES) == EXECUTOR_KINDS == ("debug", "local", "slurm")
    grid = SimpleNamespace(name="g")
    for kind in EXECUTOR_KINDS:
        executor = make_executor(kind, grid, ExecutorSettings())
        assert executor.kind == kind and executor.grid is grid
    assert [k for k, cls in EXECUTOR_CLASSES.items() if cls.scheduler] == ["slurm"]
    with pytest.raises(LaunchError, match=r"unknown executor 'cloud'.*debug.*local.*slurm"):
        executor_class("cloud")


def test_the_old_launch_names_are_the_executors_own():
    assert benchmark.launch.SlurmExecutor is SlurmExecutor
    assert benchmark.launch.make_executor is make_executor
    assert benchmark.launch.ExecutorSettings is ExecutorSettings


def test_a_cell_run_here_is_alive_while_its_process_is():
    host, me = socket.gethostname(), str(os.getpid())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_text)
    dead = gone.stdout.strip()
    found = Executor.liveness(
        [
            _run("running", state="running", host=host, pid=me),
            _run("pending", state="pending", driver=f"{host}:{me}"),
            _run("died", state="running", host=host, pid=dead),
            _run("orphan", state="pending", driver=f"{host}:{dead}"),
            _run("elsewhere", state="running", host="other-node", pid=me),
        ]
    )
    assert {k: (v.state, v.live) for k, v in found.items()} == {
        "running": ("running", True),
        "pending": ("pending", True),
        "died": ("failed", False),
        "orphan": ("pending", False),
        "elsewhere": ("running", False),
    }
    assert found["died"].detail == f"process {dead} is gone and the run did not finish"


def test_a_slurm_cell_is_alive_while_slurm_holds_its_job(monkeypatch):
    asked = []

    def job_states(ids):
        asked.append(sorted(ids))
        return {"7_0": "PENDING", "7_1": "RUNNING", "7_2": "OUT_OF_MEMORY"}

    monkeypatch.setattr(benchmark.executors.slurm, "job_states", job_states)
    host = socket.gethostname()
    runs = [_run(f"r{i}", executor="slurm", state="pending", job_id=f"7_{i}") for i in range(4)]
    runs.append(_run("unqueued", executor="slurm", state="pending", driver=f"{host}:{os.getpid()}"))
    found = _liveness(runs)
    assert asked == [["7_0", "7_1", "7_2", "7_3"]], "one query for every job"
    assert {k: (v.state, v.live, v.detail) for k, v in found.items()} == {
        "r0": ("pending", True, "job pending"),
        "r1": ("running", True, "job running"),
        "r2": ("failed", False, "job out_of_memory before the run finished"),
        "r3": ("failed", False, "job unknown to SLURM and the run did not finish"),
        "unqueued": ("pending", True, f"pid {os.getpid()}"),
    }
    monkeypatch.setattr(benchmark.executors.slurm, "job_states", lambda ids: None)
    (unreachable,) = _liveness(runs[:1]).values()
    assert (unreachable.state, unreachable.live) == ("pending", False)
    assert "not reachable" in unreachable.detail


def test_the_slurm_preflight_asks_for_sbatch_and_an_mlflow_server(monkeypatch, tmp_path):
    grid = SimpleNamespace(
        name="g",
        datasets=[],
        compute=ComputeConfig(),
        executor_for=lambda name, settings: settings,
    )
    executor = SlurmExecutor(grid, ExecutorSettings(kind="slurm"))
    monkeypatch.setenv("PATH", str(tmp_path))
    (problem,) = executor.problems()
    assert "sbatch" in problem.item and "--executor local" in problem.remedy
    (refused,) = executor.tracking_problems("sqlite:///x.db", allow_sqlite=False)
    assert "mlflow-server" in refused.remedy and "allow_sqlite" in refused.remedy
    assert executor.tracking_problems("sqlite:///x.db", allow_sqlite=True) == []
    local = make_executor("local", grid, ExecutorSettings())
    assert local.problems() == [] and local.tracking_problems("sqlite:///x.db", False) == []


@pytest.mark.parametrize(
    "command", ["", "validate", "run", "preflight", "status", "report", "mlflow-server"]
)
def test_help_imports_neither_torch_nor_mlflow(command):
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "benchmark.cli", *command.split(), "--help"],
        cwd=ROOT,
        **_text,
    )
    assert "usage: asvp-bench" in out.stdout
    heavy = [line for line in out.stderr.splitlines() if "torch" in line or "mlflow" in line]
    assert not heavy, heavy[:3]


def test_validate_imports_no_mlflow(tmp_path):
    grid = tmp_path / "demo.yaml"
    grid.write_text((ROOT / "experiments" / "demo.yaml").read_text())
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "benchmark.cli", "validate", str(grid)],
        cwd=ROOT,
        env={**os.environ, "DATA_ROOT": str(tmp_path / "no-data")},
        **_text,
    )
    assert "valid grid" in out.stdout
    assert "mlflow" not in out.stderr
