"""Cells: a grid expanded into units of work, each with its config, run key and run name.

All cells of a dataset entry share the seed-determined initial labelled set and the budget
schedule. A cell's MLflow run name is ``pipeline-train_method/strategy/s<seed> · <dataset>``
(:func:`run_name`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asvp.config import CellConfig
from asvp.pipelines import get_pipeline
from benchmark.grid.identity import (
    RESULTS_VERSION,
    flatten,
    run_key,
    scientific_config,
    strategy_label,
)
from benchmark.grid.schema import (
    ALL,
    DATASET_SECTIONS,
    FULL_DATA,
    RANDOM,
    Grid,
    PipelineSpec,
    StrategySpec,
)

__all__ = ["Cell", "expand_cells", "run_name"]


@dataclass(frozen=True)
class Cell:
    """One unit of work: a pipeline with a strategy on one dataset, backbone and seed."""

    config: CellConfig
    run_key: str
    run_name: str
    pipeline_label: str
    strategy_label: str
    dataset_label: str

    def params(self) -> dict[str, str]:
        """The flat resolved scientific config for MLflow params: dotted keys (``finetune.epochs``),
        values as text (strings as they are, everything else as JSON), plus ``results_version``."""
        flat: dict[str, str] = {"results_version": str(RESULTS_VERSION)}
        flatten(scientific_config(self.config), "", flat)
        return flat


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
                    for name in DATASET_SECTIONS
                }
                whole_pool = get_pipeline(entry.pipeline).labels_whole_pool
                budgets = () if whole_pool else dataset.budgets
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
                    budgets=budgets,
                    transform=sections["transform"],
                    dataset_options=copy.deepcopy(dataset.options),
                    finetune=sections["finetune"],
                    linear_probe=sections["linear_probe"],
                    proxy=sections["proxy"],
                    trigger=dataclasses.replace(grid.trigger, **entry.trigger_overrides),
                    compute=grid.compute,
                    data_root=str(Path(grid.data_root).resolve()),
                    download=grid.download,
                    keep_updated_features=grid.keep_updated_features,
                )
                cells.append(
                    Cell(
                        config=config,
                        run_key=run_key(config),
                        run_name=run_name(config, entry.label, strategy.label, dataset.label),
                        pipeline_label=entry.label,
                        strategy_label=strategy.label,
                        dataset_label=dataset.label,
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


RUN_NAME_SEPARATOR = " · "
"""Between what differs across a dataset's cells and the dataset's label in a run name."""


def run_name(
    config: CellConfig,
    pipeline_label: str | None = None,
    label: str | None = None,
    dataset_label: str | None = None,
) -> str:
    """The MLflow run name ``pipeline-train_method/strategy/s<seed> · <dataset>``.

    It leads with what differs between a grid's cells, so that the MLflow runs table and chart
    legends, which cut long names, still tell them apart; the dataset's label ends it. The
    backbone is left out: a grid (one MLflow experiment) gives each dataset label one
    backbone, so the name stays unique within the grid; the backbone and the dataset's
    registry name are run tags (:func:`benchmark.tracking.open_run`). The strategy is written
    as ``label`` when given (else :func:`strategy_label`), the pipeline as ``pipeline_label``
    when given (a pipeline entry with trigger overrides), the dataset as ``dataset_label``
    when given (the grid's ``label:``; else the dataset's name).
    """
    pipeline = pipeline_label or f"{config.pipeline}-{config.train_method}"
    strategy = label or strategy_label(config.strategy, config.strategy_options)
    dataset = dataset_label or config.dataset
    return f"{pipeline}/{strategy}/s{config.seed}{RUN_NAME_SEPARATOR}{dataset}"
