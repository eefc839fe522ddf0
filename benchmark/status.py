"""Where each cell of a grid stands: pending, running, finished, failed or killed, with job and
log.

Two sources are combined: the cell's current MLflow run (its ``state`` tag, and the ``job_id``,
``log_path``, ``host``, ``pid`` and ``driver`` tags; read through the grid's index of finished
cells, :func:`benchmark.tracking.indexed_current_runs`, with the answer of
:func:`benchmark.tracking.current_runs`) and
what the executor it was submitted to says of it (``Executor.liveness``, one query per
executor kind): the SLURM job (``squeue`` while it is queued or running, ``sacct`` once it
ended) or, for the local executors, the process on this host.

=====================  ==============================  ====================================
run state              job or process                  status
=====================  ==============================  ====================================
no run                 -                               pending (never submitted)
finished               -                               finished
failed                 -                               failed (the error's last line)
killed                 -                               killed (stopped by a signal: resumable)
pending or running     queued, requeued, held          pending (live)
pending or running     running                         running (live)
pending or running     ended, gone or cancelled        failed (what happened to the job)
=====================  ==============================  ====================================

A cell is *live* while a job or process exists that will run it: ``run`` never submits a live
cell again, so a grid re-submitted while its jobs are queued does not duplicate them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchmark.executors.base import CELL_STATES, Executor, Liveness
from benchmark.executors.registry import EXECUTOR_CLASSES
from benchmark.executors.slurm import job_states as slurm_job_states
from benchmark.tracking import (
    STATE_FAILED,
    STATE_FINISHED,
    STATE_KILLED,
    indexed_current_runs,
    run_state,
)

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from benchmark.grid import Cell, Grid

__all__ = [
    "STATES",
    "CellStatus",
    "cell_statuses",
    "count_states",
    "slurm_job_states",
    "wait_until_done",
]

STATES = CELL_STATES
_ENDED = (STATE_FINISHED, STATE_FAILED, STATE_KILLED)  # after these, the job no longer matters


@dataclass(frozen=True)
class CellStatus:
    """One cell's state, its current run (None: never submitted; a finished one with the tags
    the index of finished cells keeps only: ``client.get_run`` reads it in full) and whether a
    job or process exists that will run it (``live``); ``detail`` says why, in words."""

    cell: Cell
    state: str
    run: Run | None
    job_id: str | None
    log_path: str | None
    live: bool
    detail: str

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.run is not None else None


def cell_statuses(client: MlflowClient, grid: Grid, cells: list[Cell]) -> list[CellStatus]:
    """The status of every cell, in the order given (a few MLflow queries, one per scheduler).
    A finished cell's run holds only the tags its grid's index of finished cells keeps
    (:mod:`benchmark.tracking.finished_index`)."""
    runs = indexed_current_runs(client, grid.name)
    alive = _liveness([run for run in runs.values() if run_state(run) not in _ENDED])
    return [_status(cell, runs.get(cell.run_key), alive) for cell in cells]


def _liveness(runs: Sequence[Run]) -> dict[str, Liveness]:
    """By run id: what the executor that each unfinished run was submitted to says of it (a run
    not yet submitted, or of an unknown kind, is asked of the driver's host)."""
    by_kind: dict[str, list[Run]] = {}
    for run in runs:
        by_kind.setdefault(run.data.tags.get("executor", ""), []).append(run)
    found: dict[str, Liveness] = {}
    for kind, members in by_kind.items():
        found.update(EXECUTOR_CLASSES.get(kind, Executor).liveness(members))
    return found


def _status(cell: Cell, run: Run | None, alive: dict[str, Liveness]) -> CellStatus:
    if run is None:
        return CellStatus(cell, "pending", None, None, None, False, "never submitted")
    tags = run.data.tags
    job_id, log_path = tags.get("job_id") or None, tags.get("log_path") or None
    state = run_state(run)
    if state == STATE_FINISHED:
        found = Liveness("finished", False, f"attempts: {tags.get('attempts', '1')}")
    elif state == STATE_FAILED:
        found = Liveness("failed", False, tags.get("error", "failed"))
    elif state == STATE_KILLED:
        stopped = tags.get("stopped", "stopped")
        found = Liveness("killed", False, f"{stopped}; run resumes it from its round checkpoint")
    else:
        found = alive[run.info.run_id]
    return CellStatus(cell, found.state, run, job_id, log_path, found.live, found.detail)


def count_states(statuses: Iterable[CellStatus]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for status in statuses:
        counts[status.state] += 1
    return counts


def wait_until_done(
    client: MlflowClient,
    grid: Grid,
    cells: list[Cell],
    poll_seconds: float,
    on_change: Callable[[CellStatus], None],
) -> list[CellStatus]:
    """Poll until no cell of ``cells`` is live; ``on_change`` gets each change of state."""
    seen: dict[str, str] = {}
    while True:
        statuses = cell_statuses(client, grid, cells)
        for status in statuses:
            if seen.get(status.cell.run_key) != status.state:
                seen[status.cell.run_key] = status.state
                on_change(status)
        if not any(status.live for status in statuses):
            return statuses
        time.sleep(poll_seconds)
