"""The ``local`` executor: fresh processes on this machine, at most ``max_parallel`` at once.

``max_parallel`` defaults to the CPU cores. How many cells run at once is all it decides: each
cell computes with its grid's ``compute.threads`` (:class:`asvp.config.ComputeConfig`), so its
results do not depend on how many run beside it; ``max_parallel x compute.threads`` above the
cores only slows the cells down. A cell's output goes to
``<state_dir>/<grid>/logs/<run key>.log``; a worker that dies (killed, out of memory) fails its
cell instead of stopping the grid.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import TYPE_CHECKING

from benchmark.executors.base import Executor, Submission
from benchmark.executors.job import CellJob, cpu_count, run_here
from benchmark.tracking import STATE_FAILED, record_submission

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


class LocalExecutor(Executor):
    """Fresh processes on this machine, at most ``max_parallel`` at once."""

    kind = "local"

    def _parallel(self, jobs: int) -> int:
        return max(1, min(self.settings.max_parallel or cpu_count(), jobs or 1))

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


def _run_logged(job: CellJob, log_path: str) -> tuple[str, str]:
    """A local worker's unit of work: the job with its output appended to its log file."""
    with _output_to(log_path):
        return run_here(job)


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
