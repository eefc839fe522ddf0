"""The ``debug`` executor: the cells one after the other, in this process (tests, stepping
through a cell with a debugger).

A cell's progress lines (:mod:`asvp.progress`) go straight to this process's stderr. SIGINT or
SIGTERM stop the running cell at once (recorded as killed, its round checkpoint kept) and start
no other (:mod:`benchmark.executors.stopping`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from benchmark.executors.base import CellProgress, Executor, Submission
from benchmark.executors.job import CellJob, run_here
from benchmark.executors.stopping import stop_requests
from benchmark.tracking import STATE_KILLED, STATE_PENDING, record_submission

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


class DebugExecutor(Executor):
    """In this process, one cell after the other (each with its ``compute`` settings)."""

    kind = "debug"

    def submit(
        self,
        client: MlflowClient,
        jobs: list[CellJob],
        report: Callable[[Submission | CellProgress], None],
    ) -> list[Submission]:
        submissions = []
        with stop_requests() as requests:
            for job in jobs:
                if requests.signal_name:  # came between two cells
                    self.stopped_by = f"stopped by {requests.signal_name}"
                if self.stopped_by:
                    submissions.append(Submission(job.cell, job.run_id, None, None, STATE_PENDING))
                    continue
                record_submission(client, job.run_id, self.kind, None, None)
                report(CellProgress(job.cell, "starting in this process"))
                state, error = run_here(job)
                submissions.append(Submission(job.cell, job.run_id, None, None, state, error))
                if state == STATE_KILLED:
                    self.stopped_by = error
                else:
                    report(submissions[-1])
        return submissions
