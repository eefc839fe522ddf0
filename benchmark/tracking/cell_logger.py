"""Writing one attempt of a cell into its run: its rounds' metrics and records, what it computed
with, and how it ended (:mod:`benchmark.tracking`)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from asvp.environment import compute_environment, hardware_label, slurm_job_id
from asvp.loading import MixedPrecision
from asvp.pipelines import CellResult, RoundRecord
from benchmark import metric_names as names
from benchmark.tracking.artifacts import downloaded
from benchmark.tracking.finished_index import record_finished
from benchmark.tracking.queries import grid_run_list
from benchmark.tracking.states import (
    STATE_FAILED,
    STATE_FINISHED,
    STATE_KILLED,
    STATE_RUNNING,
    STATE_SUPERSEDED,
    run_state,
    supersede,
)

VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "numpy", "mlflow", "asvp-bench")
ENV_TAG_PREFIX = "env."
HARDWARE_TAG = f"{ENV_TAG_PREFIX}hardware"
"""The tag of a run's hardware label (:func:`asvp.environment.hardware_label`); runs made before
it existed lack it."""
ENVIRONMENT_ARTIFACT = "environment.json"


def _finite(value: float) -> float:
    return value if math.isfinite(value) else float("nan")


class CellLogger:
    """Writes one attempt of a cell into the run :func:`open_run` opened for it.

    What the attempt computes with is recorded once (:meth:`log_environment`), when its first
    round is logged or at its end, whichever comes first, not when the logger is made: by then
    the cell has set its threads and deterministic settings, which are part of the record.
    """

    def __init__(self, client: MlflowClient, grid_name: str, run_id: str, device: str) -> None:
        self.client = client
        self.grid_name = grid_name
        self.run_id = run_id
        run = client.get_run(run_id)
        self.run_key = run.data.tags["run_key"]
        self.attempt = int(run.data.tags.get("attempts", "0")) + 1
        self._environment_logged = False
        tags = {
            "device": device,
            # bf16 / fp16 autocast or fp32: fine-tuning results depend on it (asvp.loading)
            "finetune_precision": MixedPrecision.for_device(torch.device(device)).name,
            "state": STATE_RUNNING,
            "attempts": str(self.attempt),
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "slurm_job_id": slurm_job_id(),
        }
        client.update_run(run_id, status="RUNNING")
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_environment(self) -> None:
        """Record what this attempt computes with, once per attempt: as ``env.*`` tags (a
        later attempt's replace these, so the tags say where the run last computed) and
        appended to the ``attempts`` list of ``environment.json`` (so a requeue onto other
        hardware stays visible), beside the package versions."""
        if self._environment_logged:
            return
        env = compute_environment()
        env["hardware"] = hardware_label(env)
        tags = [RunTag(f"{ENV_TAG_PREFIX}{key}", value) for key, value in env.items()]
        self.client.log_batch(self.run_id, tags=tags)
        versions = _package_versions()
        attempts = _logged_attempts(self.client, self.run_id)
        attempts.append({"attempt": self.attempt, "packages": versions, **env})
        record = {**versions, "attempts": attempts}
        self.client.log_dict(self.run_id, record, ENVIRONMENT_ARTIFACT)
        self._environment_logged = True

    def log_round(self, record: RoundRecord) -> None:
        self.log_environment()
        step = record.labels
        metrics = {
            names.TEST_ACC: record.test_acc,
            names.SAMPLING_SECONDS: record.sampling_seconds,
            names.EVALUATION_SECONDS: record.evaluation_seconds,
            names.FEATURE_VERSION: float(record.feature_version),
            **{names.phase_seconds(phase): seconds for phase, seconds in record.seconds.items()},
        }
        if record.indicator is not None:
            metrics[names.INDICATOR_VALUE] = _finite(record.indicator.value)
            metrics[names.INDICATOR_REFERENCE] = _finite(record.indicator.reference)
            metrics[names.INDICATOR_UPDATE] = float(record.indicator.update)
        if record.discrepancy is not None:
            regions = dataclasses.asdict(record.discrepancy)
            metrics.update({names.discrepancy(k): float(v) for k, v in regions.items()})
        metrics.update(names.finetune_metrics(record.finetune))
        stamp = record.finished_at_ms
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, v, stamp, step) for k, v in metrics.items()]
        )
        payload = dataclasses.asdict(record)
        self.client.log_dict(self.run_id, payload, f"rounds/round_{record.round:03d}.json")

    def finish(self, result: CellResult) -> None:
        self.log_environment()
        rows = ["round,labels,test_acc,train_method,sampling_seconds,evaluation_seconds"]
        rows += [
            f"{r.round},{r.labels},{r.test_acc},{r.train_method},"
            f"{r.sampling_seconds},{r.evaluation_seconds}"
            for r in result.rounds
        ]
        self.client.log_text(self.run_id, "\n".join(rows) + "\n", "curve.csv")
        self.client.log_dict(self.run_id, result.labeled_order, "labeled_order.json")
        updates = [
            r.labels for r in result.rounds if r.indicator is not None and r.indicator.update
        ]
        self.client.set_tag(self.run_id, "feature_updates_at", json.dumps(updates))
        self.client.set_tag(self.run_id, "resumed_rounds", str(result.resumed_rounds))
        self.client.set_tag(self.run_id, "weights_sha256", result.weights_sha256)
        self._log_arrays(result.artifacts)
        self.client.set_tag(self.run_id, "state", STATE_FINISHED)
        self.client.set_terminated(self.run_id, status="FINISHED")
        self._supersede_older_runs()
        record_finished(self.client, self.run_id)

    def _log_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """The dataset's arrays kept with the run (``dataset/<name>.npy``)."""
        with tempfile.TemporaryDirectory() as folder:
            for name, array in arrays.items():
                path = Path(folder) / f"{name}.npy"
                np.save(path, array)
                self.client.log_artifact(self.run_id, str(path), "dataset")

    def _supersede_older_runs(self) -> None:
        """After a forced re-run finishes, the runs it replaces stop being the cell's result."""
        for run in grid_run_list(self.client, self.grid_name, self.run_key):
            if run.info.run_id != self.run_id and run_state(run) != STATE_SUPERSEDED:
                supersede(self.client, run.info.run_id, self.run_id)

    def fail(self, details: str) -> None:
        """Mark the run failed, keeping the traceback (``error.txt``) and its last line (tag),
        and, after these, what the attempt computed with if no round recorded it."""
        self.client.log_text(self.run_id, details, "error.txt")
        self.client.set_tag(self.run_id, "state", STATE_FAILED)
        self.client.set_tag(self.run_id, "error", details.strip().splitlines()[-1][:4000])
        self.client.set_terminated(self.run_id, status="FAILED")
        self.log_environment()

    def killed(self, reason: str) -> None:
        """Mark the run killed (stopped by a signal: Ctrl-C, SIGTERM), with ``reason`` in the
        ``stopped`` tag. Not finished: the next ``run`` resumes it from its round checkpoint."""
        tags = {"state": STATE_KILLED, "stopped": reason}
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(self.run_id, status="KILLED")


def _logged_attempts(client: MlflowClient, run_id: str) -> list[dict[str, object]]:
    """The ``attempts`` list of the run's ``environment.json``: empty when it has none, or one
    written before attempts were recorded (package versions only)."""
    if not any(f.path == ENVIRONMENT_ARTIFACT for f in client.list_artifacts(run_id)):
        return []
    with downloaded(client, run_id, ENVIRONMENT_ARTIFACT) as path:
        return list(json.loads(path.read_text()).get("attempts", []))


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
