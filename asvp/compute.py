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
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from asvp.config import ComputeConfig

__all__ = ["CUBLAS_WORKSPACE", "compute_settings"]

CUBLAS_WORKSPACE = ":4096:8"
"""The cuBLAS workspace setting that makes its kernels deterministic (CUDA >= 10.2; the other
allowed value, ``:16:8``, is kept when set)."""

_DETERMINISTIC_WORKSPACES = (CUBLAS_WORKSPACE, ":16:8")


@contextmanager
def compute_settings(config: ComputeConfig) -> Iterator[None]:
    """Apply ``config`` to torch for the duration, then restore what was there.

    - ``torch.set_num_threads(config.threads)``;
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
    saved = _current()
    try:
        _apply(config)
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
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)


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
    torch.use_deterministic_algorithms(saved.deterministic, warn_only=saved.warn_only)
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
