"""The executor interface (submitit's habit): one abstract :class:`Executor`, one subclass per
backend, the same calling code for all of them.

An executor takes :class:`~benchmark.executors.job.CellJob` s and returns one
:class:`Submission` per job. Each backend also owns what differs between backends: its
settings (:class:`~benchmark.executors.settings.ExecutorSettings`), what the preflight must
check before it submits (:meth:`Executor.tracking_problems`, :meth:`Executor.problems`) and
how it tells whether a submitted cell is still alive (:meth:`Executor.liveness`, submitit's
per-backend ``Job.state``): ``status``, ``run`` and the preflight ask the executor and never
look at schedulers or processes themselves.

By default a cell is run on this machine: it is alive while the process running it (or, before
it starts, the driver that will start it) is alive on this host. This module imports nothing
heavy (no torch, no MLflow, nothing of ``asvp``), so that the command line can name the
executor kinds and cell states without waiting for them.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from benchmark.executors.kinds import CELL_STATES, EXECUTOR_KINDS, ExecutorKind

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from benchmark.executors.job import CellJob
    from benchmark.executors.settings import ExecutorSettings
    from benchmark.grid import Cell, Grid

__all__ = [
    "CELL_STATES",
    "EXECUTOR_KINDS",
    "CellProgress",
    "Executor",
    "ExecutorKind",
    "LaunchError",
    "Liveness",
    "Problem",
    "Submission",
]


class LaunchError(RuntimeError):
    """A grid that cannot be submitted as configured (the message says what to change)."""


@dataclass(frozen=True)
class Problem:
    """One thing the preflight found missing or wrong: what, where it was looked for, and what
    to do."""

    item: str
    where: str
    remedy: str

    def __str__(self) -> str:
        return f"{self.item}\n      looked at: {self.where}\n      to fix: {self.remedy}"


@dataclass(frozen=True)
class Submission:
    """One submitted cell: its run, its job (SLURM id; None for local and debug) and log, and
    its state when the executor returned (``finished``/``failed`` for the blocking local and
    debug executors, ``killed`` for a cell they stopped on a signal and ``pending`` for one
    they did not start then; ``pending`` for a queued SLURM job), with the error if it failed
    (what stopped it if killed)."""

    cell: Cell
    run_id: str
    job_id: str | None
    log_path: str | None
    state: str
    error: str = ""


@dataclass(frozen=True)
class CellProgress:
    """What a running cell says it is doing (started, a round's end, extraction progress): a
    line it wrote with :data:`asvp.progress.PROGRESS_PREFIX`, without the prefix."""

    cell: Cell
    message: str


@dataclass(frozen=True)
class Liveness:
    """Where an unfinished run's cell stands with its executor: ``state`` (pending, running or
    failed), whether a job or process exists that will run it (``live``) and why, in words."""

    state: str
    live: bool
    detail: str


class Executor(ABC):
    """Runs :class:`CellJob` s; ``report`` is called with each submission as it is known and,
    by the executors that run cells themselves, with each :class:`CellProgress`.

    ``scheduler`` names the batch system a queueing executor hands cells to (``submit``
    returns once they are queued); None means the executor runs the cells itself and
    ``submit`` returns when they are done, or when SIGINT or SIGTERM stopped it: then
    ``stopped_by`` says so (``stopped by SIGINT``), its running cells are ``killed`` and the
    others ``pending`` (:mod:`benchmark.executors.stopping`).
    """

    kind: ClassVar[str]
    scheduler: ClassVar[str | None] = None

    def __init__(self, grid: Grid, settings: ExecutorSettings) -> None:
        self.grid = grid
        self.settings = settings
        self.stopped_by: str | None = None

    @abstractmethod
    def submit(
        self,
        client: MlflowClient,
        jobs: list[CellJob],
        report: Callable[[Submission | CellProgress], None],
    ) -> list[Submission]: ...

    # ----------------------------------------------------------------------------------------
    # Preflight
    # ----------------------------------------------------------------------------------------

    @classmethod
    def check_tracking(cls, tracking_uri: str, allow_sqlite: bool) -> None:
        """Raise :class:`LaunchError` if this executor's jobs cannot record into
        ``tracking_uri`` (any store works for jobs on this machine)."""
        return None

    def tracking_problems(self, tracking_uri: str, allow_sqlite: bool) -> list[Problem]:
        """:meth:`check_tracking` as preflight problems."""
        try:
            self.check_tracking(tracking_uri, allow_sqlite)
        except LaunchError as error:
            return [Problem("tracking URI", tracking_uri, str(error))]
        return []

    def problems(self) -> list[Problem]:
        """What this machine lacks to submit the grid's cells (nothing, to run them here)."""
        return []

    def notes(self) -> list[str]:
        """What the preflight tells before a run that does not stop it: the device."""
        import torch  # only the preflight asks, and it loads models anyway

        device = "cuda" if torch.cuda.is_available() else "cpu (no CUDA device on this machine)"
        return [f"cells will run on {device}"]

    # ----------------------------------------------------------------------------------------
    # Liveness
    # ----------------------------------------------------------------------------------------

    @classmethod
    def liveness(cls, runs: Sequence[Run]) -> dict[str, Liveness]:
        """By run id: where each unfinished run this executor was given stands (one query per
        scheduler, whatever the number of runs)."""
        return {run.info.run_id: _process_liveness(run.data.tags) for run in runs}


def _process_liveness(tags: dict[str, str]) -> Liveness:
    """A cell run on the submitting machine: live while its process (running) or the driver
    that will start it (pending) is alive on this host."""
    running = tags.get("state") == "running"  # benchmark.tracking.STATE_RUNNING
    if running:
        host, pid = tags.get("host", ""), tags.get("pid", "")
    else:
        host, _, pid = tags.get("driver", "").partition(":")
    if host != socket.gethostname():
        return Liveness(tags.get("state", "pending"), False, f"on host {host or 'unknown'}")
    if pid.isdigit() and _process_alive(int(pid)):
        return Liveness("running" if running else "pending", True, f"pid {pid}")
    if running:
        return Liveness("failed", False, f"process {pid} is gone and the run did not finish")
    return Liveness("pending", False, "submitted, but its driver is gone")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
