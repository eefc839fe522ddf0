"""Which MLflow store the harness talks to, and the experiments in it: the store's URI for this
process and its jobs, clients of it (and of a second store, for ``asvp-bench compare``), the
code's git commit, and the grid's experiment (:mod:`benchmark.tracking`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


def use_store(uri: str | None) -> str:
    """Point MLflow, in this process and in the jobs it starts (through
    ``MLFLOW_TRACKING_URI``), at ``uri``; return the store's URI (MLflow's default when
    ``uri`` is None, made absolute so that jobs elsewhere find the same file)."""
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
        mlflow.set_tracking_uri(uri)  # also over a URI set earlier in this process
    return mlflow.get_tracking_uri()


def connect() -> MlflowClient:
    """A client of the store MLflow points at (:func:`use_store`, or the environment)."""
    return MlflowClient()


def git_commit() -> str:
    """The commit of the working tree this code runs from, or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""What the MLflow UI (3.x) may read to open an experiment as model training (runs table,
charts) rather than as a GenAI app (traces): its ``ExperimentKind`` values. 3.17 reads it only
with its GenAI / Model training switch off (it is on): :mod:`benchmark.mlflow_links`."""


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of the named experiment, created if absent (safe when processes race to it),
    tagged as a model-training experiment (:data:`EXPERIMENT_KIND`): when created, and an
    existing one whose tag is absent or says otherwise (made before the tag, or guessed by
    the UI)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def store_client(uri: str) -> MlflowClient:
    """A client of the store at ``uri``, whichever store MLflow points at in this process: to
    read a second store beside the grid's own."""
    return MlflowClient(tracking_uri=uri)
