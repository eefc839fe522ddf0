"""The grid file's schema: its keys, their types, ranges and defaults, as dataclasses.

A grid file (``experiments/*.yaml``) names datasets with their budget schedules, one backbone,
seeds, strategies and pipelines, plus the method's settings. :func:`load_grid` reads and
validates it into a :class:`Grid` (:mod:`benchmark.grid.load`); :func:`expand_cells` turns a
grid into cells (:mod:`benchmark.grid.cells`), each with its :class:`asvp.config.CellConfig`,
run key (:mod:`benchmark.grid.identity`) and MLflow run name. The example grid below shows
every key::

    name: demo                       # required; MLflow experiment name; [A-Za-z0-9_.-]+
    description: "..."               # optional string
    datasets:                        # required, non-empty; each label at most once
      - name: mnist5k                # one of asvp.data.available_datasets()
        label: digits                # optional; what run names, tables and figure files
                                     # call it (default: its name); [A-Za-z0-9_.-]+
        options: {test_size: 500}    # optional; keyword arguments of the dataset's loader
        budgets: [20, 40, 60]        # cumulative label counts, strictly increasing, <= pool size
        executor: {mem_gb: 32}       # optional; this dataset's own executor (SLURM) settings
        backbone: {name: resnet18_cifar_simsiam, options: {checkpoint: FILE}}  # optional
        image_size: 32               # optional; short for transform: {size: 32}
        finetune: {epochs: 130}      # optional; fields of finetune, linear_probe, proxy and
                                     # transform set for this dataset (merged over the grid's)
    backbone: efficientnet_lite0     # one of asvp.models.backbones.available_backbones(), or
                                     # {name: resnet50_byol_eman, options: {checkpoint: FILE}}
    image_size: 48                   # optional; short for transform: {size: 48}
    transform:                       # TransformConfig; the backbone's own inputs by default
      augment: official              # official: the official code's training augmentation for
                                     # each dataset x backbone (asvp.recipe); none: no augment
      size: 48                       # overrides of the backbone's input size, interpolation
      interpolation: bilinear        # (bilinear | bicubic), crop_pct (test crop fraction),
                                     # mean and std (3 numbers each)
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
    compute: {threads: 1, deterministic: false}  # ComputeConfig: torch threads of every cell
                                     # (whatever the executor), deterministic algorithms;
                                     # in every run key; a dataset may not override it
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
      cpus_per_task: 8               # slurm: --cpus-per-task (>= compute.threads)
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

Decisions written down here (``docs/design.md`` leaves them open):

- The schema of ``finetune``, ``linear_probe``, ``proxy``, ``trigger`` and ``compute`` is the
  dataclasses of :mod:`asvp.config` (field names, annotated types with their ranges,
  defaults), that of ``costs``, ``baseline`` and ``tracking`` the dataclasses below, and that
  of ``executor`` :class:`benchmark.executors.settings.ExecutorSettings`, so no key, range or
  default is written twice (:mod:`asvp.options` reads them).
- ``compute`` is grid-wide: a dataset may not override it. It is how every cell computes
  (its threads and determinism), part of every run key, and not a resource: the executor
  decides how many cells run at once, never how a cell computes.
- A dataset label may appear once per grid and a pipeline label once, so that run names are
  unique within a grid. A dataset's label is its ``label:``, else its name: one registry
  dataset (``imagefolder``) may appear several times, each entry with its own label (two own
  datasets compared in one grid). The label is a name, not part of the run key (renaming a
  dataset keeps its runs; a grid without ``label:`` keeps its keys), so two entries that
  differ only in their labels (the same cells twice) are refused. A strategy may appear more
  than once with different options: its label (``badge`` or ``badge[candidates=5000]``) names
  it in run names and tables.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from asvp.config import (
    ComputeConfig,
    FineTuneConfig,
    LinearProbeConfig,
    ProxyConfig,
    TransformConfig,
    TriggerConfig,
)
from asvp.options import Range
from asvp.pipelines import available_pipelines, get_pipeline
from benchmark.executors.settings import EXECUTOR_KINDS, ExecutorSettings
from benchmark.grid.identity import strategy_label

__all__ = [
    "ALL",
    "EXECUTOR_KINDS",
    "FULL_DATA",
    "GRID_PIPELINES",
    "RANDOM",
    "BaselineSettings",
    "Costs",
    "DatasetSpec",
    "ExecutorSettings",
    "Grid",
    "PipelineSpec",
    "StrategySpec",
    "TrackingSettings",
]

RANDOM = "random"
"""The random baseline's strategy name, and its pipeline name in cells and run names."""

FULL_DATA = "full"
"""The full-data cell's pipeline name (``full_data: true``); its strategy is :data:`ALL`."""

ALL = "all"
"""The full-data cell's strategy label: every pool image is labelled at once."""

GRID_PIPELINES: dict[str, tuple[str, ...]] = {
    name: get_pipeline(name).train_methods
    for name in available_pipelines()
    if get_pipeline(name).in_grid
}
"""The pipelines a grid's ``pipelines`` list may name, with the train methods each accepts."""

# fmt: off
TOP_LEVEL_KEYS = (
    "name", "description", "datasets", "backbone", "image_size", "transform", "seeds",
    "strategies", "pipelines", "baseline", "finetune", "linear_probe", "proxy", "trigger",
    "compute", "costs", "executor", "tracking", "feature_store", "state_dir",
    "discrepancy_analysis", "data_root", "download", "keep_updated_features", "full_data",
)
# fmt: on

ImageSize = Annotated[int, Range(ge=1)]
"""An input size in pixels (``image_size``, short for ``transform.size``, for the grid or one
dataset)."""

#: What a grid name may hold (it is an MLflow experiment name).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")

#: What a dataset's ``label:`` may hold: a file-name token (figure files are named by it).
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Costs:
    """Prices for the total-cost tables (``docs/design.md``, "Metrics and costs"); printed with
    them.

    ``label_price`` is USD per label per review, ``device_hour`` maps a device kind (as tagged on
    runs, e.g. ``cpu``, ``gpu``) to USD per device-hour.
    """

    label_price: Annotated[float, Range(ge=0)] = 0.0
    reviews_per_label: Annotated[int, Range(ge=1)] = 1
    device_hour: dict[str, Annotated[float, Range(ge=0)]] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class BaselineSettings:
    """The random baseline's evaluation fine-tune (``baseline:``): its train method."""

    train_method: str = "ft"


@dataclass(frozen=True)
class TrackingSettings:
    """Where runs are recorded. ``allow_sqlite``: let the slurm executor use a SQLite URI
    (safe only when every job runs on the machine holding the file)."""

    uri: str | None = None
    allow_sqlite: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a grid: registry name, the label it goes by (:attr:`label`), loader
    options and cumulative label budgets, and what it sets for itself over the grid's values:
    ``backbone`` (name and options), the fields of ``finetune``, ``linear_probe``, ``proxy``
    and ``transform`` it overrides (``sections``; its ``image_size`` is ``transform.size``) and
    its executor settings (its SLURM resources)."""

    name: str
    options: dict[str, Any]
    budgets: tuple[int, ...]
    executor: dict[str, Any] = field(default_factory=dict)
    backbone: tuple[str, dict[str, Any]] | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    given_label: str | None = None  # the grid's ``label:`` (several own datasets in one grid)

    @property
    def label(self) -> str:
        """What tables, figures and run names call this dataset: its ``label:``, else its
        registry name."""
        return self.given_label or self.name


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
    transform: TransformConfig
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
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    overrides: tuple[str, ...] = ()  # the command line's KEY=VALUE, as given (a run tag)

    @property
    def tracking_uri(self) -> str | None:
        """The grid's ``tracking.uri`` (None: MLflow's default)."""
        return self.tracking.uri

    def backbones(self) -> list[tuple[str, dict[str, Any]]]:
        """Every backbone the grid's cells use (name and options), the grid's own first."""
        used = [(self.backbone, self.backbone_options)]
        for spec in self.datasets:
            if spec.backbone is not None and spec.backbone not in used:
                used.append(spec.backbone)
        return used

    def executor_for(self, dataset: str, settings: ExecutorSettings) -> ExecutorSettings:
        """``settings`` with the own executor overrides (its SLURM resources) of the dataset
        labelled ``dataset`` (:attr:`DatasetSpec.label`, a cell's ``dataset_label``; the
        name of a dataset without ``label:``). KeyError naming the labels if none has it."""
        for spec in self.datasets:
            if spec.label == dataset:
                return dataclasses.replace(settings, **spec.executor)
        labels = ", ".join(spec.label for spec in self.datasets)
        raise KeyError(f"grid {self.name!r} has no dataset labelled {dataset!r}; labels: {labels}")

    @property
    def cell_state_dir(self) -> Path:
        """This grid's round checkpoints and logs: ``<state_dir>/<name>``."""
        return Path(self.state_dir) / self.name


# What a dataset entry may set for itself; the sections are merged over the grid's.
DATASET_SECTIONS: dict[str, type] = {
    "finetune": FineTuneConfig,
    "linear_probe": LinearProbeConfig,
    "proxy": ProxyConfig,
    "transform": TransformConfig,
}
DATASET_KEYS = ("name", "label", "options", "budgets", "executor", "backbone", "image_size")
DATASET_KEYS += tuple(DATASET_SECTIONS)

# The executor settings a dataset may set for its own cells (its SLURM resources).
DATASET_EXECUTOR_KEYS = (
    "partition", "account", "qos", "constraint", "gpus_per_node", "cpus_per_task", "mem_gb",
    "time_min", "max_requeues", "signal_delay_s", "setup", "sbatch",
)  # fmt: skip
