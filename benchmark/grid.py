"""Grid files: YAML schema, validation, expansion into cells, and run keys.

A grid file (``experiments/*.yaml``) names datasets with their budget schedules, one backbone,
seeds, strategies and pipelines, plus the method's settings. :func:`load_grid` reads and
validates it into a :class:`Grid`; :func:`expand_cells` turns a grid into :class:`Cell` s, each
with its :class:`asvp.config.CellConfig`, run key and MLflow run name (``DESIGN.md``, "Run
identity, tracking, resume"). The example grid below shows every key::

    name: demo                       # required; MLflow experiment name; [A-Za-z0-9_.-]+
    description: "..."               # optional string
    datasets:                        # required, non-empty; each name at most once
      - name: mnist5k                # one of asvp.data.available_datasets()
        options: {test_size: 500}    # optional; keyword arguments of the dataset's loader
        budgets: [20, 40, 60]        # cumulative label counts, strictly increasing, <= pool size
        executor: {mem_gb: 32}       # optional; this dataset's own executor (SLURM) settings
        backbone: {name: resnet18_cifar_simsiam, options: {checkpoint: FILE}}  # optional
        image_size: 32               # optional; this dataset's own image size
        finetune: {epochs: 130}      # optional; fields of finetune, linear_probe and proxy
                                     # set for this dataset (merged over the grid's sections)
    backbone: efficientnet_lite0     # one of asvp.models.backbones.available_backbones(), or
                                     # {name: resnet50_byol_eman, options: {checkpoint: FILE}}
    image_size: 48                   # default 224
    data_root: ${ASVP_DATA:-data}    # datasets' root folder (default data); not in run keys
    download: false                  # let torchvision download missing datasets
    full_data: false                 # add a full-data cell (FT on the whole pool) per seed
    keep_updated_features: false     # keep ASVP's re-extracted features after a cell ends
    seeds: [0, 1]                    # distinct integers >= 0
    strategies:                      # must contain "random" (the baseline of every ratio)
      - random
      - margin
      - {name: badge, options: {candidates: 5000}}   # keyword options of the strategy
      - {name: replay, label: official, options: {order: alidx.npy}}  # label: its table name
    pipelines:                       # standard: ft | lpft; svpp: ft | lpft; asvp: ft | lpft | auto
      - {pipeline: svpp, train_method: lpft}
      - {pipeline: asvp, train_method: auto, trigger: {rule: ped}, strategies: [margin]}
    baseline: {train_method: ft}     # the random baseline's evaluation fine-tune; default ft
    finetune: {epochs: 15}           # fields of asvp.config.FineTuneConfig
    linear_probe: {}                 # LinearProbeConfig
    proxy: {}                        # ProxyConfig
    trigger: {rule: logme}           # TriggerConfig
    discrepancy_analysis: true       # svpp/asvp: also log the fine-tuned model's picks
    costs: {label_price: 0.05, reviews_per_label: 1, device_hour: {cpu: 0.1}, note: "..."}
    executor:                        # how cells run; never part of a run key
      kind: local                    # local | debug | slurm
      max_parallel: null             # local: cells at once (null: CPU cores)
      partition: gpu                 # slurm: sbatch --partition (null: the cluster's default)
      account: null                  # slurm: --account
      qos: null                      # slurm: --qos
      constraint: null               # slurm: --constraint, e.g. "a100|h100"
      gpus_per_node: 1               # slurm: --gpus-per-node (null: none requested)
      cpus_per_task: 8               # slurm: --cpus-per-task (also the cell's torch threads)
      mem_gb: 64                     # slurm: --mem (null: the partition's default)
      time_min: 240                  # slurm: --time; a job near it is requeued and resumes
      array_parallelism: 64          # slurm: tasks of the job array running at once
      max_requeues: 3                # slurm: timeouts that requeue (preemptions always do)
      signal_delay_s: 120            # slurm: USR2 this long before the time limit
      setup: ["module load cuda"]    # slurm: shell lines run before each job
      sbatch: {exclude: node07}      # slurm: any other sbatch option (name without --)
    tracking:
      uri: null                      # null: MLflow's default (sqlite:///mlflow.db)
      allow_sqlite: false            # slurm: accept a SQLite URI (one node only)
    feature_store: .asvp/features    # relative paths are relative to the working directory
    state_dir: .asvp/state           # round checkpoints and logs: <state_dir>/<name>/; shared
                                     # storage on a cluster

Decisions written down here (``DESIGN.md`` leaves them open):

- The schema of ``finetune``, ``linear_probe``, ``proxy`` and ``trigger`` is derived from the
  dataclasses in :mod:`asvp.config` (field names, annotated types, defaults), and that of
  ``costs``, ``executor``, ``baseline`` and ``tracking`` from the dataclasses below, so no key
  or default is written twice. Range checks (``epochs >= 1``, ``fraction`` in (0, 1], ...) are in
  ``_FIELD_RULES``.
- Types are strict: an integer field refuses ``true`` and ``2.5``; a float field accepts an
  integer (``lr: 1`` is ``1.0``, so both give the same run key); non-finite numbers are
  refused. The YAML reader follows YAML 1.2 for floats, so ``1e-4`` is a number (PyYAML alone
  reads it as a string), and a key given twice in one mapping is an error, not "last one wins".
- ``${NAME}`` and ``${NAME:-default}`` in string values are replaced by environment variables
  when the file is read (the default is used when the variable is unset or empty, as in the
  shell). In a field that is not a string (``epochs: ${EPOCHS:-15}``) the expanded text is read
  as a YAML scalar. Dataset options are untyped, so an expanded option stays a string. Inside a
  flow mapping (``{...}``) quote the reference: ``finetune: {epochs: "${EPOCHS:-15}"}``.
- Every dataset is loaded once at validation (``check_data=True``, the default) to check its
  options and that the last budget fits its pool; missing data is refused before anything runs.
- A pipeline entry may override ``trigger`` fields (asvp only; merged over the grid's
  ``trigger`` section) and restrict ``strategies`` to some of the grid's strategy labels, so one
  grid can compare ASVP rules without crossing each with every strategy. Its label
  (``asvp-auto`` or ``asvp-auto[rule=ped]``, the overridden fields) names it in run names and
  tables.
- A dataset name may appear once per grid and a pipeline label once, so that run names are
  unique within a grid. A strategy may appear more than once with different options:
  its label (``badge`` or ``badge[candidates=5000]``) names it in run names and tables.
- Strategy options are checked against the strategy function's keyword parameters
  (:func:`asvp.strategies.check_strategy_options`); they enter the run key only when given.
- A run key hashes only what determines results (:func:`scientific_config`): a svpp cell's key
  ignores ``trigger``, a ``ft`` cell's key ignores ``linear_probe``. Dataset options are hashed
  as written (loader defaults are not filled in), so ``options: {}`` and the loader's default
  written out give different keys.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import hashlib
import json
import math
import os
import re
import types
import typing
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from asvp.config import CellConfig, FineTuneConfig, LinearProbeConfig, ProxyConfig, TriggerConfig
from asvp.data import DatasetNotFoundError, available_datasets, load_dataset
from asvp.hashing import file_sha256
from asvp.models.backbones import available_backbones, check_backbone_options
from asvp.pipelines import PIPELINE_TRAIN_METHODS
from asvp.strategies import available_strategies, check_strategy_options
from asvp.strategies.replay import REPLAY, replayed_order
from asvp.training import TRAIN_METHODS
from asvp.trigger import TRIGGER_RULES, check_ped_settings

__all__ = [
    "EXECUTOR_KINDS",
    "GRID_PIPELINES",
    "RANDOM",
    "RESULTS_VERSION",
    "Cell",
    "Costs",
    "DatasetSpec",
    "ExecutorSettings",
    "Grid",
    "GridError",
    "PipelineSpec",
    "TrackingSettings",
    "expand_cells",
    "load_grid",
    "resolve_tracking_uri",
    "run_key",
    "run_name",
    "scientific_config",
]

# Bump when a code change alters results: it changes every run key, so `run` re-runs every cell
# instead of skipping cells whose finished runs were made by the old code.
RESULTS_VERSION: int = 2  # 2: ASVP's re-extracted features are float16, as the stored ones

RANDOM = "random"
"""The random baseline's strategy name, and its pipeline name in cells and run names."""

FULL_DATA = "full"
"""The full-data cell's pipeline name (``full_data: true``); its strategy is :data:`ALL`."""

ALL = "all"
"""The full-data cell's strategy label: every pool image is labelled at once."""

GRID_PIPELINES: dict[str, tuple[str, ...]] = {
    name: methods
    for name, methods in PIPELINE_TRAIN_METHODS.items()
    if name not in (RANDOM, FULL_DATA)
}
"""The pipelines a grid's ``pipelines`` list may name, with the train methods each accepts."""

EXECUTOR_KINDS = ("debug", "local", "slurm")

# fmt: off
_TOP_LEVEL_KEYS = (
    "name", "description", "datasets", "backbone", "image_size", "seeds", "strategies",
    "pipelines", "baseline", "finetune", "linear_probe", "proxy", "trigger", "costs", "executor",
    "tracking", "feature_store", "state_dir", "discrepancy_analysis", "data_root", "download",
    "keep_updated_features", "full_data",
)
# fmt: on
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class GridError(ValueError):
    """An invalid grid file. ``errors`` holds one line per problem, each naming the file, the
    dotted key, the offending value and what is expected; the message is those lines."""

    def __init__(self, path: str | os.PathLike[str], errors: Sequence[str]) -> None:
        self.path = Path(path)
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# --------------------------------------------------------------------------------------------
# The grid and its parts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Costs:
    """Prices for the total-cost tables (``DESIGN.md``, "Metrics and costs"); printed with them.

    ``label_price`` is USD per label per review, ``device_hour`` maps a device kind (as tagged on
    runs, e.g. ``cpu``, ``gpu``) to USD per device-hour.
    """

    label_price: float = 0.0
    reviews_per_label: int = 1
    device_hour: dict[str, float] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class ExecutorSettings:
    """How cells are run (``benchmark/launch.py``); never part of a run key.

    ``max_parallel`` (local): cells run at once; None means the number of CPU cores. The other
    fields are the slurm executor's sbatch settings (None: not requested, the cluster's
    default); ``sbatch`` passes any other option by its long name without ``--``.
    """

    kind: str = "local"
    max_parallel: int | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int = 1
    mem_gb: float | None = None
    time_min: int = 60
    array_parallelism: int = 256
    max_requeues: int = 3
    signal_delay_s: int = 120
    setup: tuple[str, ...] = ()
    sbatch: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _BaselineSettings:
    train_method: str = "ft"


@dataclass(frozen=True)
class TrackingSettings:
    """Where runs are recorded. ``allow_sqlite``: let the slurm executor use a SQLite URI
    (safe only when every job runs on the machine holding the file)."""

    uri: str | None = None
    allow_sqlite: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a grid: registry name, loader options and cumulative label budgets, and
    what it sets for itself over the grid's values: ``backbone`` (name and options),
    ``image_size``, the fields of ``finetune``, ``linear_probe`` and ``proxy`` it overrides
    (``sections``) and its executor settings (its SLURM resources)."""

    name: str
    options: dict[str, Any]
    budgets: tuple[int, ...]
    executor: dict[str, Any] = field(default_factory=dict)
    backbone: tuple[str, dict[str, Any]] | None = None
    image_size: int | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class StrategySpec:
    """One strategy of a grid: registry name and keyword options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    given_label: str | None = None  # the grid's ``label:``, for long options (replay's file)

    @property
    def label(self) -> str:
        return self.given_label or strategy_label(self.name, self.options)


@dataclass(frozen=True)
class PipelineSpec:
    """One pipeline entry of a grid: ``standard``, ``svpp`` or ``asvp`` with its train method,
    the trigger fields it overrides (asvp), and the strategy labels it is restricted to (None:
    all of the grid's)."""

    pipeline: str
    train_method: str
    trigger_overrides: dict[str, Any] = field(default_factory=dict)
    strategies: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        return strategy_label(f"{self.pipeline}-{self.train_method}", self.trigger_overrides)


@dataclass(frozen=True)
class Grid:
    """A validated grid file (see the module docstring for the keys)."""

    name: str
    description: str
    path: Path
    datasets: list[DatasetSpec]
    backbone: str
    backbone_options: dict[str, Any]
    image_size: int
    seeds: list[int]
    strategies: list[StrategySpec]
    pipelines: list[PipelineSpec]
    baseline_train_method: str
    finetune: FineTuneConfig
    linear_probe: LinearProbeConfig
    proxy: ProxyConfig
    trigger: TriggerConfig
    costs: Costs
    executor: ExecutorSettings
    tracking: TrackingSettings
    feature_store: str
    state_dir: str = ".asvp/state"
    discrepancy_analysis: bool = True
    data_root: str = "data"
    download: bool = False
    keep_updated_features: bool = False
    full_data: bool = False

    @property
    def tracking_uri(self) -> str | None:
        return self.tracking.uri

    def backbones(self) -> list[tuple[str, dict[str, Any]]]:
        """Every backbone the grid's cells use (name and options), the grid's own first."""
        used = [(self.backbone, self.backbone_options)]
        for spec in self.datasets:
            if spec.backbone is not None and spec.backbone not in used:
                used.append(spec.backbone)
        return used

    def executor_for(self, dataset: str, settings: ExecutorSettings) -> ExecutorSettings:
        """``settings`` with the dataset's own executor overrides (its SLURM resources)."""
        spec = next(spec for spec in self.datasets if spec.name == dataset)
        return dataclasses.replace(settings, **spec.executor)

    @property
    def cell_state_dir(self) -> Path:
        """This grid's round checkpoints and logs: ``<state_dir>/<name>``."""
        return Path(self.state_dir) / self.name


@dataclass(frozen=True)
class Cell:
    """One unit of work: a pipeline with a strategy on one dataset, backbone and seed."""

    config: CellConfig
    run_key: str
    run_name: str
    pipeline_label: str
    strategy_label: str

    def params(self) -> dict[str, str]:
        """The flat resolved scientific config for MLflow params: dotted keys (``finetune.epochs``),
        values as text (strings as they are, everything else as JSON), plus ``results_version``."""
        flat: dict[str, str] = {"results_version": str(RESULTS_VERSION)}
        _flatten(scientific_config(self.config), "", flat)
        return flat


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def load_grid(path: str | os.PathLike[str], *, check_data: bool = True) -> Grid:
    """Read and validate the grid file at ``path``.

    Every problem found is reported at once in one :class:`GridError` (one line each). With
    ``check_data`` (the default) each dataset is loaded to check its options and that its last
    budget fits the pool; pass False where only the grid's structure is needed (reports).
    """
    path = Path(path)
    check = _Checker(path)
    raw = _read_yaml(path)
    data = _expand_env(check, raw, "")
    if not isinstance(data, dict):
        check.bad("<top level>", data, "a mapping of grid keys")
        check.raise_if_errors()
    check.unknown_keys(data, "", _TOP_LEVEL_KEYS)

    name = check.typed(data.get("name", _ABSENT), str, "name")
    if isinstance(name, str) and not _NAME_PATTERN.fullmatch(name):
        check.bad(
            "name", name, "letters, digits, '_', '.' and '-' only (an MLflow experiment name)"
        )
    description = check.typed(data.get("description", ""), str, "description")
    backbone, backbone_options = _read_backbone(check, data.get("backbone", _ABSENT), "backbone")
    image_size = check.typed(data.get("image_size", 224), int, "image_size")
    if isinstance(image_size, int) and image_size < 1:
        check.bad("image_size", image_size, "an integer >= 1")
    seeds = _read_seeds(check, data.get("seeds", _ABSENT), "seeds")
    strategies = _read_strategies(check, data.get("strategies", _ABSENT), "strategies")
    pipelines = _read_pipelines(check, data.get("pipelines", _ABSENT), "pipelines", strategies)
    baseline = _read_section(check, data.get("baseline"), "baseline", _BaselineSettings)
    sections = {
        key: _read_section(check, data.get(key), key, cls)
        for key, cls in (
            ("finetune", FineTuneConfig),
            ("linear_probe", LinearProbeConfig),
            ("proxy", ProxyConfig),
            ("trigger", TriggerConfig),
        )
    }
    for i, entry in enumerate(pipelines):
        if entry.trigger_overrides:  # checked as merged over the grid's trigger section
            merged = dataclasses.replace(sections["trigger"], **entry.trigger_overrides)
            _check_section_consistency(check, merged, f"pipelines[{i}].trigger")
    costs = _read_section(check, data.get("costs"), "costs", Costs)
    executor = _read_section(check, data.get("executor"), "executor", ExecutorSettings)
    tracking = _read_section(check, data.get("tracking"), "tracking", TrackingSettings)
    feature_store = check.typed(data.get("feature_store", ".asvp/features"), str, "feature_store")
    state_dir = check.typed(data.get("state_dir", ".asvp/state"), str, "state_dir")
    discrepancy = check.typed(data.get("discrepancy_analysis", True), bool, "discrepancy_analysis")
    data_root = check.typed(data.get("data_root", "data"), str, "data_root")
    download = check.typed(data.get("download", False), bool, "download")
    keep_updated = check.typed(
        data.get("keep_updated_features", False), bool, "keep_updated_features"
    )
    full_data = check.typed(data.get("full_data", False), bool, "full_data")
    where = _DataLocation(data_root, download) if check_data and data_root is not _INVALID else None
    datasets = _read_datasets(check, data.get("datasets", _ABSENT), "datasets", where)
    if where is not None:
        _check_replayed_orders(check, strategies, datasets, where)
    check.raise_if_errors()
    return Grid(
        name=name,
        description=description,
        path=path,
        datasets=datasets,
        backbone=backbone,
        backbone_options=backbone_options,
        image_size=image_size,
        seeds=seeds,
        strategies=strategies,
        pipelines=pipelines,
        baseline_train_method=baseline.train_method,
        finetune=sections["finetune"],
        linear_probe=sections["linear_probe"],
        proxy=sections["proxy"],
        trigger=sections["trigger"],
        costs=costs,
        executor=executor,
        tracking=tracking,
        feature_store=feature_store,
        state_dir=state_dir,
        discrepancy_analysis=discrepancy,
        data_root=data_root,
        download=download,
        keep_updated_features=keep_updated,
        full_data=full_data,
    )


def expand_cells(grid: Grid) -> list[Cell]:
    """The grid's cells in a fixed order.

    For each dataset, for each seed: first the random-baseline cell (pipeline and strategy
    ``random``, train method ``baseline.train_method``), then the full-data cell when
    ``full_data`` is on (pipeline ``full``, strategy ``all``, the baseline's train method; no
    budgets: it labels the whole pool), then one cell per pipeline entry and non-random strategy
    (those the entry is restricted to), in the order of the grid file. Paths (data root,
    checkpoint file, replayed order file) are resolved against the working directory.
    """
    baseline = PipelineSpec(RANDOM, grid.baseline_train_method)
    full = [(PipelineSpec(FULL_DATA, grid.baseline_train_method), StrategySpec(ALL))]
    combos = (
        [(baseline, StrategySpec(RANDOM))]
        + (full if grid.full_data else [])
        + [
            (entry, strategy)
            for entry in grid.pipelines
            for strategy in grid.strategies
            if strategy.name != RANDOM
            and (entry.strategies is None or strategy.label in entry.strategies)
        ]
    )
    cells = []
    for dataset in grid.datasets:
        for seed in grid.seeds:
            for entry, strategy in combos:
                backbone, backbone_options = dataset.backbone or (
                    grid.backbone,
                    grid.backbone_options,
                )
                sections = {
                    name: dataclasses.replace(getattr(grid, name), **dataset.sections.get(name, {}))
                    for name in _DATASET_SECTIONS
                }
                config = CellConfig(
                    dataset=dataset.name,
                    backbone=backbone,
                    backbone_options=_resolve_path_option(backbone_options, "checkpoint"),
                    pipeline=entry.pipeline,
                    strategy=strategy.name,
                    strategy_options=_resolve_path_option(strategy.options, "order"),
                    discrepancy_analysis=grid.discrepancy_analysis,
                    train_method=entry.train_method,
                    seed=seed,
                    budgets=() if entry.pipeline == FULL_DATA else dataset.budgets,
                    image_size=dataset.image_size or grid.image_size,
                    dataset_options=copy.deepcopy(dataset.options),
                    finetune=sections["finetune"],
                    linear_probe=sections["linear_probe"],
                    proxy=sections["proxy"],
                    trigger=dataclasses.replace(grid.trigger, **entry.trigger_overrides),
                    data_root=str(Path(grid.data_root).resolve()),
                    download=grid.download,
                    keep_updated_features=grid.keep_updated_features,
                )
                cells.append(
                    Cell(
                        config=config,
                        run_key=run_key(config),
                        run_name=run_name(config, entry.label, strategy.label),
                        pipeline_label=entry.label,
                        strategy_label=strategy.label,
                    )
                )
    return cells


def _resolve_path_option(options: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of ``options`` with the file named by option ``name`` made absolute (jobs may
    run in another working directory)."""
    resolved = copy.deepcopy(options)
    if isinstance(resolved.get(name), str):
        resolved[name] = str(Path(resolved[name]).resolve())
    return resolved


def strategy_label(name: str, options: dict[str, Any]) -> str:
    """``name``, or ``name[key=value,...]`` (keys sorted, values as JSON) when options are set."""
    if not options:
        return name
    inner = ",".join(f"{k}={_canonical_json(v)}" for k, v in sorted(options.items()))
    return f"{name}[{inner}]"


def run_name(
    config: CellConfig, pipeline_label: str | None = None, label: str | None = None
) -> str:
    """The MLflow run name ``dataset/backbone/pipeline-train_method/strategy/s<seed>``, the
    strategy written as ``label`` when given (else :func:`strategy_label`) and the pipeline as
    ``pipeline_label`` when given (a pipeline entry with trigger overrides)."""
    pipeline = pipeline_label or f"{config.pipeline}-{config.train_method}"
    strategy = label or strategy_label(config.strategy, config.strategy_options)
    return f"{config.dataset}/{config.backbone}/{pipeline}/{strategy}/s{config.seed}"


def scientific_config(config: CellConfig) -> dict[str, Any]:
    """The resolved settings that determine a cell's results, as JSON-ready data.

    Every cell: dataset, dataset_options, backbone, image_size, pipeline, strategy, train_method,
    seed, budgets and finetune; plus linear_probe when the train method is ``lpft`` or ``auto``,
    proxy for ``svpp`` and ``asvp``, trigger for ``asvp`` only; strategy_options when given;
    discrepancy_analysis for ``svpp`` and ``asvp``; backbone_options when given. Sections a cell
    does not use are left out, so that changing them does not change its run key.

    Files are identified by what they are, not where they are: the backbone's checkpoint by its
    file name (its SHA-256 is a tag of the run and part of every feature-store key; hashing
    gigabytes for every ``status`` would be slow), the replayed order and CIFAR-10-LT's
    ``kept_indices_file`` by their content's SHA-256.
    The data root and ``download`` are not part of it.
    """
    resolved: dict[str, Any] = {
        "dataset": config.dataset,
        "dataset_options": _named_by_content(config.dataset_options, "kept_indices_file"),
        "backbone": config.backbone,
        "image_size": config.image_size,
        "pipeline": config.pipeline,
        "strategy": config.strategy,
        "train_method": config.train_method,
        "seed": config.seed,
        "budgets": config.budgets,
        "finetune": dataclasses.asdict(config.finetune),
    }
    if config.train_method in ("lpft", "auto"):
        resolved["linear_probe"] = dataclasses.asdict(config.linear_probe)
    if config.backbone_options:
        resolved["backbone_options"] = _named_by_file_name(config.backbone_options, "checkpoint")
    if config.strategy_options:
        resolved["strategy_options"] = _named_by_content(config.strategy_options, "order")
    if config.pipeline in ("svpp", "asvp"):
        resolved["proxy"] = dataclasses.asdict(config.proxy)
        resolved["discrepancy_analysis"] = config.discrepancy_analysis
    if config.pipeline == "asvp":
        resolved["trigger"] = dataclasses.asdict(config.trigger)
    return _json_ready(resolved)


def _named_by_file_name(options: dict[str, Any], name: str) -> dict[str, Any]:
    if not isinstance(options.get(name), str):
        return options
    return {**options, name: Path(options[name]).name}


def _named_by_content(options: dict[str, Any], name: str) -> dict[str, Any]:
    if not isinstance(options.get(name), str):
        return options
    path = Path(options[name]).resolve()
    if not path.is_file():
        return {**options, name: "missing"}
    status = path.stat()
    return {**options, name: f"sha256:{_sha256(str(path), status.st_mtime_ns, status.st_size)}"}


@functools.lru_cache(maxsize=64)
def _sha256(path: str, modified_ns: int, size: int) -> str:
    """A file's SHA-256, cached per version of the file (path, modification time, size)."""
    return file_sha256(path)


def run_key(config: CellConfig) -> str:
    """The cell's run key: 16 hex digits of the SHA-256 of the canonical JSON of
    ``{"results_version": RESULTS_VERSION, "config": scientific_config(config)}``."""
    payload = {"results_version": RESULTS_VERSION, "config": scientific_config(config)}
    return hashlib.sha256(_canonical_json(payload).encode("utf-8")).hexdigest()[:16]


def resolve_tracking_uri(grid: Grid, cli_value: str | None) -> str | None:
    """The MLflow tracking URI: command line > ``MLFLOW_TRACKING_URI`` (when set and not empty)
    > the grid's ``tracking.uri`` > None (MLflow's default, ``sqlite:///mlflow.db``)."""
    if cli_value is not None:
        return cli_value
    return os.environ.get("MLFLOW_TRACKING_URI") or grid.tracking_uri


# --------------------------------------------------------------------------------------------
# Range checks on dataclass fields (types and defaults come from the dataclasses themselves)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """A check on an already type-checked value, and the words for what it expects."""

    test: Callable[[Any], bool]
    expected: str


def _one_of(choices: Iterable[str]) -> _Rule:
    allowed = sorted(choices)
    return _Rule(lambda value: value in allowed, "one of: " + ", ".join(allowed))


_POSITIVE_INT = _Rule(lambda v: v >= 1, "an integer >= 1")
_NON_NEGATIVE_INT = _Rule(lambda v: v >= 0, "an integer >= 0")
_POSITIVE = _Rule(lambda v: v > 0, "a number > 0")
_NON_NEGATIVE = _Rule(lambda v: v >= 0, "a number >= 0")
_MOMENTUM = _Rule(lambda v: 0 <= v < 1, "a number in [0, 1)")
_INCREASING_COUNTS = _Rule(
    lambda v: all(x >= 1 for x in v) and all(a < b for a, b in zip(v, v[1:], strict=False)),
    "a strictly increasing list of integers >= 1",
)

_FIELD_RULES: dict[type, dict[str, _Rule]] = {
    FineTuneConfig: {
        "epochs": _POSITIVE_INT,
        "batch_size": _POSITIVE_INT,
        "lr_backbone": _POSITIVE,
        "lr_head": _POSITIVE,
        "weight_decay": _NON_NEGATIVE,
        "momentum": _MOMENTUM,
        "milestones": _INCREASING_COUNTS,
        "eval_batch_size": _POSITIVE_INT,
    },
    LinearProbeConfig: {
        "epochs": _POSITIVE_INT,
        "lr": _POSITIVE,
        "batch_size": _POSITIVE_INT,
        "weight_decay": _NON_NEGATIVE,
        "momentum": _MOMENTUM,
    },
    ProxyConfig: {
        "hidden": _POSITIVE_INT,
        "epochs": _POSITIVE_INT,
        "batch_size": _POSITIVE_INT,
        "lr": _POSITIVE,
        "momentum": _MOMENTUM,
        "weight_decay": _NON_NEGATIVE,
        "score_batch_size": _POSITIVE_INT,
    },
    TriggerConfig: {
        "rule": _one_of(TRIGGER_RULES),
        "fraction": _Rule(lambda v: 0 < v <= 1, "a number in (0, 1]"),
        "at_labels": _INCREASING_COUNTS,
        "max_updates": _NON_NEGATIVE_INT,
    },
    Costs: {
        "label_price": _NON_NEGATIVE,
        "reviews_per_label": _POSITIVE_INT,
        "device_hour": _Rule(
            lambda v: all(price >= 0 for price in v.values()), "prices (USD per hour) >= 0"
        ),
    },
    ExecutorSettings: {
        "kind": _one_of(EXECUTOR_KINDS),
        "max_parallel": _POSITIVE_INT,
        "gpus_per_node": _NON_NEGATIVE_INT,
        "cpus_per_task": _POSITIVE_INT,
        "mem_gb": _POSITIVE,
        "time_min": _POSITIVE_INT,
        "array_parallelism": _POSITIVE_INT,
        "max_requeues": _NON_NEGATIVE_INT,
        "signal_delay_s": _NON_NEGATIVE_INT,
    },
    _BaselineSettings: {"train_method": _one_of(TRAIN_METHODS)},
}


def _check_section_consistency(check: _Checker, section: object, key: str) -> None:
    """Checks that involve more than one field of a section, or a field's own validator."""
    if isinstance(section, TriggerConfig):
        try:
            check_ped_settings(section.ped)
        except ValueError as error:
            check.error(f"{key}.ped", str(error))
    if isinstance(section, TriggerConfig) and section.rule == "schedule" and not section.at_labels:
        check.bad(
            f"{key}.at_labels",
            list(section.at_labels),
            "a non-empty list of label counts for rule schedule",
        )


# --------------------------------------------------------------------------------------------
# Readers for the grid's keys
# --------------------------------------------------------------------------------------------


def _read_section(
    check: _Checker, value: Any, key: str, cls: type, *, consistency: bool = True
) -> Any:
    """Build the dataclass ``cls`` from the mapping at ``key``: allowed keys, types and
    defaults are the dataclass's fields; ``_FIELD_RULES`` adds range checks. An absent or null
    section means all defaults."""
    names = [f.name for f in dataclasses.fields(cls)]
    if value is None or value is _ABSENT:
        return cls()
    if not isinstance(value, dict):
        check.bad(key, value, "a mapping with keys: " + ", ".join(sorted(names)))
        return cls()
    check.unknown_keys(value, key, names)
    hints = typing.get_type_hints(cls)
    rules = _FIELD_RULES.get(cls, {})
    values = {}
    for name in names:
        if name not in value:
            continue
        item = check.typed(value[name], hints[name], f"{key}.{name}")
        if item is _INVALID:
            continue
        rule = rules.get(name)
        if rule is not None and item is not None and not rule.test(item):
            check.bad(f"{key}.{name}", value[name], rule.expected)
            continue
        values[name] = item
    section = cls(**values)
    if consistency:
        _check_section_consistency(check, section, key)
    return section


def _read_seeds(check: _Checker, value: Any, key: str) -> list[int]:
    seeds = []
    for i, item in enumerate(check.non_empty_list(value, key, "a non-empty list of integers")):
        seed = check.typed(item, int, f"{key}[{i}]")
        if seed is _INVALID:
            continue
        if seed < 0:
            check.bad(f"{key}[{i}]", seed, "an integer >= 0")
        elif seed in seeds:
            check.bad(f"{key}[{i}]", seed, "distinct seeds (this one is listed twice)")
        else:
            seeds.append(seed)
    return seeds


def _read_strategies(check: _Checker, value: Any, key: str) -> list[StrategySpec]:
    expected = "a non-empty list of strategy names or {name, options} mappings"
    items = check.non_empty_list(value, key, expected)
    strategies: list[StrategySpec] = []
    for i, item in enumerate(items):
        spec = _read_strategy(check, item, f"{key}[{i}]")
        if spec is _INVALID:
            continue
        if any(other.label == spec.label for other in strategies):
            check.bad(f"{key}[{i}]", item, "distinct strategies (this one is listed twice)")
        else:
            strategies.append(spec)
    names = [item if isinstance(item, str) else None for item in items]
    if items and RANDOM not in names:
        check.bad(
            key,
            value,
            f"a list that contains {RANDOM!r}: the random baseline is required, every "
            "sample-saving ratio is measured against its curve",
        )
    return strategies


def _read_backbone(check: _Checker, value: Any, key: str) -> tuple[str, dict[str, Any]]:
    """The backbone: a registered name, or ``{name, options}`` (its checkpoint file, ...).
    Options are checked by the backbone's own rules, without reading any file."""
    if isinstance(value, dict):
        if not check.mapping(value, key, ("name", "options")):
            return _INVALID, {}
        name = check.choice(value.get("name", _ABSENT), f"{key}.name", available_backbones())
        options = _read_options(check, value.get("options"), f"{key}.options", "backbone's")
    else:
        name, options = check.choice(value, key, available_backbones()), {}
    if _INVALID in (name, options):
        return _INVALID, {}
    try:
        check_backbone_options(name, options)
    except ValueError as error:
        check.error(f"{key}.options", str(error))
        return _INVALID, {}
    return name, options


def _read_strategy(check: _Checker, item: Any, key: str) -> StrategySpec:
    """A strategy entry: a registered name, or ``{name, options, label}``."""
    label = None
    if isinstance(item, dict):
        if not check.mapping(item, key, ("name", "options", "label")):
            return _INVALID
        label = check.typed(item.get("label"), str | None, f"{key}.label")
        if label is _INVALID:
            return _INVALID
        name = check.choice(item.get("name", _ABSENT), f"{key}.name", available_strategies())
        options = item.get("options") or {}
        options_key = f"{key}.options"
    else:
        name = check.choice(item, key, available_strategies())
        options, options_key = {}, key
    if name is _INVALID:
        return _INVALID
    if not isinstance(options, dict):
        check.bad(options_key, options, f"a mapping of strategy {name!r}'s options")
        return _INVALID
    if name == RANDOM and options:
        check.bad(options_key, options, "no options for the random baseline")
        return _INVALID
    try:
        checked = check_strategy_options(name, options)
    except ValueError as error:
        check.error(options_key, str(error))
        return _INVALID
    return StrategySpec(name, _json_ready(checked), label)


def _read_pipelines(
    check: _Checker, value: Any, key: str, strategies: list[StrategySpec]
) -> list[PipelineSpec]:
    entries: list[PipelineSpec] = []
    labels = [strategy.label for strategy in strategies]
    items = check.non_empty_list(value, key, "a non-empty list of {pipeline, train_method}")
    for i, item in enumerate(items):
        item_key = f"{key}[{i}]"
        if not check.mapping(item, item_key, ("pipeline", "train_method", "trigger", "strategies")):
            continue
        pipeline = check.choice(
            item.get("pipeline", _ABSENT),
            f"{item_key}.pipeline",
            GRID_PIPELINES,
            note=" (the random baseline is not a pipeline: it is in every grid, its train "
            "method is set under baseline)",
        )
        if pipeline is _INVALID:
            continue
        method = check.choice(
            item.get("train_method", _ABSENT),
            f"{item_key}.train_method",
            GRID_PIPELINES[pipeline],
            note=f" (for pipeline {pipeline!r})",
        )
        overrides = _read_trigger_overrides(check, item, item_key, pipeline)
        restricted = _read_restriction(check, item.get("strategies"), item_key, labels)
        if _INVALID in (method, overrides, restricted):
            continue
        entry = PipelineSpec(pipeline, method, overrides, restricted)
        if any(other.label == entry.label for other in entries):
            check.bad(item_key, item, "distinct pipeline entries (this one is listed twice)")
        else:
            entries.append(entry)
    return entries


def _read_trigger_overrides(check: _Checker, item: dict, item_key: str, pipeline: str) -> Any:
    """The trigger fields a pipeline entry overrides (checked as the ``trigger`` section)."""
    if "trigger" not in item:
        return {}
    key = f"{item_key}.trigger"
    value = item["trigger"]
    if pipeline != "asvp":
        check.bad(key, value, "no trigger for this pipeline (only asvp has a feature update)")
        return _INVALID
    return _read_overrides(check, value, key, TriggerConfig, consistency=False)


def _read_restriction(
    check: _Checker, value: Any, item_key: str, labels: list[str]
) -> tuple[str, ...] | None:
    """The strategy labels a pipeline entry is restricted to (None: all)."""
    if value is None:
        return None
    key = f"{item_key}.strategies"
    chosen = [label for label in labels if label != RANDOM]
    items = check.non_empty_list(value, key, "a non-empty list of the grid's strategy labels")
    picked = [check.choice(label, f"{key}[{i}]", chosen) for i, label in enumerate(items)]
    return _INVALID if not items or _INVALID in picked else tuple(picked)


@dataclass(frozen=True)
class _DataLocation:
    """Where datasets are read at validation: the grid's ``data_root`` and ``download``."""

    root: str
    download: bool


# What a dataset entry may set for itself; the sections are merged over the grid's.
_DATASET_SECTIONS: dict[str, type] = {
    "finetune": FineTuneConfig,
    "linear_probe": LinearProbeConfig,
    "proxy": ProxyConfig,
}
_DATASET_KEYS = ("name", "options", "budgets", "executor", "backbone", "image_size")
_DATASET_KEYS += tuple(_DATASET_SECTIONS)

# The executor settings a dataset may set for its own cells (its SLURM resources).
_DATASET_EXECUTOR_KEYS = (
    "partition", "account", "qos", "constraint", "gpus_per_node", "cpus_per_task", "mem_gb",
    "time_min", "max_requeues", "signal_delay_s", "setup", "sbatch",
)  # fmt: skip


def _read_datasets(
    check: _Checker, value: Any, key: str, where: _DataLocation | None
) -> list[DatasetSpec]:
    """The ``datasets`` list; with ``where``, each dataset is loaded from there (see
    :func:`_check_dataset_loads`)."""
    specs: list[DatasetSpec] = []
    items = check.non_empty_list(value, key, "a non-empty list of {name, options, budgets}")
    for i, item in enumerate(items):
        item_key = f"{key}[{i}]"
        if not check.mapping(item, item_key, _DATASET_KEYS):
            continue
        name = check.choice(item.get("name", _ABSENT), f"{item_key}.name", available_datasets())
        if name is not _INVALID and any(spec.name == name for spec in specs):
            check.bad(f"{item_key}.name", name, "each dataset at most once per grid")
            name = _INVALID
        options = _read_options(check, item.get("options"), f"{item_key}.options", "loader's")
        budgets = _read_budgets(check, item.get("budgets", _ABSENT), f"{item_key}.budgets")
        executor = _read_dataset_executor(check, item.get("executor"), f"{item_key}.executor")
        backbone = (
            _read_backbone(check, item["backbone"], f"{item_key}.backbone")
            if "backbone" in item
            else None
        )
        image_size = _read_image_size(check, item.get("image_size"), f"{item_key}.image_size")
        sections = {
            name: _read_overrides(check, item[name], f"{item_key}.{name}", cls)
            for name, cls in _DATASET_SECTIONS.items()
            if name in item
        }
        if _INVALID in (name, options, executor, image_size, *sections.values()) or (
            backbone is not None and _INVALID in backbone
        ):
            continue
        if where is not None:
            _check_dataset_loads(check, name, options, budgets, item_key, where)
        if budgets is not _INVALID:
            specs.append(
                DatasetSpec(name, options, budgets, executor, backbone, image_size, sections)
            )
    return specs


def _read_image_size(check: _Checker, value: Any, key: str) -> int | None:
    if value is None:
        return None
    size = check.typed(value, int, key)
    if size is not _INVALID and size < 1:
        check.bad(key, value, "an integer >= 1")
        return _INVALID
    return size


def _read_overrides(
    check: _Checker, value: Any, key: str, cls: type, consistency: bool = True
) -> Any:
    """The fields of section ``cls`` that ``value`` sets (checked as the section itself)."""
    errors_before = len(check.errors)
    section = _read_section(check, value, key, cls, consistency=consistency)
    if len(check.errors) > errors_before or not isinstance(value, dict):
        return _INVALID
    return {name: getattr(section, name) for name in value}


def _read_dataset_executor(check: _Checker, value: Any, key: str) -> dict[str, Any]:
    """A dataset's overrides of the grid's executor settings (only the keys it may set)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        expected = "a mapping of executor settings: " + ", ".join(_DATASET_EXECUTOR_KEYS)
        check.bad(key, value, expected)
        return _INVALID
    check.unknown_keys(value, key, _DATASET_EXECUTOR_KEYS)
    errors_before = len(check.errors)
    given = {name: item for name, item in value.items() if name in _DATASET_EXECUTOR_KEYS}
    section = _read_section(check, given, key, ExecutorSettings)
    if len(check.errors) > errors_before:
        return _INVALID
    return {name: getattr(section, name) for name in given}


def _read_options(check: _Checker, value: Any, key: str, whose: str) -> dict[str, Any]:
    """Keyword arguments of a loader or backbone: identifiers mapped to JSON-like values (they
    enter run keys). Returns ``_INVALID`` if any is wrong."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        check.bad(key, value, f"a mapping of the {whose} keyword arguments")
        return _INVALID
    errors_before = len(check.errors)
    for name, item in value.items():
        if not (isinstance(name, str) and name.isidentifier()):
            check.bad(key, name, "option names that are Python identifiers (keyword arguments)")
        elif not _is_json_like(item):
            check.bad(f"{key}.{name}", item, "a string, number, boolean, null, list or mapping")
    return _json_ready(value) if len(check.errors) == errors_before else _INVALID


def _read_budgets(check: _Checker, value: Any, key: str) -> tuple[int, ...]:
    """Cumulative label counts, or ``_INVALID`` if any is wrong."""
    expected = "a non-empty, strictly increasing list of cumulative label counts >= 1"
    errors_before = len(check.errors)
    budgets: list[int] = []
    for i, item in enumerate(check.non_empty_list(value, key, expected)):
        budget = check.typed(item, int, f"{key}[{i}]")
        if budget is _INVALID:
            continue
        if budget < 1:
            check.bad(f"{key}[{i}]", budget, "a label count >= 1")
        elif budgets and budget <= budgets[-1]:
            check.bad(
                f"{key}[{i}]",
                budget,
                f"a count > {budgets[-1]} (budgets are cumulative and strictly increasing)",
            )
        else:
            budgets.append(budget)
    return tuple(budgets) if len(check.errors) == errors_before else _INVALID


def _check_dataset_loads(
    check: _Checker,
    name: str,
    options: dict[str, Any],
    budgets: Any,
    key: str,
    where: _DataLocation,
) -> None:
    """Load the dataset (cached per process): its loader must accept ``options``, its data must
    be there, and the last budget must fit its pool (when ``budgets`` are valid)."""
    try:
        pool_size = _pool_size(name, _canonical_json(options), where)
    except DatasetNotFoundError as exc:
        check.error(key, f"dataset {name!r} not found: {exc}")
        return
    except TypeError as exc:
        check.bad(
            f"{key}.options", options, f"keyword arguments accepted by the {name!r} loader ({exc})"
        )
        return
    except ValueError as exc:
        check.bad(f"{key}.options", options, f"options the {name!r} loader accepts ({exc})")
        return
    except Exception as exc:  # missing files, unreadable data: refuse before anything runs
        check.error(
            key,
            f"cannot load dataset {name!r} with options {options!r}: {type(exc).__name__}: {exc}",
        )
        return
    if budgets is not _INVALID and budgets[-1] > pool_size:
        check.bad(
            f"{key}.budgets[{len(budgets) - 1}]",
            budgets[-1],
            f"a label count <= {pool_size}, the pool size of {name!r} with options {options!r}",
        )


def _check_replayed_orders(
    check: _Checker, strategies: list[StrategySpec], datasets: list[DatasetSpec], where: Any
) -> None:
    """Each ``replay`` strategy's order file must exist, hold distinct pool indices of every
    dataset it is crossed with, and cover the dataset's last budget."""
    for i, strategy in enumerate(strategies):
        if strategy.name != REPLAY:
            continue
        key = f"strategies[{i}].options.order"
        order = strategy.options["order"]
        for dataset in datasets:
            try:
                pool_size = _pool_size(dataset.name, _canonical_json(dataset.options), where)
                indices = replayed_order(order, pool_size)
            except (OSError, ValueError) as error:
                check.error(key, str(error))
                continue
            if len(indices) < dataset.budgets[-1]:
                check.bad(
                    key,
                    order,
                    f"an index list of at least {dataset.budgets[-1]} entries (the last budget "
                    f"of {dataset.name!r}); it has {len(indices)}",
                )


@functools.lru_cache(maxsize=32)
def _pool_size(name: str, options_json: str, where: _DataLocation) -> int:
    split = load_dataset(name, root=where.root, download=where.download, **json.loads(options_json))
    return len(split.pool)


# --------------------------------------------------------------------------------------------
# The checker: collects errors, one method per kind of check
# --------------------------------------------------------------------------------------------


class _Absent:
    def __repr__(self) -> str:
        return "<missing>"


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


_ABSENT: Any = _Absent()  # a key not given (distinct from an explicit null)
_INVALID: Any = _Invalid()  # a value already reported as wrong


class _FromEnv(str):
    """A string produced by ``${...}`` expansion; read as a YAML scalar in non-string fields."""


class _Checker:
    """Collects the errors of one grid file; :meth:`raise_if_errors` raises them together."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[str] = []

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{self.path}: {key}: {message}")

    def bad(self, key: str, value: Any, expected: str) -> None:
        self.error(key, f"got {value!r}; expected {expected}")

    def raise_if_errors(self) -> None:
        if self.errors:
            raise GridError(self.path, self.errors)

    def unknown_keys(self, mapping: dict, key: str, allowed: Iterable[str]) -> None:
        """Report the keys of ``mapping`` that are not in ``allowed`` (missing required keys are
        reported by the reader of each key)."""
        allowed = sorted(allowed)
        for name, value in mapping.items():
            if name in allowed:
                continue
            close = difflib.get_close_matches(str(name), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.error(
                _join(key, name),
                f"unknown key {name!r} (value {value!r}){hint}; allowed keys: "
                + ", ".join(allowed),
            )

    def mapping(self, value: Any, key: str, allowed: Iterable[str]) -> bool:
        """Check that ``value`` is a mapping (reporting unknown keys); True if it is one."""
        allowed = sorted(allowed)
        if not isinstance(value, dict):
            self.bad(key, value, "a mapping with keys: " + ", ".join(allowed))
            return False
        self.unknown_keys(value, key, allowed)
        return True

    def non_empty_list(self, value: Any, key: str, expected: str) -> list:
        if value is _ABSENT:
            self.error(key, f"missing required key; expected {expected}")
            return []
        if not isinstance(value, list) or not value:
            self.bad(key, value, expected)
            return []
        return value

    def choice(self, value: Any, key: str, allowed: Collection[str], note: str = "") -> Any:
        """``value`` if it is one of ``allowed``, else report it and return ``_INVALID``."""
        expected = "one of: " + ", ".join(sorted(allowed)) + note
        if value is _ABSENT:
            self.error(key, f"missing required key; expected {expected}")
            return _INVALID
        if not isinstance(value, str) or value not in allowed:
            self.bad(key, value, expected)
            return _INVALID
        return str(value)

    def typed(self, value: Any, annotation: Any, key: str, expected: str | None = None) -> Any:
        """``value`` converted to ``annotation`` (int, float, bool, str, ``X | None``,
        ``tuple[X, ...]``, ``dict[str, X]``), or report it and return ``_INVALID``."""
        expected = expected or _describe(annotation)
        if value is _ABSENT:
            self.error(key, f"missing required key; expected {expected}")
            return _INVALID
        if isinstance(value, _FromEnv) and not _accepts_str(annotation):
            value = _yaml_scalar(value)
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            (inner,) = [arg for arg in args if arg is not type(None)]
            return self.typed(value, inner, key, expected)
        if origin is tuple:
            if not isinstance(value, list | tuple):
                self.bad(key, value, expected)
                return _INVALID
            items = [self.typed(item, args[0], f"{key}[{i}]") for i, item in enumerate(value)]
            return _INVALID if _INVALID in items else tuple(items)
        if origin is dict:
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                self.bad(key, value, expected)
                return _INVALID
            items = {k: self.typed(v, args[1], _join(key, k)) for k, v in value.items()}
            return _INVALID if _INVALID in items.values() else items
        converted = self._plain(value, annotation)
        if converted is _INVALID:
            self.bad(key, value, expected)
        return converted

    @staticmethod
    def _plain(value: Any, annotation: Any) -> Any:
        """``value`` as the scalar type ``annotation``, or ``_INVALID``."""
        if annotation is bool:
            return value if isinstance(value, bool) else _INVALID
        if annotation is int:
            return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
        if annotation is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return _INVALID
            number = float(value) if abs(value) < 1e308 else math.inf
            return number if math.isfinite(number) else _INVALID
        if annotation is str:
            return str(value) if isinstance(value, str) else _INVALID
        raise TypeError(f"grid schema: unsupported field type {annotation!r} (extend _Checker)")


_DESCRIPTIONS = {
    int: "an integer",
    float: "a finite number",
    bool: "true or false",
    str: "a string",
}


def _describe(annotation: Any) -> str:
    """Words for what a value of type ``annotation`` looks like in YAML."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args if arg is not type(None)) + " or null"
    if origin is tuple:
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
    if origin is dict:
        return f"a mapping of string to {_describe(args[1]).removeprefix('an ').removeprefix('a ')}"
    return _DESCRIPTIONS.get(annotation, str(annotation))


def _accepts_str(annotation: Any) -> bool:
    return annotation is str or str in typing.get_args(annotation)


def _join(key: str, name: Any) -> str:
    return f"{key}.{name}" if key else str(name)


# --------------------------------------------------------------------------------------------
# YAML reading and environment variables
# --------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats (``1e-4``) and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                name = self.construct_object(key_node, deep=deep)
                if name in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"found the key {name!r} twice",
                        key_node.start_mark,
                    )
                seen.add(name)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GridError(path, [f"{path}: cannot read the grid file: {exc}"]) from exc
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise GridError(path, [f"{path}: not valid YAML: {exc}"]) from exc


def _yaml_scalar(text: str) -> Any:
    """``text`` read as an unquoted YAML scalar would be (``15`` -> 15, ``null`` -> None)."""
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text
    return value if value is None or isinstance(value, bool | int | float | str) else text


def _expand_env(check: _Checker, value: Any, key: str) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string value (keys are left alone)."""
    if isinstance(value, dict):
        return {name: _expand_env(check, item, _join(key, name)) for name, item in value.items()}
    if isinstance(value, list):
        return [_expand_env(check, item, f"{key}[{i}]") for i, item in enumerate(value)]
    if not (isinstance(value, str) and "${" in value):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if default is not None and not found:
            return default
        if found is None:
            check.error(
                key,
                f"got {value!r}; environment variable {name} is not set (set it, or give a "
                f"default as ${{{name}:-default}})",
            )
            return ""
        return found

    expanded = _ENV_REFERENCE.sub(substitute, value)
    if "${" in _ENV_REFERENCE.sub("", value):
        check.bad(key, value, "environment references written as ${NAME} or ${NAME:-default}")
    return _FromEnv(expanded)


# --------------------------------------------------------------------------------------------
# JSON helpers for run keys and params
# --------------------------------------------------------------------------------------------


def _is_json_like(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_is_json_like(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_like(v) for k, v in value.items())
    return False


def _json_ready(value: Any) -> Any:
    """A deep copy with tuples as lists and ``str`` subclasses as plain strings."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _flatten(value: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
    for name, item in value.items():
        key = f"{prefix}{name}"
        if isinstance(item, dict) and item:
            _flatten(item, f"{key}.", out)
        else:
            out[key] = item if isinstance(item, str) else json.dumps(item, sort_keys=True)
