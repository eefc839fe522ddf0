"""Readers of a grid file's entries: seeds, strategies, the backbone, pipelines, datasets.

Each reader checks one key of the grid file and reports every problem to the
:class:`~benchmark.grid.checker.Checker`; a wrong entry becomes :data:`INVALID` and is left out.
Options of registered things (a strategy's, a dataset loader's, a backbone's) are checked
against their declarations by the registry's own checker, which reads no file.

- A pipeline entry may override ``trigger`` fields (asvp only; merged over the grid's
  ``trigger`` section) and restrict ``strategies`` to some of the grid's strategy labels, so
  one grid can compare ASVP rules without crossing each with every strategy. Its label
  (``asvp-auto`` or ``asvp-auto[rule=ped]``, the overridden fields) names it in run names and
  tables.
- A dataset entry's ``label:`` (default: its name) names it in run names, tables and figure
  files; labels are unique in a grid, so one registry dataset (``imagefolder``) may appear
  under several labels. The label is not in the run key.
- Strategy options enter the run key only when given; dataset options are hashed as written
  (loader defaults are not filled in), so ``options: {}`` and the loader's default written out
  give different keys. Dataset options are untyped in YAML terms, so a ``${...}`` expansion in
  one stays a string.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from asvp.config import TriggerConfig
from asvp.data import available_datasets, check_dataset_options
from asvp.models.backbones import available_backbones, check_backbone_options
from asvp.pipelines import get_pipeline
from asvp.strategies import available_strategies, check_strategy_options
from benchmark.executors.settings import ExecutorSettings
from benchmark.grid.checker import (
    ABSENT,
    INVALID,
    Checker,
    read_overrides,
    read_section,
)
from benchmark.grid.identity import is_json_like, json_ready
from benchmark.grid.schema import (
    DATASET_EXECUTOR_KEYS,
    DATASET_KEYS,
    DATASET_SECTIONS,
    GRID_PIPELINES,
    LABEL_PATTERN,
    RANDOM,
    DatasetSpec,
    ImageSize,
    PipelineSpec,
    StrategySpec,
)


def read_seeds(check: Checker, value: Any, key: str) -> list[int]:
    """The ``seeds`` list: distinct integers >= 0."""
    seeds = []
    for i, item in enumerate(check.non_empty_list(value, key, "a non-empty list of integers")):
        seed = check.typed(item, int, f"{key}[{i}]")
        if seed is INVALID:
            continue
        if seed < 0:
            check.bad(f"{key}[{i}]", seed, "an integer >= 0")
        elif seed in seeds:
            check.bad(f"{key}[{i}]", seed, "distinct seeds (this one is listed twice)")
        else:
            seeds.append(seed)
    return seeds


def read_strategies(check: Checker, value: Any, key: str) -> list[StrategySpec]:
    """The ``strategies`` list: distinct labels, the random baseline among them."""
    expected = "a non-empty list of strategy names or {name, options} mappings"
    items = check.non_empty_list(value, key, expected)
    strategies: list[StrategySpec] = []
    for i, item in enumerate(items):
        spec = _read_strategy(check, item, f"{key}[{i}]")
        if spec is INVALID:
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


def _read_strategy(check: Checker, item: Any, key: str) -> StrategySpec:
    """A strategy entry: a registered name, or ``{name, options, label}``."""
    label = None
    if isinstance(item, dict):
        if not check.mapping(item, key, ("name", "options", "label")):
            return INVALID
        label = check.typed(item.get("label"), str | None, f"{key}.label")
        if label is INVALID:
            return INVALID
        name = check.choice(item.get("name", ABSENT), f"{key}.name", available_strategies())
        options = item.get("options") or {}
        options_key = f"{key}.options"
    else:
        name = check.choice(item, key, available_strategies())
        options, options_key = {}, key
    if name is INVALID:
        return INVALID
    if not isinstance(options, dict):
        check.bad(options_key, options, f"a mapping of strategy {name!r}'s options")
        return INVALID
    if name == RANDOM and options:
        check.bad(options_key, options, "no options for the random baseline")
        return INVALID
    if not check.registry_options(check_strategy_options, name, options, options_key):
        return INVALID
    return StrategySpec(name, json_ready(options), label)


def read_backbone(check: Checker, value: Any, key: str) -> tuple[str, dict[str, Any]]:
    """The backbone: a registered name, or ``{name, options}`` (its checkpoint file, ...).
    Options are checked by the backbone's own rules, without reading any file."""
    if isinstance(value, dict):
        if not check.mapping(value, key, ("name", "options")):
            return INVALID, {}
        name = check.choice(value.get("name", ABSENT), f"{key}.name", available_backbones())
        options = _read_options(check, value.get("options"), f"{key}.options", "backbone's")
    else:
        name, options = check.choice(value, key, available_backbones()), {}
    if INVALID in (name, options):
        return INVALID, {}
    if not check.registry_options(check_backbone_options, name, options, f"{key}.options"):
        return INVALID, {}
    return name, options


def read_pipelines(
    check: Checker, value: Any, key: str, strategies: list[StrategySpec]
) -> list[PipelineSpec]:
    """The ``pipelines`` list: distinct entries, each a grid pipeline and a train method it
    accepts."""
    entries: list[PipelineSpec] = []
    labels = [strategy.label for strategy in strategies]
    items = check.non_empty_list(value, key, "a non-empty list of {pipeline, train_method}")
    for i, item in enumerate(items):
        item_key = f"{key}[{i}]"
        if not check.mapping(item, item_key, ("pipeline", "train_method", "trigger", "strategies")):
            continue
        pipeline = check.choice(
            item.get("pipeline", ABSENT),
            f"{item_key}.pipeline",
            GRID_PIPELINES,
            note=" (the random baseline is not a pipeline: it is in every grid, its train "
            "method is set under baseline)",
        )
        if pipeline is INVALID:
            continue
        method = check.choice(
            item.get("train_method", ABSENT),
            f"{item_key}.train_method",
            GRID_PIPELINES[pipeline],
            note=f" (for pipeline {pipeline!r})",
        )
        overrides = _read_trigger_overrides(check, item, item_key, pipeline)
        restricted = _read_restriction(check, item.get("strategies"), item_key, labels)
        if INVALID in (method, overrides, restricted):
            continue
        entry = PipelineSpec(pipeline, method, overrides, restricted)
        if any(other.label == entry.label for other in entries):
            check.bad(item_key, item, "distinct pipeline entries (this one is listed twice)")
        else:
            entries.append(entry)
    return entries


def _read_trigger_overrides(check: Checker, item: dict, item_key: str, pipeline: str) -> Any:
    """The trigger fields a pipeline entry overrides (checked as the ``trigger`` section)."""
    if "trigger" not in item:
        return {}
    key = f"{item_key}.trigger"
    value = item["trigger"]
    if not get_pipeline(pipeline).updates_features:
        check.bad(key, value, "no trigger for this pipeline (only asvp has a feature update)")
        return INVALID
    return read_overrides(check, value, key, TriggerConfig)


def _read_restriction(
    check: Checker, value: Any, item_key: str, labels: list[str]
) -> tuple[str, ...] | None:
    """The strategy labels a pipeline entry is restricted to (None: all)."""
    if value is None:
        return None
    key = f"{item_key}.strategies"
    chosen = [label for label in labels if label != RANDOM]
    items = check.non_empty_list(value, key, "a non-empty list of the grid's strategy labels")
    picked = [check.choice(label, f"{key}[{i}]", chosen) for i, label in enumerate(items)]
    return INVALID if not items or INVALID in picked else tuple(picked)


def read_datasets(check: Checker, value: Any, key: str) -> list[DatasetSpec]:
    """The ``datasets`` list: each label at most once (a label defaults to the dataset's
    name), and no two entries that would make the same cells. A dataset's options are checked
    against its loader's declared options; its data is not read (the preflight does that)."""
    specs: list[DatasetSpec] = []
    items = check.non_empty_list(value, key, "a non-empty list of {name, options, budgets}")
    for i, item in enumerate(items):
        item_key = f"{key}[{i}]"
        spec = _read_dataset(check, item, item_key)
        if spec is INVALID:
            continue
        label_key = f"{item_key}.{'name' if spec.given_label is None else 'label'}"
        same_label = [j for j, other in enumerate(specs) if other.label == spec.label]
        same_cells = [j for j, other in enumerate(specs) if _unlabelled(other) == _unlabelled(spec)]
        if same_label:
            check.bad(
                label_key,
                spec.label,
                f"each dataset label at most once per grid ({spec.label!r} is already the label "
                f"of {key}[{same_label[0]}]; a label defaults to the dataset's name): give this "
                "entry its own label (key label:; letters, digits, '_', '.', '-')",
            )
        elif same_cells:
            check.bad(
                label_key,
                spec.label,
                f"a dataset entry that differs from {key}[{same_cells[0]}] in more than its "
                "label: the label is not part of the run key, so both would run the same cells; "
                "drop one, or change its options, budgets or settings",
            )
        else:
            specs.append(spec)
    return specs


def _unlabelled(spec: DatasetSpec) -> DatasetSpec:
    """What makes a dataset entry's cells: the entry without its label and executor."""
    return dataclasses.replace(spec, given_label=None, executor={})


def _read_dataset(check: Checker, item: Any, item_key: str) -> DatasetSpec:
    """One dataset entry, or ``INVALID`` (its problems reported)."""
    if not check.mapping(item, item_key, DATASET_KEYS):
        return INVALID
    name = check.choice(item.get("name", ABSENT), f"{item_key}.name", available_datasets())
    label = _read_label(check, item.get("label"), f"{item_key}.label")
    options = _read_options(check, item.get("options"), f"{item_key}.options", "loader's")
    budgets = _read_budgets(check, item.get("budgets", ABSENT), f"{item_key}.budgets")
    executor = _read_dataset_executor(check, item.get("executor"), f"{item_key}.executor")
    backbone = (
        read_backbone(check, item["backbone"], f"{item_key}.backbone")
        if "backbone" in item
        else None
    )
    image_size = _read_image_size(check, item.get("image_size"), f"{item_key}.image_size")
    sections = {
        name: read_overrides(check, item[name], f"{item_key}.{name}", cls)
        for name, cls in DATASET_SECTIONS.items()
        if name in item
    }
    if image_size not in (None, INVALID) and sections.get("transform") is not INVALID:
        transform = sections.setdefault("transform", {})
        if "size" in transform:
            check.bad(f"{item_key}.image_size", image_size, SIZE_ONCE)
            image_size = INVALID
        else:
            transform["size"] = image_size
    if INVALID in (name, label, options, executor, image_size, *sections.values()) or (
        backbone is not None and INVALID in backbone
    ):
        return INVALID
    if not check.registry_options(check_dataset_options, name, options, f"{item_key}.options"):
        return INVALID
    if budgets is INVALID:
        return INVALID
    return DatasetSpec(name, options, budgets, executor, backbone, sections, label)


def _read_label(check: Checker, value: Any, key: str) -> str | None:
    """A dataset's ``label:`` (None: its name), a file-name token, or ``INVALID``."""
    label = check.typed(value, str | None, key)
    if isinstance(label, str) and not LABEL_PATTERN.fullmatch(label):
        check.bad(
            key,
            label,
            "a label made of letters, digits, '_', '.' and '-', starting with a letter or "
            "digit (figure files are named by it)",
        )
        return INVALID
    return label


def _read_budgets(check: Checker, value: Any, key: str) -> tuple[int, ...]:
    """Cumulative label counts, or ``INVALID`` if any is wrong."""
    expected = "a non-empty, strictly increasing list of cumulative label counts >= 1"
    errors_before = len(check.errors)
    budgets: list[int] = []
    for i, item in enumerate(check.non_empty_list(value, key, expected)):
        budget = check.typed(item, int, f"{key}[{i}]")
        if budget is INVALID:
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
    return tuple(budgets) if len(check.errors) == errors_before else INVALID


SIZE_ONCE = "the input size given once: image_size is short for transform.size, not both"


def _read_image_size(check: Checker, value: Any, key: str) -> int | None:
    return None if value is None else check.typed(value, ImageSize, key)


def _read_dataset_executor(check: Checker, value: Any, key: str) -> dict[str, Any]:
    """A dataset's overrides of the grid's executor settings (only the keys it may set)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        expected = "a mapping of executor settings: " + ", ".join(DATASET_EXECUTOR_KEYS)
        check.bad(key, value, expected)
        return INVALID
    check.unknown_keys(value, key, DATASET_EXECUTOR_KEYS)
    errors_before = len(check.errors)
    given = {name: item for name, item in value.items() if name in DATASET_EXECUTOR_KEYS}
    section = read_section(check, given, key, ExecutorSettings)
    if len(check.errors) > errors_before:
        return INVALID
    return {name: getattr(section, name) for name in given}


def _read_options(check: Checker, value: Any, key: str, whose: str) -> dict[str, Any]:
    """Keyword arguments of a loader or backbone: identifiers mapped to JSON-like values (they
    enter run keys). Returns ``INVALID`` if any is wrong."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        check.bad(key, value, f"a mapping of the {whose} keyword arguments")
        return INVALID
    errors_before = len(check.errors)
    for name, item in value.items():
        if not (isinstance(name, str) and name.isidentifier()):
            check.bad(key, name, "option names that are Python identifiers (keyword arguments)")
        elif not is_json_like(item):
            check.bad(f"{key}.{name}", item, "a string, number, boolean, null, list or mapping")
    return json_ready(value) if len(check.errors) == errors_before else INVALID
