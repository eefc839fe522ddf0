"""The executor kinds by name: :func:`make_executor` builds the one a grid (or ``run
--executor``) chooses; :func:`executor_class` answers for a kind recorded on a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmark.executors.base import Executor, LaunchError
from benchmark.executors.debug import DebugExecutor
from benchmark.executors.local import LocalExecutor
from benchmark.executors.settings import EXECUTOR_KINDS, ExecutorSettings
from benchmark.executors.slurm import SlurmExecutor

if TYPE_CHECKING:
    from benchmark.grid import Grid

__all__ = ["EXECUTOR_CLASSES", "check_tracking", "executor_class", "make_executor"]

EXECUTOR_CLASSES: dict[str, type[Executor]] = {
    cls.kind: cls for cls in (DebugExecutor, LocalExecutor, SlurmExecutor)
}


def executor_class(kind: str) -> type[Executor]:
    """The executor of ``kind``; :class:`LaunchError` naming the kinds if there is none."""
    if kind not in EXECUTOR_CLASSES:
        raise LaunchError(f"unknown executor {kind!r}; expected one of {EXECUTOR_KINDS}")
    return EXECUTOR_CLASSES[kind]


def make_executor(kind: str, grid: Grid, settings: ExecutorSettings) -> Executor:
    """An executor of ``kind`` for ``grid``'s cells, with ``settings``."""
    return executor_class(kind)(grid, settings)


def check_tracking(kind: str, tracking_uri: str, allow_sqlite: bool) -> None:
    """Raise :class:`LaunchError` if jobs of executor ``kind`` cannot record into
    ``tracking_uri`` (the slurm executor refuses a SQLite store unless the grid allows it)."""
    executor_class(kind).check_tracking(tracking_uri, allow_sqlite)
