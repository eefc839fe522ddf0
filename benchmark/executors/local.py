"""The ``local`` executor: fresh processes on this machine, at most ``max_parallel`` at once.

How many cells run at once is all it decides: each cell computes with its grid's
``compute.threads`` (:class:`asvp.config.ComputeConfig`), so its results do not depend on how
many run beside it. ``max_parallel`` defaults to the CPUs this process may use divided by
``compute.threads``, and each cell is told its share of the CPUs
(:data:`asvp.compute.CPU_SHARE_VARIABLE`): its threads, torch's and the BLAS/OpenMP pools', are
never more than its share (:func:`asvp.compute.compute_settings`), and a ``max_parallel`` that
leaves a cell fewer CPUs than ``compute.threads`` is a preflight problem, not a slowdown: threads
that outnumber their CPUs wait for one another at every step. A cell's output goes to
``<state_dir>/<grid>/logs/<run key>.log``; a worker that dies (killed, out of memory) fails its
cell instead of stopping the grid.

The driver never blocks for long: it waits for a cell to end at most :data:`POLL_SECONDS` at a
time, and in between passes on the progress lines the running cells wrote to their logs
(:mod:`asvp.progress`, read from where it last stopped in each log). On SIGINT or SIGTERM
(:mod:`benchmark.executors.stopping`) it starts no more cells, cancels the queued ones and
sends SIGTERM to its workers: a worker stops its cell (recorded as killed, its round checkpoint
kept) and returns. Workers ignore SIGINT themselves, so a terminal's Ctrl-C, which reaches the
whole process group, and ``kill -INT`` of the driver alone end alike.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from multiprocessing.synchronize import Event
from types import FrameType
from typing import TYPE_CHECKING

from asvp.compute import CPU_SHARE_VARIABLE, usable_cpus
from asvp.progress import progress_message
from benchmark.executors.base import CellProgress, Executor, Problem, Submission
from benchmark.executors.job import CellJob, run_here
from benchmark.executors.stopping import stop_requests
from benchmark.tracking import STATE_FAILED, STATE_KILLED, STATE_PENDING, record_submission

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

POLL_SECONDS = 1.0
"""The longest the driver waits before looking at the logs and for a stop signal again."""

_stopping: Event | None = None  # a worker's: set when the grid stops (by the driver or a worker)


class LocalExecutor(Executor):
    """Fresh processes on this machine, at most ``max_parallel`` at once."""

    kind = "local"

    def _parallel(self, jobs: int) -> int:
        """Cells at once: ``max_parallel``, by default as many as the CPUs hold at
        ``compute.threads`` each; never more than the jobs."""
        default = max(1, usable_cpus() // self.grid.compute.threads)
        return max(1, min(self.settings.max_parallel or default, jobs or 1))

    def _share(self, parallel: int) -> int:
        """The CPUs each of ``parallel`` cells at once may use (at least one)."""
        return max(1, usable_cpus() // parallel)

    def problems(self) -> list[Problem]:
        """A ``compute.threads`` that the CPUs, shared among ``max_parallel`` cells at once,
        cannot give each cell (its cells would fail at start)."""
        threads, cpus = self.grid.compute.threads, usable_cpus()
        parallel = self.settings.max_parallel or max(1, cpus // threads)
        share = self._share(parallel)
        if threads <= share:
            return []
        at_once = f"executor.max_parallel {parallel}" if self.settings.max_parallel else "one"
        fit = max(1, cpus // threads)
        return [
            Problem(
                f"compute.threads is {threads} but {at_once} cell(s) at once on {cpus} CPUs "
                f"leave each cell {share}: a cell never computes with more threads than its "
                "CPUs",
                "compute.threads, executor.max_parallel and this process's CPU affinity",
                f"set executor.max_parallel to at most {fit} (or leave it unset)"
                if threads <= cpus
                else f"run on a machine with at least {threads} CPUs, or set compute.threads "
                f"to at most {cpus} (new run keys)",
            )
        ]

    def submit(
        self,
        client: MlflowClient,
        jobs: list[CellJob],
        report: Callable[[Submission | CellProgress], None],
    ) -> list[Submission]:
        logs = self.grid.cell_state_dir.resolve() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        tails = {job.run_id: _LogTail(str(logs / f"{job.cell.run_key}.log")) for job in jobs}
        for job in jobs:
            record_submission(client, job.run_id, self.kind, None, tails[job.run_id].path)
        submissions = []
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        parallel = self._parallel(len(jobs))
        with (
            stop_requests() as requests,
            ProcessPoolExecutor(
                parallel,
                mp_context=context,
                initializer=_start_worker,
                initargs=(stop, self._share(parallel)),
            ) as pool,
        ):
            futures = {pool.submit(_run_logged, job, tails[job.run_id].path): job for job in jobs}
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                if (requests.signal_name or stop.is_set()) and not self.stopped_by:
                    self.stopped_by = f"stopped by {requests.signal_name or 'a signal to a cell'}"
                    _stop_workers(stop, waiting)
                for future in (*done, *waiting):
                    job = futures[future]
                    for message in tails[job.run_id].messages():
                        report(CellProgress(job.cell, message))
                for future in done:
                    job = futures[future]
                    state, error = _worker_result(future)
                    log = tails[job.run_id].path
                    submissions.append(Submission(job.cell, job.run_id, None, log, state, error))
                    if state != STATE_PENDING and (state != STATE_KILLED or not self.stopped_by):
                        report(submissions[-1])
        return submissions


def _stop_workers(stop: Event, waiting: set[Future]) -> None:
    """Start no more cells, and stop the running ones (SIGTERM to every worker)."""
    stop.set()  # first: a worker that picks a queued job now leaves it
    for future in waiting:
        future.cancel()  # those not handed to a worker yet
    for worker in multiprocessing.active_children():
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(worker.pid, signal.SIGTERM)


def _start_worker(stop: Event, cpus: int) -> None:
    """A worker's start: its cells may use ``cpus`` CPUs; SIGINT is the driver's to act on;
    SIGTERM stops a running cell (:func:`run_here`) and, between cells, ends the worker unless
    the driver is stopping the grid (then the pool ends it in order)."""
    global _stopping
    _stopping = stop
    os.environ[CPU_SHARE_VARIABLE] = str(cpus)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate_idle)


def _terminate_idle(signum: int, frame: FrameType | None) -> None:
    if _stopping is not None and _stopping.is_set():
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _run_logged(job: CellJob, log_path: str) -> tuple[str, str]:
    """A local worker's unit of work: the job with its output appended to its log file; none
    (state ``pending``) once the driver is stopping the grid. A cell killed by a signal stops
    the grid: this worker and the others start no other cell."""
    stopping = _stopping.is_set if _stopping is not None else lambda: False
    if stopping():  # asked again under the cell's signal handlers (run_here)
        return STATE_PENDING, ""
    with _output_to(log_path):
        state, error = run_here(job, cancelled=stopping)
    if state == STATE_KILLED and _stopping is not None:
        _stopping.set()
    return state, error


class _LogTail:
    """The progress lines a log gained since last asked (from its size when made: an earlier
    attempt's lines are not repeated)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0
        self.partial = b""

    def messages(self) -> list[str]:
        try:
            with open(self.path, "rb") as log:
                log.seek(self.offset)
                data = log.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        found = (progress_message(line.decode(errors="replace")) for line in lines)
        return [self._with_log(message) for message in found if message is not None]

    def _with_log(self, message: str) -> str:
        """The message, and where the log is on a cell's first (``started``)."""
        return f"{message}, log: {self.path}" if message.startswith("started") else message


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
    """A local worker's result (``pending`` if it was cancelled before it started); a worker
    that died (killed, out of memory) fails its cell instead of stopping the grid."""
    if future.cancelled():
        return STATE_PENDING, ""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001  (reported with its traceback, never swallowed)
        return STATE_FAILED, "".join(traceback.format_exception(error))
