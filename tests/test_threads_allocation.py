"""Threads follow the allocation: a cell computes with ``compute.threads``, never more than the
CPUs it was given, and no native pool (BLAS, OpenMP) starts more (issue 18, item 6)."""

import subprocess
import sys

import pytest
import torch
from launching import write_grid
from threadpoolctl import threadpool_info

import benchmark.executors.local as local
from asvp.compute import (
    CPU_SHARE_VARIABLE,
    ThreadAllocationError,
    compute_settings,
    cpu_allocation,
)
from asvp.config import ComputeConfig
from benchmark.grid import load_grid


@pytest.fixture
def no_allocation_variables(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv(CPU_SHARE_VARIABLE, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))


def _pool_threads():
    return {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()}


def test_blas_and_openmp_pools_are_capped_at_the_cells_threads(no_allocation_variables):
    before = _pool_threads()
    with compute_settings(ComputeConfig(threads=1)):
        inside = _pool_threads()
        assert torch.get_num_threads() == 1
    assert inside and set(inside.values()) == {1}, inside
    assert _pool_threads() == before, "restored after the cell"


@pytest.mark.parametrize(
    "variable, source",
    [("SLURM_CPUS_PER_TASK", "set by SLURM"), (CPU_SHARE_VARIABLE, "set by the local executor")],
)
def test_the_allocation_is_the_smallest_of_what_was_given(
    no_allocation_variables, monkeypatch, variable, source
):
    assert cpu_allocation().cpus == 8
    monkeypatch.setenv(variable, "3")
    allocation = cpu_allocation()
    assert allocation.cpus == 3 and allocation.source == f"{variable}=3, {source}"
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert cpu_allocation().cpus == 2
    monkeypatch.setenv(variable, "two")
    with pytest.raises(ValueError, match=f"{variable}='two': expected a number of CPUs"):
        cpu_allocation()


def test_threads_beyond_the_allocation_fail_at_start_and_change_nothing(
    no_allocation_variables, monkeypatch
):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    threads = torch.get_num_threads()
    with pytest.raises(ThreadAllocationError) as raised, compute_settings(ComputeConfig(threads=4)):
        pytest.fail("the cell must not start")
    message = str(raised.value)
    assert "compute.threads is 4 but this cell was given 2 CPUs" in message
    assert "SLURM_CPUS_PER_TASK=2" in message and "executor.cpus_per_task" in message
    assert torch.get_num_threads() == threads
    with compute_settings(ComputeConfig(threads=2)):
        assert torch.get_num_threads() == 2


PINNED = """
import os
from asvp.compute import ThreadAllocationError, compute_settings, cpu_allocation
from asvp.config import ComputeConfig
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
assert cpu_allocation().cpus == 1
try:
    with compute_settings(ComputeConfig(threads=2)):
        pass
except ThreadAllocationError as error:
    print(error)
"""


def test_a_process_pinned_to_one_cpu_refuses_two_threads():
    """The real affinity mask (as ``taskset`` or a SLURM cgroup sets it), in a fresh process."""
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PINNED], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "compute.threads is 2 but this cell was given 1 CPUs" in done.stdout
    assert "CPU affinity holds 1 CPUs" in done.stdout


def _local(tmp_path, threads, max_parallel):
    executor = f"{{kind: local, max_parallel: {max_parallel}}}"
    path = write_grid(tmp_path, "threads", executor=executor)
    path.write_text(path.read_text() + f"compute: {{threads: {threads}}}\n")
    grid = load_grid(path)
    return local.LocalExecutor(grid, grid.executor)


def test_the_local_executor_shares_the_cpus_and_refuses_too_many_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "usable_cpus", lambda: 4)
    unset = _local(tmp_path, threads=2, max_parallel="null")
    assert unset._parallel(10) == 2 and unset._share(2) == 2, "4 CPUs hold two 2-thread cells"
    assert unset.problems() == []
    assert _local(tmp_path, threads=1, max_parallel=3)._share(3) == 1
    (problem,) = _local(tmp_path, threads=2, max_parallel=3).problems()
    assert "compute.threads is 2 but executor.max_parallel 3" in problem.item
    assert "leave each cell 1" in problem.item
    assert problem.remedy == "set executor.max_parallel to at most 2 (or leave it unset)"
    (problem,) = _local(tmp_path, threads=8, max_parallel="null").problems()
    assert "run on a machine with at least 8 CPUs" in problem.remedy


def test_a_local_worker_is_told_its_share(monkeypatch):
    monkeypatch.setenv(CPU_SHARE_VARIABLE, "0")  # restored after the test
    monkeypatch.setattr(local, "_stopping", None)
    monkeypatch.setattr(local.signal, "signal", lambda *args: None)  # not this process's
    local._start_worker(None, 3)
    assert local.os.environ[CPU_SHARE_VARIABLE] == "3"
