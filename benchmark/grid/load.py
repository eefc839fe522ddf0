"""Loading a grid file: its YAML, environment references, every key checked, one error.

:func:`load_grid` reads the file, expands ``${NAME}`` / ``${NAME:-default}`` references,
checks every key against the schema (:mod:`benchmark.grid.schema`) and the registries'
declared options, and returns a :class:`~benchmark.grid.schema.Grid`, or raises one
:class:`~benchmark.grid.source.GridError` listing every problem with its file, key, value and
what is expected. It reads no data (datasets, checkpoints and replayed orders are the
preflight's), so ``asvp-bench validate`` answers at once.

Types are strict: an integer field refuses ``true`` and ``2.5``; a float field accepts an
integer (``lr: 1`` is ``1.0``, so both give the same run key); non-finite numbers are
refused. ``${NAME}`` and ``${NAME:-default}`` in string values are replaced by environment
variables when the file is read (the default is used when the variable is unset or empty, as
in the shell). In a field that is not a string (``epochs: ${EPOCHS:-15}``) the expanded text is
read as a YAML scalar. Inside a flow mapping (``{...}``) quote the reference:
``finetune: {epochs: "${EPOCHS:-15}"}``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asvp.config import (
    ComputeConfig,
    FineTuneConfig,
    LinearProbeConfig,
    ProxyConfig,
    TransformConfig,
    TriggerConfig,
)
from asvp.pipelines import PIPELINE_TRAIN_METHODS
from asvp.trigger import check_ped_settings
from benchmark.executors.settings import ExecutorSettings
from benchmark.grid.checker import ABSENT, INVALID, Checker, expand_env, read_section
from benchmark.grid.entries import (
    SIZE_ONCE,
    read_backbone,
    read_datasets,
    read_pipelines,
    read_seeds,
    read_strategies,
)
from benchmark.grid.overrides import apply_overrides, attribute_errors, parse_override
from benchmark.grid.schema import (
    NAME_PATTERN,
    RANDOM,
    TOP_LEVEL_KEYS,
    BaselineSettings,
    Costs,
    Grid,
    ImageSize,
    TrackingSettings,
)
from benchmark.grid.source import GridError, read_yaml

__all__ = ["check_trigger", "load_grid", "resolve_tracking_uri"]


def load_grid(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Grid:
    """Read and validate the grid file at ``path``, with the command line's ``KEY=VALUE``
    ``overrides`` applied to its mapping first (:mod:`benchmark.grid.overrides`).

    Every problem found is reported at once in one :class:`GridError` (one line each; a
    problem at an overridden key names the override). No data, checkpoint or replayed order
    file is read: those are the preflight's job (:mod:`benchmark.preflight`), and the cell's
    that uses them.
    """
    path = Path(path)
    parsed = [parse_override(text, path) for text in overrides]
    raw = apply_overrides(read_yaml(path), parsed, path)
    try:
        grid = _validated(path, raw)
    except GridError as error:
        raise attribute_errors(error, parsed, path) from None
    return dataclasses.replace(grid, overrides=tuple(overrides))


def _validated(path: Path, raw: Any) -> Grid:
    """The grid of the YAML mapping ``raw`` read from ``path``: every key checked."""
    check = Checker(path)
    data = expand_env(check, raw, "")
    if not isinstance(data, dict):
        check.bad("<top level>", data, "a mapping of grid keys")
        check.raise_if_errors()
    check.unknown_keys(data, "", TOP_LEVEL_KEYS)

    name = check.typed(data.get("name", ABSENT), str, "name")
    if isinstance(name, str) and not NAME_PATTERN.fullmatch(name):
        check.bad(
            "name", name, "letters, digits, '_', '.' and '-' only (an MLflow experiment name)"
        )
    description = check.typed(data.get("description", ""), str, "description")
    backbone, backbone_options = read_backbone(check, data.get("backbone", ABSENT), "backbone")
    image_size = data.get("image_size")
    image_size = None if image_size is None else check.typed(image_size, ImageSize, "image_size")
    seeds = read_seeds(check, data.get("seeds", ABSENT), "seeds")
    strategies = read_strategies(check, data.get("strategies", ABSENT), "strategies")
    pipelines = read_pipelines(check, data.get("pipelines", ABSENT), "pipelines", strategies)
    baseline = read_section(check, data.get("baseline"), "baseline", BaselineSettings)
    baseline_method = check.choice(
        baseline.train_method, "baseline.train_method", PIPELINE_TRAIN_METHODS[RANDOM]
    )
    sections = {
        key: read_section(check, data.get(key), key, cls)
        for key, cls in (
            ("finetune", FineTuneConfig),
            ("linear_probe", LinearProbeConfig),
            ("proxy", ProxyConfig),
            ("trigger", TriggerConfig),
        )
    }
    check_trigger(check, sections["trigger"], "trigger")
    for i, entry in enumerate(pipelines):
        if entry.trigger_overrides:  # checked as merged over the grid's trigger section
            merged = dataclasses.replace(sections["trigger"], **entry.trigger_overrides)
            check_trigger(check, merged, f"pipelines[{i}].trigger")
    compute = read_section(check, data.get("compute"), "compute", ComputeConfig)
    transform = read_section(check, data.get("transform"), "transform", TransformConfig)
    if image_size not in (None, INVALID):
        if transform.size is not None:
            check.bad("image_size", image_size, SIZE_ONCE)
        else:
            transform = dataclasses.replace(transform, size=image_size)
    costs = read_section(check, data.get("costs"), "costs", Costs)
    executor = read_section(check, data.get("executor"), "executor", ExecutorSettings)
    tracking = read_section(check, data.get("tracking"), "tracking", TrackingSettings)
    feature_store = check.typed(data.get("feature_store", ".asvp/features"), str, "feature_store")
    state_dir = check.typed(data.get("state_dir", ".asvp/state"), str, "state_dir")
    discrepancy = check.typed(data.get("discrepancy_analysis", True), bool, "discrepancy_analysis")
    data_root = check.typed(data.get("data_root", "data"), str, "data_root")
    download = check.typed(data.get("download", False), bool, "download")
    keep_updated = check.typed(
        data.get("keep_updated_features", False), bool, "keep_updated_features"
    )
    full_data = check.typed(data.get("full_data", False), bool, "full_data")
    datasets = read_datasets(check, data.get("datasets", ABSENT), "datasets")
    check.raise_if_errors()
    return Grid(
        name=name,
        description=description,
        path=path,
        datasets=datasets,
        backbone=backbone,
        backbone_options=backbone_options,
        transform=transform,
        seeds=seeds,
        strategies=strategies,
        pipelines=pipelines,
        baseline_train_method=baseline_method,
        finetune=sections["finetune"],
        linear_probe=sections["linear_probe"],
        proxy=sections["proxy"],
        trigger=sections["trigger"],
        compute=compute,
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


def check_trigger(check: Checker, section: TriggerConfig, key: str) -> None:
    """Checks of a trigger section beyond its fields' own: the PED settings (declared by
    :func:`asvp.trigger.ped`), and the label counts the ``schedule`` rule needs."""
    check.registry_options(
        lambda _, settings: check_ped_settings(settings), "ped", section.ped, f"{key}.ped"
    )
    if section.rule == "schedule" and not section.at_labels:
        check.bad(
            f"{key}.at_labels",
            list(section.at_labels),
            "a non-empty list of label counts for rule schedule",
        )


def resolve_tracking_uri(grid: Grid, cli_value: str | None) -> str | None:
    """The MLflow tracking URI: command line > ``MLFLOW_TRACKING_URI`` (when set and not empty)
    > the grid's ``tracking.uri`` > None (MLflow's default, ``sqlite:///mlflow.db``)."""
    if cli_value is not None:
        return cli_value
    return os.environ.get("MLFLOW_TRACKING_URI") or grid.tracking_uri
