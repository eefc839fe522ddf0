"""A cell's compute settings applied to torch: its thread count and determinism.

A cell's arithmetic must not depend on who runs it. Torch splits a float reduction over its
intra-op threads, and another split adds in another order: the same seeded cell fine-tuned with
2 threads instead of 1 reached another accuracy, and one different pick changes every later
round. So the thread count is the grid's (:class:`asvp.config.ComputeConfig`, part of the run
key), not the executor's, and :func:`compute_settings` applies it, with the deterministic
settings, for the duration of a cell (:func:`asvp.pipelines.run_cell`).

With these settings a cell repeated on one machine gives bit-identical selections and curves,
whatever number of cells runs beside it. Across CPU models or GPUs nothing is promised: their
kernels differ (``torch.backends.cpu.get_cpu_capability()`` names the CPU one torch uses).

Threads follow the allocation, never more: the native pools outside torch (numpy's and scipy's
BLAS, OpenMP; through threadpoolctl, which scikit-learn brings) are capped at the same count,
so no library starts a thread per core of the node; and a cell whose ``compute.threads``
exceeds the CPUs it was given (:func:`cpu_allocation`: its CPU affinity, SLURM's
``SLURM_CPUS_PER_TASK``, the local executor's share) fails at start with both numbers
(:class:`ThreadAllocationError`) rather than compute with fewer threads, which would change
its numbers under the same run key, or with more threads than CPUs, which stalls: a kernel
whose threads wait for one another at every step slows many times over when one of its CPUs
is taken by another process (``perf/oversubscription.py``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import torch

from asvp.config import ComputeConfig

__all__ = [
    "CPU_SHARE_VARIABLE",
    "CUBLAS_WORKSPACE",
    "CpuAllocation",
    "ThreadAllocationError",
    "compute_settings",
    "cpu_allocation",
    "usable_cpus",
]

CUBLAS_WORKSPACE = ":4096:8"
"""The cuBLAS workspace setting that makes its kernels deterministic (CUDA >= 10.2; the other
allowed value, ``:16:8``, is kept when set)."""

_DETERMINISTIC_WORKSPACES = (CUBLAS_WORKSPACE, ":16:8")

CPU_SHARE_VARIABLE = "ASVP_CPUS"
"""The environment variable in which an executor tells its cells how many CPUs each may use
(the ``local`` executor: the machine's CPUs divided among the cells it runs at once)."""

_SLURM_CPUS = "SLURM_CPUS_PER_TASK"


class ThreadAllocationError(RuntimeError):
    """A cell's ``compute.threads`` exceeds the CPUs it was given."""


@dataclass(frozen=True)
class CpuAllocation:
    """The CPUs this process may compute with, and what set that number (for messages)."""

    cpus: int
    source: str


def cpu_allocation() -> CpuAllocation:
    """The smallest of what this process was given: its CPU affinity (:func:`usable_cpus`),
    ``SLURM_CPUS_PER_TASK`` inside a SLURM job, and :data:`CPU_SHARE_VARIABLE` under an
    executor that shares the machine among cells."""
    cpus = usable_cpus()
    given = [CpuAllocation(cpus, f"this process's CPU affinity holds {cpus} CPUs")]
    for name, what in ((_SLURM_CPUS, "SLURM"), (CPU_SHARE_VARIABLE, "the local executor")):
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{name}={value!r}: expected a number of CPUs (an integer >= 1)")
        given.append(CpuAllocation(int(value), f"{name}={value}, set by {what}"))
    return min(given, key=lambda allocation: allocation.cpus)


@contextmanager
def compute_settings(config: ComputeConfig) -> Iterator[None]:
    """Apply ``config`` to torch for the duration, then restore what was there.

    - ``torch.set_num_threads(config.threads)``, and the same limit on the other native thread
      pools of the process (BLAS, OpenMP: numpy, scipy, scikit-learn), where threadpoolctl is
      installed; raises :class:`ThreadAllocationError` first (changing nothing) if
      ``config.threads`` exceeds :func:`cpu_allocation`;
    - ``torch.use_deterministic_algorithms(config.deterministic, warn_only=True)``: an op with
      no deterministic implementation warns instead of failing, so a cell never stops on it;
    - ``torch.backends.cudnn.deterministic = config.deterministic``, and with it
      ``cudnn.benchmark = False`` (benchmarking picks kernels by their measured speed);
    - with ``deterministic``: ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless a deterministic value is
      set. cuBLAS reads it when CUDA starts, so it only takes effect in a process that has not
      used CUDA yet (every executor's job starts a fresh one); otherwise this warns.

    Both settings are set either way (``deterministic: false`` turns determinism off), so that
    what a cell computes with is its config's, not what the process held before. Restoring
    matters where cells run one after the other in one process (the ``debug`` executor, tests).
    """
    _check_allocation(config.threads)
    saved = _current()
    try:
        _apply(config)
        with _native_pools_limited(config.threads):
            yield
    finally:
        _restore(saved)


@dataclass(frozen=True)
class _TorchSettings:
    """What :func:`compute_settings` changes, as the process held it."""

    threads: int
    deterministic: bool
    warn_only: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    cublas_workspace: str | None


def _check_allocation(threads: int) -> None:
    allocation = cpu_allocation()
    if threads <= allocation.cpus:
        return
    raise ThreadAllocationError(
        f"compute.threads is {threads} but this cell was given {allocation.cpus} CPUs "
        f"({allocation.source}): a cell never computes with more threads than it was given, "
        "and its thread count is not lowered silently (compute.threads is part of the run key: "
        f"another count sums in another order); give each cell at least {threads} CPUs "
        "(executor.cpus_per_task on SLURM, a smaller executor.max_parallel locally) or set "
        f"compute.threads to at most {allocation.cpus} (new run keys)"
    )


def _native_pools_limited(threads: int) -> AbstractContextManager[object]:
    """BLAS and OpenMP pools capped at ``threads`` for the duration (restored after); nothing
    where threadpoolctl is not installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # comes with scikit-learn; without it only torch's threads are set
        return nullcontext()
    return threadpool_limits(limits=threads)


def _current() -> _TorchSettings:
    return _TorchSettings(
        threads=torch.get_num_threads(),
        deterministic=torch.are_deterministic_algorithms_enabled(),
        warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn_deterministic=torch.backends.cudnn.deterministic,
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        cublas_workspace=os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )


def _apply(config: ComputeConfig) -> None:
    torch.set_num_threads(config.threads)
    if config.deterministic:
        _fix_cublas_workspace()
        torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = config.deterministic
    _use_deterministic_algorithms(config.deterministic, warn_only=True)


def _use_deterministic_algorithms(mode: bool, *, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms``, called only when it changes something: with the
    algorithms off, ``warn_only`` means nothing, and the call costs a SLURM task start about
    1.25 CPU-seconds (torch 2.13 imports ``torch._inductor`` to set its flag)."""
    enabled = torch.are_deterministic_algorithms_enabled()
    if enabled == mode and (
        not mode or torch.is_deterministic_algorithms_warn_only_enabled() == warn_only
    ):
        return
    torch.use_deterministic_algorithms(mode, warn_only=warn_only)


def _fix_cublas_workspace() -> None:
    """Set ``CUBLAS_WORKSPACE_CONFIG``; warn when CUDA already runs (too late to take effect)."""
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") in _DETERMINISTIC_WORKSPACES:
        return
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    if torch.cuda.is_initialized():
        warnings.warn(
            "compute.deterministic: CUDA was initialised before CUBLAS_WORKSPACE_CONFIG was set, "
            "so cuBLAS may not be deterministic in this process; set "
            f"CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE} before starting it",
            stacklevel=3,
        )


def _restore(saved: _TorchSettings) -> None:
    torch.set_num_threads(saved.threads)
    _use_deterministic_algorithms(saved.deterministic, warn_only=saved.warn_only)
    torch.backends.cudnn.deterministic = saved.cudnn_deterministic
    torch.backends.cudnn.benchmark = saved.cudnn_benchmark
    if saved.cublas_workspace is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved.cublas_workspace


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the platform has one (a SLURM
    job's allocation, not the whole node), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
