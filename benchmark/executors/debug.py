"""The ``debug`` executor: the cells one after the other, in this process (tests, stepping
through a cell with a debugger)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from benchmark.executors.base import Executor, Submission
from benchmark.executors.job import CellJob, run_here
from benchmark.tracking import record_submission

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


class DebugExecutor(Executor):
    """In this process, one cell after the other (each with its ``compute`` settings)."""

    kind = "debug"

    def submit(
        self, client: MlflowClient, jobs: list[CellJob], report: Callable[[Submission], None]
    ) -> list[Submission]:
        submissions = []
        for job in jobs:
            record_submission(client, job.run_id, self.kind, None, None)
            state, error = run_here(job)
            submissions.append(Submission(job.cell, job.run_id, None, None, state, error))
            report(submissions[-1])
        return submissions
