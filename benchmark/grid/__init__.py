"""Grid files: schema, loading, cells and run identity.

A grid file (``experiments/*.yaml``) names datasets with their budget schedules, one backbone,
seeds, strategies and pipelines, plus the method's settings. The package, one job a module:

- :mod:`~benchmark.grid.schema`: the keys, their types, ranges and defaults (dataclasses), and
  the example grid that shows every key;
- :mod:`~benchmark.grid.source`: reading the YAML, :class:`GridError`;
- :mod:`~benchmark.grid.checker`: collecting every problem of a file, sections, ``${NAME}``;
- :mod:`~benchmark.grid.entries`: the readers of datasets, strategies, pipelines, backbone;
- :mod:`~benchmark.grid.load`: :func:`load_grid` (structure and types only: no data is read);
- :mod:`~benchmark.grid.cells`: :func:`expand_cells` and run names;
- :mod:`~benchmark.grid.identity`: run keys and :data:`RESULTS_VERSION`.

Data flows one way: grid file -> :class:`Grid` -> :class:`Cell` s -> pipelines.
"""

from benchmark.grid.cells import Cell, expand_cells, run_name
from benchmark.grid.identity import RESULTS_VERSION, run_key, scientific_config, strategy_label
from benchmark.grid.load import load_grid, resolve_tracking_uri
from benchmark.grid.schema import (
    ALL,
    EXECUTOR_KINDS,
    FULL_DATA,
    GRID_PIPELINES,
    RANDOM,
    Costs,
    DatasetSpec,
    ExecutorSettings,
    Grid,
    PipelineSpec,
    StrategySpec,
    TrackingSettings,
)
from benchmark.grid.source import GridError

__all__ = [
    "ALL",
    "EXECUTOR_KINDS",
    "FULL_DATA",
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
    "StrategySpec",
    "TrackingSettings",
    "expand_cells",
    "load_grid",
    "resolve_tracking_uri",
    "run_key",
    "run_name",
    "scientific_config",
    "strategy_label",
]
