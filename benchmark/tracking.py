"""MLflow logging and queries: the one record every table is rendered from, and the only module
that talks to MLflow (the report reads and writes through the functions here).

Layout (docs/design.md, "Run identity, tracking, resume"): experiment = grid name, tagged
``mlflow.experimentKind = custom_model_development`` (:func:`experiment_id`); run name
``pipeline-train_method/strategy/s<seed> · <dataset label>``
(:func:`benchmark.grid.cells.run_name`); tags: run key, grid, dataset (the registry name: which
loader made the data, what other grids' runs of it share), dataset_label (the grid's name for
it: two own ``imagefolder`` datasets differ here), backbone, pipeline, train_method, strategy,
seed, git commit, device, state, overrides (the command line's ``KEY=VALUE``); params: the flat
resolved config (the whole config also as ``config.json``); metrics stepped by labels used,
named in sections (:mod:`benchmark.metric_names`): ``test_acc``, ``time/`` (the seconds of each
phase, sampling and evaluation), ``features/version``, the ASVP indicator (``indicator/value``,
``indicator/reference``, ``indicator/update``), the selection discrepancy of svpp/asvp cells
(``discrepancy/both``, ``discrepancy/proxy_only``, ...); artifacts: ``rounds/round_<r>.json``
(the round's selected pool indices, what the fine-tuned model would have selected, indicator
decision and timings), ``curve.csv``, ``labeled_order.json``, ``environment.json`` (package
versions, and per attempt what it computed with: :func:`asvp.environment.compute_environment`).

What a cell computed with is also in tags under ``env.`` (``env.cpu_model``,
``env.cpu_capability``, ``env.torch_threads``, ``env.gpu``, ``env.cuda``, ``env.cudnn``,
``env.driver``, ``env.deterministic``, ``env.host``, ``env.slurm_job``, ..., and
``env.hardware``, the label runs are grouped by), so the MLflow UI filters and groups by them;
the latest attempt's replace an earlier one's, while ``environment.json`` keeps every attempt's.

A cell owns one current run. The driver opens it before submitting (:func:`open_run`, state
``pending``); the job that runs the cell logs into that run by id, however often it is requeued
or restarted, so re-running a grid never creates a duplicate. Only ``run --force`` opens a new
run for a cell that has one; when the new run finishes, the older runs of its key are tagged
``superseded`` (kept, never deleted), and until then the older finished run stays the one
reported. Run states (tag ``state``): pending (MLflow status SCHEDULED), running, finished,
failed, killed (stopped by SIGINT/SIGTERM, tag ``stopped`` says by what; ``run`` resumes it from
its round checkpoint), superseded. Tags written by the job: ``attempts`` (starts, requeues
included), ``host``, ``pid``, ``slurm_job_id``; by the driver: ``driver`` (host:pid),
``executor``, ``job_id``, ``log_path``.

A round's metrics go in one ``log_batch`` stamped with the round's own end time, so handing a
round over again after a failure (:mod:`asvp.pipelines`, delivery) stores no duplicate values.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from asvp.environment import compute_environment, hardware_label, slurm_job_id
from asvp.loading import MixedPrecision
from asvp.pipelines import CellResult, RoundRecord
from benchmark import metric_names as names
from benchmark.compare import CellRun, RoundPicks
from benchmark.grid import Cell

STATE_PENDING = "pending"
STATE_RUNNING = "running"
STATE_FINISHED = "finished"
STATE_FAILED = "failed"
STATE_SUPERSEDED = "superseded"
STATE_KILLED = "killed"
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "numpy", "mlflow", "asvp-bench")
ENV_TAG_PREFIX = "env."
HARDWARE_TAG = f"{ENV_TAG_PREFIX}hardware"
"""The tag of a run's hardware label (:func:`asvp.environment.hardware_label`); runs made before
it existed lack it."""
ENVIRONMENT_ARTIFACT = "environment.json"


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


def _paged_runs(
    client: MlflowClient, experiment: str, query: str = "", order_by: list[str] | None = None
) -> Iterator[Run]:
    """Every run of the experiment with id ``experiment`` that ``query`` selects, in
    ``order_by`` order (None: MLflow's default, newest first), fetched a page at a time."""
    token = None
    while True:
        page = client.search_runs(
            [experiment],
            filter_string=query,
            max_results=1000,
            order_by=order_by,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def experiment_runs(client: MlflowClient, experiment: str) -> list[Run]:
    """Every run of the experiment with id ``experiment``, newest first (MLflow's order)."""
    return list(_paged_runs(client, experiment))


def _grid_run_list(
    client: MlflowClient, grid_name: str, run_key: str | None = None
) -> Iterator[Run]:
    """Every run of a grid's experiment (of one run key if given), oldest first, paged."""
    found = client.get_experiment_by_name(grid_name)
    if found is None:
        return
    query = f"tags.run_key = '{run_key}'" if run_key else ""
    yield from _paged_runs(client, found.experiment_id, query, ["attributes.start_time ASC"])


def _newest_runs(
    client: MlflowClient, grid_name: str, keep: Callable[[Run], bool]
) -> dict[str, Run]:
    """Per run key, the newest run of the grid's experiment that ``keep`` accepts."""
    runs: dict[str, Run] = {}
    for run in _grid_run_list(client, grid_name):  # oldest first: the newest wins
        if "run_key" in run.data.tags and keep(run):
            runs[run.data.tags["run_key"]] = run
    return runs


def current_runs(client: MlflowClient, grid_name: str) -> dict[str, Run]:
    """Per run key, the run that status and resumption look at: the newest not superseded."""
    return _newest_runs(client, grid_name, lambda run: run_state(run) != STATE_SUPERSEDED)


def finished_runs(client: MlflowClient, grid_name: str) -> dict[str, Run]:
    """Per run key, the newest finished run (what reports read): a forced re-run still in
    progress does not hide the finished result it is to replace."""
    return _newest_runs(client, grid_name, lambda run: run_state(run) == STATE_FINISHED)


def run_state(run: Run | None) -> str | None:
    return None if run is None else run.data.tags.get("state")


def supersede(client: MlflowClient, run_id: str, by: str) -> None:
    """Tag a run ``superseded`` (kept, never deleted) and name what replaced it in
    ``superseded_by``: a run id, or why there is none."""
    client.set_tag(run_id, "state", STATE_SUPERSEDED)
    client.set_tag(run_id, "superseded_by", by)


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
    run's MLflow status is SCHEDULED until its job starts it (MLflow would show RUNNING)."""
    driver = f"{socket.gethostname()}:{os.getpid()}"
    submission = {"driver": driver, "overrides": " ".join(overrides)}
    if current is not None and not fresh and run_state(current) != STATE_FINISHED:
        client.log_batch(current.info.run_id, tags=[RunTag(k, v) for k, v in submission.items()])
        client.update_run(current.info.run_id, status="SCHEDULED")
        return current.info.run_id
    config = cell.config
    run_id = client.create_run(
        experiment_id(client, grid_name),
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
            **submission,
            "mlflow.source.git.commit": git_commit(),
        },
    ).info.run_id
    client.update_run(run_id, status="SCHEDULED")
    client.log_batch(run_id, params=[Param(k, v) for k, v in cell.params().items()])
    client.log_dict(run_id, dataclasses.asdict(config), "config.json")
    return run_id


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


def metric_by_step(client: MlflowClient, run_id: str, metric: str) -> dict[int, float]:
    """A metric's value per step in a run; where a step was logged more than once (a rerun
    of a round, a re-report), the latest value wins."""
    history = sorted(client.get_metric_history(run_id, metric), key=lambda m: m.timestamp)
    return {m.step: m.value for m in history}


def log_changed_values(
    client: MlflowClient, run_id: str, values: dict[str, float], step: int, stamp: int
) -> int:
    """Log ``values`` into a run at ``step`` (time ``stamp`` ms), leaving out each value equal
    to the run's latest value of that metric, so logging the same values again adds nothing;
    return how many were logged."""
    latest = client.get_run(run_id).data.metrics
    metrics = [
        Metric(name, float(value), stamp, step)
        for name, value in values.items()
        if not (name in latest and math.isclose(latest[name], value, rel_tol=1e-12))
    ]
    if metrics:
        client.log_batch(run_id, metrics=metrics)
    return len(metrics)


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

    def _log_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """The dataset's arrays kept with the run (``dataset/<name>.npy``)."""
        with tempfile.TemporaryDirectory() as folder:
            for name, array in arrays.items():
                path = Path(folder) / f"{name}.npy"
                np.save(path, array)
                self.client.log_artifact(self.run_id, str(path), "dataset")

    def _supersede_older_runs(self) -> None:
        """After a forced re-run finishes, the runs it replaces stop being the cell's result."""
        for run in _grid_run_list(self.client, self.grid_name, self.run_key):
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
    with _downloaded(client, run_id, ENVIRONMENT_ARTIFACT) as path:
        return list(json.loads(path.read_text()).get("attempts", []))


@contextmanager
def _downloaded(client: MlflowClient, run_id: str, path: str) -> Iterator[Path]:
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


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# -- comparing two stores (``asvp-bench compare``, :mod:`benchmark.compare`) -----------------


def store_client(uri: str) -> MlflowClient:
    """A client of the store at ``uri``, whichever store MLflow points at in this process: to
    read a second store beside the grid's own."""
    return MlflowClient(tracking_uri=uri)


def round_records(client: MlflowClient, run_id: str) -> list[dict]:
    """The run's ``rounds/round_<r>.json`` artifacts (:class:`asvp.pipelines.RoundRecord` as
    :func:`CellLogger.log_round` wrote them), in round order; [] when it has none."""
    if not client.list_artifacts(run_id, "rounds"):
        return []
    with _downloaded(client, run_id, "rounds") as local:
        records = [json.loads(path.read_text()) for path in local.glob("round_*.json")]
    return sorted(records, key=lambda record: record["round"])


def run_metric(client: MlflowClient, run: Run, name: str) -> dict[int, float]:
    """:func:`metric_by_step` of metric ``name`` (:mod:`benchmark.metric_names`) as ``run``
    logged it: under its section, or under the flat name of runs logged before the sections."""
    return metric_by_step(client, run.info.run_id, names.logged_name(name, run.data.metrics))


def finished_cell_runs(client: MlflowClient, grid_name: str) -> dict[str, CellRun]:
    """Per run key, the grid's finished run (:func:`finished_runs`: the one reports read) with
    its rounds' picks and its test-accuracy curve, as :mod:`benchmark.compare` lines them up."""
    cells = {}
    for key, run in finished_runs(client, grid_name).items():
        run_id = run.info.run_id
        rounds = tuple(
            RoundPicks(record["round"], record["labels"], tuple(record["selected"]))
            for record in round_records(client, run_id)
        )
        curve = run_metric(client, run, names.TEST_ACC)
        cells[key] = CellRun(run.info.run_name, rounds, curve)
    return cells
