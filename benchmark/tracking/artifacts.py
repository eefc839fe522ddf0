"""Reading a run's artifacts into a temporary folder (:mod:`benchmark.tracking`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.tracking import MlflowClient

_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextmanager
def downloaded(client: MlflowClient, run_id: str, path: str) -> Iterator[Path]:
    """The run's artifact ``path`` in a temporary folder, removed afterwards; without
    MLflow's progress bar on stderr (one per download otherwise)."""
    before = os.environ.get(_PROGRESS_BAR)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        with tempfile.TemporaryDirectory() as folder:
            yield Path(client.download_artifacts(run_id, path, folder))
    finally:
        if before is None:
            os.environ.pop(_PROGRESS_BAR, None)
        else:
            os.environ[_PROGRESS_BAR] = before
