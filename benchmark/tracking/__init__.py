"""MLflow logging and queries: the one record every table is rendered from, and the only package
that talks to MLflow (the report reads and writes through the functions here). Its modules:
:mod:`~benchmark.tracking.store` (which store, the grid's experiment),
:mod:`~benchmark.tracking.states` (run states), :mod:`~benchmark.tracking.runs` (creating and
tagging runs), :mod:`~benchmark.tracking.cell_logger` (a cell's attempt),
:mod:`~benchmark.tracking.queries` (reading runs),
:mod:`~benchmark.tracking.finished_index` (the experiment tags that tell finished cells cheaply),
:mod:`~benchmark.tracking.histories` (metric values per step, of many runs at once) and
:mod:`~benchmark.tracking.artifacts`; every public name is importable from here.

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
``env.cpu_capability``, ``env.torch_threads``, ``env.native_threads``, ``env.gpu``,
``env.cuda``, ``env.cudnn``, ``env.driver``, ``env.deterministic``, ``env.host``,
``env.slurm_job``, ..., and ``env.hardware``, the label runs are grouped by), so the MLflow UI
filters and groups by them; the latest attempt's replace an earlier one's, while
``environment.json`` keeps every attempt's.

A cell owns one current run. The driver opens it before submitting (:func:`open_run`, state
``pending``); the job that runs the cell logs into that run by id, however often it is requeued
or restarted, so re-running a grid never creates a duplicate. A run created by a
``runs/create`` that MLflow's client retried after a lost answer is deleted: each new run
carries a fresh ``submission_id`` tag, and :func:`open_run` keeps only the run ``create_run``
returned. Only ``run --force`` opens a new
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

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from benchmark.tracking.cell_logger import (
    ENV_TAG_PREFIX,
    ENVIRONMENT_ARTIFACT,
    HARDWARE_TAG,
    VERSIONED_PACKAGES,
    CellLogger,
)
from benchmark.tracking.finished_index import (
    FINISHED_TAG_PREFIX,
    indexed_current_runs,
    record_finished,
)
from benchmark.tracking.histories import metric_by_step, metric_histories
from benchmark.tracking.queries import (
    current_runs,
    experiment_runs,
    finished_cell_runs,
    finished_runs,
    grid_run_list,
    latest_metrics,
    round_records,
    run_metric,
)
from benchmark.tracking.runs import (
    SUBMISSION_ID_TAG,
    create_finished_run,
    log_changed_values,
    open_run,
    record_submission,
)
from benchmark.tracking.states import (
    STATE_FAILED,
    STATE_FINISHED,
    STATE_KILLED,
    STATE_PENDING,
    STATE_RUNNING,
    STATE_SUPERSEDED,
    run_state,
    supersede,
)
from benchmark.tracking.store import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    connect,
    experiment_id,
    git_commit,
    store_client,
    use_store,
)

__all__ = [
    "ENVIRONMENT_ARTIFACT",
    "ENV_TAG_PREFIX",
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "FINISHED_TAG_PREFIX",
    "HARDWARE_TAG",
    "STATE_FAILED",
    "STATE_FINISHED",
    "STATE_KILLED",
    "STATE_PENDING",
    "STATE_RUNNING",
    "STATE_SUPERSEDED",
    "SUBMISSION_ID_TAG",
    "VERSIONED_PACKAGES",
    "CellLogger",
    "MlflowClient",
    "Run",
    "connect",
    "create_finished_run",
    "current_runs",
    "experiment_id",
    "experiment_runs",
    "finished_cell_runs",
    "finished_runs",
    "git_commit",
    "grid_run_list",
    "indexed_current_runs",
    "latest_metrics",
    "log_changed_values",
    "metric_by_step",
    "metric_histories",
    "open_run",
    "record_finished",
    "record_submission",
    "round_records",
    "run_metric",
    "run_state",
    "store_client",
    "supersede",
    "use_store",
]
