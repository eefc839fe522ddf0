"""What runs in a job: :class:`CellJob`, and the driver's side of preparing jobs.

A :class:`CellJob` is picklable, and checkpointable in submitit's sense. On a timeout or
preemption signal submitit calls its checkpoint hook and requeues it; whatever restarts it
(that requeue, ``scontrol requeue``, a resubmission after a crash, a local rerun after SIGKILL
or after Ctrl-C stopped it: :func:`run_here`) continues from the cell's round checkpoint
(:mod:`asvp.checkpoint`) and logs into the same MLflow run.

Before anything is submitted, :func:`prepare_jobs` opens each cell's run (reusing an
unfinished one), so a job never creates a run and a cell never gets two;
:func:`submission_lock` keeps two drivers from submitting the same cells.
"""

from __future__ import annotations

import fcntl
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import submitit
import torch

from asvp.checkpoint import STATE_FILE, RoundCheckpoint
from asvp.compute import usable_cpus
from asvp.features import FeatureStore, Holder
from asvp.pipelines import run_cell
from asvp.progress import announce
from benchmark.executors.stopping import CellInterrupted, interruptible
from benchmark.tracking import (
    STATE_FAILED,
    STATE_FINISHED,
    STATE_KILLED,
    STATE_PENDING,
    CellLogger,
    connect,
    experiment_id,
    open_run,
    run_state,
)

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from benchmark.grid import Cell, Grid

__all__ = [
    "CellJob",
    "cpu_count",
    "checkpoint_dir",
    "device_kind",
    "prepare_jobs",
    "run_here",
    "submission_lock",
]


def device_kind() -> str:
    """The device a cell runs on, as named in the grid's ``costs.device_hour`` prices."""
    return "cuda" if torch.cuda.is_available() else "cpu"


cpu_count = usable_cpus  # its name here before asvp.compute had it (benchmark.launch re-exports)


@dataclass(frozen=True)
class CellJob:
    """Runs one cell into its MLflow run, continuing from the cell's round checkpoint.

    How the cell computes (its torch threads, determinism) is its config's ``compute`` section,
    applied by :func:`asvp.pipelines.run_cell`, never the executor's: a cell alone, beside
    others or requeued on another node computes alike.

    The feature-store entries it shares with identical cells of other grids are held for its
    run (:meth:`asvp.features.Holder.for_run`): kept while this run can still resume from its
    round checkpoint, whichever attempt, process or node holds them.
    """

    cell: Cell
    grid_name: str
    run_id: str
    tracking_uri: str
    feature_store: str
    checkpoint_dir: str

    def __call__(self) -> str:
        os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri
        client = connect()
        if run_state(client.get_run(self.run_id)) == STATE_FINISHED:
            return STATE_FINISHED  # requeued after finishing (say, preempted while exiting)
        device = device_kind()
        logger = CellLogger(client, self.grid_name, self.run_id, device)
        checkpoint = RoundCheckpoint(self.checkpoint_dir, identity=self.run_id)
        announce(f"started (attempt {logger.attempt})")
        try:
            holder = Holder.for_run(self.run_id, checkpoint.directory / STATE_FILE)
            store = FeatureStore(self.feature_store, holder)
            result = run_cell(self.cell.config, store, device, logger.log_round, checkpoint)
            logger.finish(result)
        except CellInterrupted as stop:  # Ctrl-C or SIGTERM: resumable, not failed
            _record_stop(logger, str(stop))
            raise
        except Exception:
            _record_failure(logger, traceback.format_exc())
            raise
        checkpoint.clear()
        return STATE_FINISHED

    def checkpoint(self, *args: object, **kwargs: object) -> submitit.helpers.DelayedSubmission:
        """submitit's hook on timeout or preemption: requeue this job as it is; the round
        checkpoint already holds every finished round."""
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    __submitit_checkpoint__ = checkpoint  # the hook's name in newer submitit releases


def _record_failure(logger: CellLogger, details: str) -> None:
    """Mark the run failed; if even that cannot be recorded, say so in the job's log."""
    try:
        logger.fail(details)
    except Exception as error:  # noqa: BLE001  (the cell's own error is re-raised by the caller)
        print(f"could not record the failure in MLflow: {error!r}", file=sys.stderr, flush=True)


def _record_stop(logger: CellLogger, reason: str) -> None:
    """Mark the run killed; if even that cannot be recorded, say so in the job's log."""
    try:
        logger.killed(reason)
    except Exception as error:  # noqa: BLE001  (the stop itself is re-raised by the caller)
        print(f"could not record the stop in MLflow: {error!r}", file=sys.stderr, flush=True)


def run_here(job: CellJob, cancelled: Callable[[], bool] = lambda: False) -> tuple[str, str]:
    """Run a job in this process: its state and, if it failed, the traceback (already in
    MLflow); SIGINT or SIGTERM stop it at once (state ``killed``, and what stopped it). Not
    started (state ``pending``) if ``cancelled()``, asked once those signals would stop it."""
    try:
        with interruptible():
            if cancelled():
                return STATE_PENDING, ""
            job()
    except CellInterrupted as stop:
        return STATE_KILLED, str(stop)
    except Exception:  # noqa: BLE001  (recorded in the run and returned, never swallowed)
        return STATE_FAILED, traceback.format_exc()
    return STATE_FINISHED, ""


def checkpoint_dir(grid: Grid, cell: Cell) -> Path:
    """The folder of a cell's round checkpoint."""
    return (grid.cell_state_dir / "checkpoints" / cell.run_key).resolve()


def prepare_jobs(
    client: MlflowClient,
    grid: Grid,
    cells: list[tuple[Cell, Run | None]],
    tracking_uri: str,
    fresh: bool,
) -> list[CellJob]:
    """A job per ``(cell, current run or None)``: the run to log into is the current one if it
    is unfinished (its checkpoint is kept: the job resumes), else a new run (``fresh``, or the
    current one is finished), whose checkpoint directory is emptied. How each cell computes
    (its threads, determinism) is its own ``compute`` section, never the executor's choice.
    """
    experiment_id(client, grid.name)  # once here, not raced by the first jobs
    jobs = []
    for cell, current in cells:
        run_id = open_run(client, grid.name, cell, current, fresh, grid.overrides)
        directory = checkpoint_dir(grid, cell)
        if current is None or run_id != current.info.run_id:
            RoundCheckpoint(directory, identity=run_id).clear()
        jobs.append(
            CellJob(
                cell=cell,
                grid_name=grid.name,
                run_id=run_id,
                tracking_uri=tracking_uri,
                feature_store=str(Path(grid.feature_store).resolve()),
                checkpoint_dir=str(directory),
            )
        )
    return jobs


@contextmanager
def submission_lock(grid: Grid) -> Iterator[None]:
    """Held while a driver decides what to submit and submits it, so that two ``run``
    commands started at once do not both submit the same cells."""
    grid.cell_state_dir.mkdir(parents=True, exist_ok=True)
    with open(grid.cell_state_dir / "submit.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
