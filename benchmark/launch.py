"""Executors: run a grid's cells, each in its own process, recorded in MLflow.

One interface for every backend (submitit's habit): an :class:`Executor` takes
:class:`CellJob` s and returns one :class:`Submission` per job.

- ``debug`` runs the cells one after the other in this process (tests, stepping through with
  a debugger).
- ``local`` runs at most ``max_parallel`` cells at once (default: the CPU cores), each in a
  fresh process with ``cores // max_parallel`` torch threads so that cells do not fight over
  the cores and their timings stay meaningful; a cell's output goes to
  ``<state_dir>/<grid>/logs/<run key>.log``.
- ``slurm`` submits the cells as one job array through submitit and returns once it is
  queued; jobs log to ``<state_dir>/<grid>/slurm/``.

A :class:`CellJob` is what runs in the job: picklable, and checkpointable in submitit's sense.
On a timeout or preemption signal submitit calls its checkpoint hook and requeues it; whatever
restarts it (that requeue, ``scontrol requeue``, a resubmission after a crash, a local rerun
after SIGKILL) continues from the cell's round checkpoint (:mod:`asvp.checkpoint`) and logs
into the same MLflow run.

Before anything is submitted, :func:`prepare_jobs` opens each cell's run (reusing an
unfinished one), so a job never creates a run and a cell never gets two.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import sys
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import submitit
import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from asvp.checkpoint import RoundCheckpoint
from asvp.features import FeatureStore
from asvp.pipelines import run_cell
from benchmark.grid import EXECUTOR_KINDS, Cell, ExecutorSettings, Grid
from benchmark.tracking import (
    STATE_FAILED,
    STATE_FINISHED,
    STATE_PENDING,
    CellLogger,
    experiment_id,
    open_run,
    record_submission,
    run_state,
)


class LaunchError(RuntimeError):
    """A grid that cannot be submitted as configured (the message says what to change)."""


@dataclass(frozen=True)
class Submission:
    """One submitted cell: its run, its job (SLURM id; None for local and debug) and log, and
    its state when the executor returned (``finished``/``failed`` for the blocking local and
    debug executors, ``pending`` for a queued SLURM job), with the error if it failed."""

    cell: Cell
    run_id: str
    job_id: str | None
    log_path: str | None
    state: str
    error: str = ""


def device_kind() -> str:
    """The device a cell runs on, as named in the grid's ``costs.device_hour`` prices."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_tracking(kind: str, tracking_uri: str, allow_sqlite: bool) -> None:
    """Refuse a SQLite store for SLURM jobs unless the grid allows it (``DESIGN.md``): one
    SQLite file written by jobs on many nodes over a network file system corrupts or locks."""
    if kind == "slurm" and tracking_uri.startswith("sqlite:") and not allow_sqlite:
        raise LaunchError(
            f"the slurm executor needs an MLflow server, not the SQLite store {tracking_uri!r}: "
            "start one with `asvp-bench mlflow-server --store <shared dir>` and set "
            "MLFLOW_TRACKING_URI (or tracking.uri) to its address; on a single-node cluster set "
            "tracking.allow_sqlite: true in the grid"
        )


@dataclass(frozen=True)
class CellJob:
    """Runs one cell into its MLflow run, continuing from the cell's round checkpoint.

    ``threads``: torch threads; None means ``SLURM_CPUS_PER_TASK`` (or all cores).
    """

    cell: Cell
    grid_name: str
    run_id: str
    tracking_uri: str
    feature_store: str
    checkpoint_dir: str
    threads: int | None = None

    def __call__(self) -> str:
        os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri
        slurm_cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "0"))
        torch.set_num_threads(self.threads or slurm_cpus or cpu_count())
        client = MlflowClient()
        if run_state(client.get_run(self.run_id)) == STATE_FINISHED:
            return STATE_FINISHED  # requeued after finishing (say, preempted while exiting)
        device = device_kind()
        logger = CellLogger(client, self.grid_name, self.run_id, device)
        checkpoint = RoundCheckpoint(self.checkpoint_dir, identity=self.run_id)
        try:
            store = FeatureStore(self.feature_store)
            result = run_cell(self.cell.config, store, device, logger.log_round, checkpoint)
            logger.finish(result)
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


# --------------------------------------------------------------------------------------------
# Preparing jobs
# --------------------------------------------------------------------------------------------


def checkpoint_dir(grid: Grid, cell: Cell) -> Path:
    return (grid.cell_state_dir / "checkpoints" / cell.run_key).resolve()


def prepare_jobs(
    client: MlflowClient,
    grid: Grid,
    cells: list[tuple[Cell, Run | None]],
    tracking_uri: str,
    fresh: bool,
    threads: int | None,
) -> list[CellJob]:
    """A job per ``(cell, current run or None)``: the run to log into is the current one if it
    is unfinished (its checkpoint is kept: the job resumes), else a new run (``fresh``, or the
    current one is finished), whose checkpoint directory is emptied."""
    experiment_id(client, grid.name)  # once here, not raced by the first jobs
    jobs = []
    for cell, current in cells:
        run_id = open_run(client, grid.name, cell, current, fresh)
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
                threads=threads,
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


# --------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------


class Executor(ABC):
    """Runs :class:`CellJob` s; ``report`` is called with each submission as it is known."""

    kind: ClassVar[str]

    def __init__(self, grid: Grid, settings: ExecutorSettings) -> None:
        self.grid = grid
        self.settings = settings

    def threads(self, jobs: int) -> int | None:
        """Torch threads per cell (None: decided in the job)."""
        return None

    @abstractmethod
    def submit(
        self, client: MlflowClient, jobs: list[CellJob], report: Callable[[Submission], None]
    ) -> list[Submission]: ...


class DebugExecutor(Executor):
    """In this process, one cell after the other."""

    kind = "debug"

    def threads(self, jobs: int) -> int | None:
        return cpu_count()

    def submit(
        self, client: MlflowClient, jobs: list[CellJob], report: Callable[[Submission], None]
    ) -> list[Submission]:
        submissions = []
        for job in jobs:
            record_submission(client, job.run_id, self.kind, None, None)
            state, error = _run_job(job)
            submissions.append(Submission(job.cell, job.run_id, None, None, state, error))
            report(submissions[-1])
        return submissions


class LocalExecutor(Executor):
    """Fresh processes on this machine, at most ``max_parallel`` at once."""

    kind = "local"

    def _parallel(self, jobs: int) -> int:
        return max(1, min(self.settings.max_parallel or cpu_count(), jobs or 1))

    def threads(self, jobs: int) -> int | None:
        return max(1, cpu_count() // self._parallel(jobs))

    def submit(
        self, client: MlflowClient, jobs: list[CellJob], report: Callable[[Submission], None]
    ) -> list[Submission]:
        logs = self.grid.cell_state_dir.resolve() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        paths = {job.run_id: str(logs / f"{job.cell.run_key}.log") for job in jobs}
        for job in jobs:
            record_submission(client, job.run_id, self.kind, None, paths[job.run_id])
        submissions = []
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self._parallel(len(jobs)), mp_context=context) as pool:
            futures = {pool.submit(_run_logged, job, paths[job.run_id]): job for job in jobs}
            for future in as_completed(futures):
                job = futures[future]
                state, error = _worker_result(future)
                log = paths[job.run_id]
                submissions.append(Submission(job.cell, job.run_id, None, log, state, error))
                report(submissions[-1])
        return submissions


class SlurmExecutor(Executor):
    """SLURM job arrays through submitit, one per set of resources (datasets may set their
    own: ``datasets[i].executor``); returns once the arrays are queued."""

    kind = "slurm"

    def submit(
        self, client: MlflowClient, jobs: list[CellJob], report: Callable[[Submission], None]
    ) -> list[Submission]:
        groups: dict[str, tuple[ExecutorSettings, list[CellJob]]] = {}
        for job in jobs:
            settings = self.grid.executor_for(job.cell.config.dataset, self.settings)
            groups.setdefault(repr(settings), (settings, []))[1].append(job)
        submissions = []
        for settings, members in groups.values():
            submissions += self._submit_array(client, settings, members, report)
        return submissions

    def _submit_array(
        self,
        client: MlflowClient,
        settings: ExecutorSettings,
        jobs: list[CellJob],
        report: Callable[[Submission], None],
    ) -> list[Submission]:
        folder = self.grid.cell_state_dir.resolve() / "slurm" / "%j"
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=settings.max_requeues)
        executor.update_parameters(**self.sbatch_parameters(settings))
        with executor.batch():
            handles = [executor.submit(job) for job in jobs]
        submissions = []
        for job, handle in zip(jobs, handles, strict=True):
            log = str(handle.paths.stdout)
            record_submission(client, job.run_id, self.kind, handle.job_id, log)
            submissions.append(Submission(job.cell, job.run_id, handle.job_id, log, STATE_PENDING))
            report(submissions[-1])
        return submissions

    def sbatch_parameters(self, settings: ExecutorSettings | None = None) -> dict[str, object]:
        """submitit's SlurmExecutor parameters from executor settings (default: the grid's)."""
        s = settings or self.settings
        parameters: dict[str, object] = {
            "job_name": f"asvp-{self.grid.name}",
            "time": s.time_min,
            "cpus_per_task": s.cpus_per_task,
            "array_parallelism": s.array_parallelism,
            "signal_delay_s": s.signal_delay_s,
            "setup": list(s.setup),
            "additional_parameters": dict(s.sbatch),
        }
        optional = {
            "partition": s.partition,
            "account": s.account,
            "qos": s.qos,
            "constraint": s.constraint,
            "gpus_per_node": s.gpus_per_node,
            "mem": f"{round(s.mem_gb * 1024)}M" if s.mem_gb is not None else None,
        }
        parameters.update({k: v for k, v in optional.items() if v is not None})
        return parameters


EXECUTOR_CLASSES: dict[str, type[Executor]] = {
    cls.kind: cls for cls in (DebugExecutor, LocalExecutor, SlurmExecutor)
}


def make_executor(kind: str, grid: Grid, settings: ExecutorSettings) -> Executor:
    if kind not in EXECUTOR_CLASSES:
        raise LaunchError(f"unknown executor {kind!r}; expected one of {EXECUTOR_KINDS}")
    return EXECUTOR_CLASSES[kind](grid, settings)


# --------------------------------------------------------------------------------------------
# Running a job in this process or a local worker
# --------------------------------------------------------------------------------------------


def _run_job(job: CellJob) -> tuple[str, str]:
    """Run a job here: its state and, if it failed, the traceback (already in MLflow)."""
    try:
        job()
    except Exception:  # noqa: BLE001  (recorded in the run and returned, never swallowed)
        return STATE_FAILED, traceback.format_exc()
    return STATE_FINISHED, ""


def _run_logged(job: CellJob, log_path: str) -> tuple[str, str]:
    """A local worker's unit of work: the job with its output appended to its log file."""
    with _output_to(log_path):
        return _run_job(job)


@contextmanager
def _output_to(path: str) -> Iterator[None]:
    """Point this process's stdout and stderr (the file descriptors, so that native code's
    output goes there too) at ``path`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _worker_result(future: Future) -> tuple[str, str]:
    """A local worker's result; a worker that died (killed, out of memory) fails its cell
    instead of stopping the grid."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001  (reported with its traceback, never swallowed)
        return STATE_FAILED, "".join(traceback.format_exception(error))
