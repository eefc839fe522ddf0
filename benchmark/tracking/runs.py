"""Creating and tagging runs: the run a cell's submission logs into, how it was submitted, finished
runs of records that are not cells, and logging only changed values (:mod:`benchmark.tracking`).

MLflow's client retries a request whose answer did not arrive. For ``runs/create`` that is not
safe: a server that saved the run before its answer was lost (a restart, a dropped connection)
saves a second one for the retry. :func:`open_run` therefore tags each run it creates with a
fresh ``submission_id`` and deletes every other run carrying that id, so a cell never has two
runs from one submission."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence

from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.tracking import MlflowClient

from benchmark.grid import Cell
from benchmark.tracking.states import STATE_FINISHED, STATE_PENDING, run_state
from benchmark.tracking.store import experiment_id, git_commit

SUBMISSION_ID_TAG = "submission_id"
"""The tag holding the fresh id :func:`open_run` gives each run it creates (a uuid4 in hex)."""


def open_run(
    client: MlflowClient,
    grid_name: str,
    cell: Cell,
    current: Run | None,
    fresh: bool,
    overrides: Sequence[str] = (),
) -> str:
    """The id of the run a submission of ``cell`` logs into: its ``current`` run unless that is
    finished or ``fresh`` (``--force``) asks for a new one; a new run starts ``pending``. The
    ``driver`` tag names the submitting process: a local cell is pending while it lives. The
    ``overrides`` tag holds the command line's ``KEY=VALUE`` overrides of this submission (those
    of scientific values are in the run key and params already; executor ones only here). The
    run's MLflow status is SCHEDULED until its job starts it (MLflow would show RUNNING). A
    new run's ``submission_id`` tag tells it from a duplicate a retried create left behind,
    which is deleted (:func:`_delete_retried_creates`)."""
    driver = f"{socket.gethostname()}:{os.getpid()}"
    submission = {"driver": driver, "overrides": " ".join(overrides)}
    if current is not None and not fresh and run_state(current) != STATE_FINISHED:
        client.log_batch(current.info.run_id, tags=[RunTag(k, v) for k, v in submission.items()])
        client.update_run(current.info.run_id, status="SCHEDULED")
        return current.info.run_id
    config = cell.config
    experiment = experiment_id(client, grid_name)
    submission_id = uuid.uuid4().hex
    run_id = client.create_run(
        experiment,
        run_name=cell.run_name,
        tags={
            "run_key": cell.run_key,
            "grid": grid_name,
            "dataset": config.dataset,
            "dataset_label": cell.dataset_label,
            "backbone": config.backbone,
            "pipeline": config.pipeline,
            "train_method": config.train_method,
            "strategy": config.strategy,
            "seed": str(config.seed),
            "state": STATE_PENDING,
            SUBMISSION_ID_TAG: submission_id,
            **submission,
            "mlflow.source.git.commit": git_commit(),
        },
    ).info.run_id
    _delete_retried_creates(client, experiment, submission_id, run_id)
    client.update_run(run_id, status="SCHEDULED")
    client.log_batch(run_id, params=[Param(k, v) for k, v in cell.params().items()])
    client.log_dict(run_id, dataclasses.asdict(config), "config.json")
    return run_id


def _delete_retried_creates(
    client: MlflowClient, experiment: str, submission_id: str, run_id: str
) -> None:
    """Delete the runs of the experiment with id ``experiment`` tagged ``submission_id`` other
    than ``run_id``, the one ``create_run`` returned: those a retried create left behind
    (MLflow deletes softly: ``mlflow gc`` removes them for good). One search per created run;
    resuming or skipping a cell creates nothing and pays nothing."""
    query = f"tags.{SUBMISSION_ID_TAG} = '{submission_id}'"
    for run in client.search_runs([experiment], filter_string=query):
        if run.info.run_id != run_id:
            client.delete_run(run.info.run_id)


def record_submission(
    client: MlflowClient, run_id: str, executor: str, job_id: str | None, log_path: str | None
) -> None:
    """Tag a run with how its cell was submitted: what ``status`` shows."""
    tags = {"executor": executor, "job_id": job_id or "", "log_path": log_path or ""}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def create_finished_run(
    client: MlflowClient, experiment: str, name: str, tags: dict[str, str], values: dict[str, float]
) -> str:
    """A new run named ``name`` in the experiment with id ``experiment``, with ``tags`` and one
    value per metric (step 0), terminated ``FINISHED``; returns its id. For records that are
    not cells, such as published values (:mod:`benchmark.report.published`)."""
    run_id = client.create_run(experiment, run_name=name, tags=tags).info.run_id
    stamp = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in values.items()])
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def log_changed_values(
    client: MlflowClient,
    run_id: str,
    values: dict[str, float],
    step: int,
    stamp: int,
    latest: Mapping[str, float] | None = None,
) -> int:
    """Log ``values`` into a run at ``step`` (time ``stamp`` ms), leaving out each value equal
    to the run's latest value of that metric, so logging the same values again adds nothing;
    return how many were logged. ``latest``: the run's latest metric values (``run.data.metrics``)
    where the caller has them already; None reads them (one ``get_run`` request)."""
    if latest is None:
        latest = client.get_run(run_id).data.metrics
    metrics = [
        Metric(name, float(value), stamp, step)
        for name, value in values.items()
        if not (name in latest and math.isclose(latest[name], value, rel_tol=1e-12))
    ]
    if metrics:
        client.log_batch(run_id, metrics=metrics)
    return len(metrics)
