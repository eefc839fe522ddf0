"""MLflow logging and queries: the one record every table is rendered from.

Layout (DESIGN.md, "Run identity, tracking, resume"): experiment = grid name; run name
``dataset/backbone/pipeline-train_method/strategy/s<seed>``; tags: run key, grid, dataset,
pipeline, strategy, seed, git commit, device, state; params: the flat resolved config (the
whole config also as ``config.json``); metrics stepped by labels used: ``test_acc``, per-phase
seconds ``time_<phase>``, ``sampling_seconds``, ``evaluation_seconds``, ``feature_version`` and
the ASVP indicator (``indicator_value``, ``indicator_reference``, ``indicator_update``), the
selection discrepancy of svpp/asvp cells (``discrepancy_both``, ``discrepancy_proxy_only``, ...);
artifacts: ``rounds/round_<r>.json`` (the round's selected pool indices, what the fine-tuned
model would have selected, indicator decision and timings), ``curve.csv``,
``labeled_order.json``, ``environment.json`` (package versions).

A cell owns at most one run: a rerun of an unfinished cell reuses its run, so re-running a
grid never creates a duplicate.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import subprocess
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from asvp.pipelines import CellResult, RoundRecord
from benchmark.grid import Cell

STATE_RUNNING = "running"
STATE_FINISHED = "finished"
STATE_FAILED = "failed"
VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "numpy", "mlflow", "asvp-bench")


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


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of the named experiment, created if absent (safe when processes race to it)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def find_cell_run(client: MlflowClient, experiment: str, run_key: str) -> Run | None:
    """The run recorded for a run key in a grid's experiment, if any."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id], filter_string=f"tags.run_key = '{run_key}'", max_results=2
    )
    return runs[0] if runs else None


def run_state(run: Run | None) -> str | None:
    return None if run is None else run.data.tags.get("state")


def _finite(value: float) -> float:
    return value if math.isfinite(value) else float("nan")


class CellLogger:
    """Writes one cell's run: opened before the first round, closed after the last."""

    def __init__(self, client: MlflowClient, grid_name: str, cell: Cell, device: str) -> None:
        self.client = client
        self.cell = cell
        existing = find_cell_run(client, grid_name, cell.run_key)
        if existing is not None:
            self.run_id = existing.info.run_id
            client.update_run(self.run_id, status="RUNNING")
        else:
            config = cell.config
            self.run_id = client.create_run(
                experiment_id(client, grid_name),
                run_name=cell.run_name,
                tags={
                    "run_key": cell.run_key,
                    "grid": grid_name,
                    "dataset": config.dataset,
                    "backbone": config.backbone,
                    "pipeline": config.pipeline,
                    "train_method": config.train_method,
                    "strategy": config.strategy,
                    "seed": str(config.seed),
                    "mlflow.source.git.commit": git_commit(),
                },
            ).info.run_id
            client.log_batch(
                self.run_id,
                params=[mlflow.entities.Param(k, v) for k, v in cell.params().items()],
            )
        client.set_tag(self.run_id, "device", device)
        client.set_tag(self.run_id, "state", STATE_RUNNING)
        client.log_dict(self.run_id, dataclasses.asdict(cell.config), "config.json")
        client.log_dict(self.run_id, _package_versions(), "environment.json")

    def log_round(self, record: RoundRecord) -> None:
        step = record.labels
        metrics = {
            "test_acc": record.test_acc,
            "sampling_seconds": record.sampling_seconds,
            "evaluation_seconds": record.evaluation_seconds,
            "feature_version": float(record.feature_version),
            **{f"time_{phase}": seconds for phase, seconds in record.seconds.items()},
        }
        if record.indicator is not None:
            metrics["indicator_value"] = _finite(record.indicator.value)
            metrics["indicator_reference"] = _finite(record.indicator.reference)
            metrics["indicator_update"] = float(record.indicator.update)
        if record.discrepancy is not None:
            metrics.update(record.discrepancy.as_metrics())
        for name, value in metrics.items():
            self.client.log_metric(self.run_id, name, value, step=step)
        payload = dataclasses.asdict(record)
        self.client.log_dict(self.run_id, payload, f"rounds/round_{record.round:03d}.json")

    def finish(self, result: CellResult) -> None:
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
        self.client.set_tag(self.run_id, "state", STATE_FINISHED)
        self.client.set_terminated(self.run_id, status="FINISHED")

    def fail(self, details: str) -> None:
        """Mark the run failed, keeping the traceback (``error.txt``) and its last line (tag)."""
        self.client.log_text(self.run_id, details, "error.txt")
        self.client.set_tag(self.run_id, "state", STATE_FAILED)
        self.client.set_tag(self.run_id, "error", details.strip().splitlines()[-1][:4000])
        self.client.set_terminated(self.run_id, status="FAILED")


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
