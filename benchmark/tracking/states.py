"""A cell run's states (the ``state`` tag) and reading and changing them: what status,
resumption and reports select runs by (:mod:`benchmark.tracking`)."""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

STATE_PENDING = "pending"
STATE_RUNNING = "running"
STATE_FINISHED = "finished"
STATE_FAILED = "failed"
STATE_SUPERSEDED = "superseded"
STATE_KILLED = "killed"


def run_state(run: Run | None) -> str | None:
    return None if run is None else run.data.tags.get("state")


def supersede(client: MlflowClient, run_id: str, by: str) -> None:
    """Tag a run ``superseded`` (kept, never deleted) and name what replaced it in
    ``superseded_by``: a run id, or why there is none."""
    client.set_tag(run_id, "state", STATE_SUPERSEDED)
    client.set_tag(run_id, "superseded_by", by)
