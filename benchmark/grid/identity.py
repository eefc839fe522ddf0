"""Run identity: what determines a cell's results, and its run key.

A cell's run key hashes the resolved scientific config (defaults filled in, sections its
pipeline does not use left out) and :data:`RESULTS_VERSION` (``docs/design.md``, "Run identity,
tracking, resume"). Executor settings, resources, paths and the tracking URI are not part of
it. Files are identified by what they are, not where they are. The helpers below make values
JSON-ready and canonical, so that the same config always gives the same key.

The grid's ``compute`` section (torch threads, deterministic algorithms;
:class:`asvp.config.ComputeConfig`) is part of every cell's key: it changes a cell's
arithmetic (a float sum split over another number of threads adds in another order, and one
different pick changes every later round), so two runs under one key must have computed
alike. It used to be decided by the executor (a local cell got ``cores // max_parallel``
threads, a SLURM job its ``cpus_per_task``), so the same key stood for different numbers.
Adding the section changed every run key without a :data:`RESULTS_VERSION` bump: the code's
results did not change, the key's content did.

The fine-tune settings for large backbones (:data:`FINETUNE_SET_ONLY`: ``micro_batch_size``,
``gradient_checkpointing``, ``layer_decay``; :mod:`asvp.finetune_scale`) enter the ``finetune``
section of the key only when set to a value other than their default (off: the paper's
recipe), so every run key made before they existed stays what it was. Set, they are part of it:
each can change a cell's numbers (BatchNorm on micro-batch statistics, running statistics
updated twice under checkpointing, other learning rates).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from asvp.config import CellConfig, FineTuneConfig
from asvp.hashing import file_sha256
from asvp.pipelines import get_pipeline
from asvp.recipe import resolve_transform

# Bump when a code change alters results: it changes every run key, so `run` re-runs every cell
# instead of skipping cells whose finished runs were made by the old code.
# 2: ASVP's re-extracted features are float16, as the stored ones; 3: the official training
# augmentation and the backbones' own input configurations (asvp.recipe)
RESULTS_VERSION: int = 3

FINETUNE_SET_ONLY = ("micro_batch_size", "gradient_checkpointing", "layer_decay")
"""Fields of :class:`asvp.config.FineTuneConfig` in the run key only when not at their default."""


def strategy_label(name: str, options: dict[str, Any]) -> str:
    """``name``, or ``name[key=value,...]`` (keys sorted, values as JSON) when options are set."""
    if not options:
        return name
    inner = ",".join(f"{k}={canonical_json(v)}" for k, v in sorted(options.items()))
    return f"{name}[{inner}]"


def scientific_config(config: CellConfig) -> dict[str, Any]:
    """The resolved settings that determine a cell's results, as JSON-ready data.

    Every cell: dataset, dataset_options, backbone, the resolved image transform
    (:func:`asvp.recipe.resolve_transform`: the backbone's inputs with the grid's overrides and
    the training augmentation), pipeline, strategy, train_method, seed, budgets, finetune and
    compute (``finetune`` without the :data:`FINETUNE_SET_ONLY` fields left at their default);
    strategy_options and backbone_options when given; plus the
    sections its pipeline says it uses (:meth:`asvp.pipelines.Pipeline.run_key_sections`:
    linear_probe when the train method is ``lpft`` or ``auto``, proxy and discrepancy_analysis
    for ``svpp`` and ``asvp``, trigger for ``asvp`` only). Sections a cell does not use are
    left out, so that changing them does not change its run key.

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
        "transform": dataclasses.asdict(resolve_transform(config)),
        "pipeline": config.pipeline,
        "strategy": config.strategy,
        "train_method": config.train_method,
        "seed": config.seed,
        "budgets": config.budgets,
        "finetune": _finetune_section(config.finetune),
        "compute": dataclasses.asdict(config.compute),
    }
    if config.backbone_options:
        resolved["backbone_options"] = _named_by_file_name(config.backbone_options, "checkpoint")
    if config.strategy_options:
        resolved["strategy_options"] = _named_by_content(config.strategy_options, "order")
    resolved.update(get_pipeline(config.pipeline).scientific_sections(config))
    return json_ready(resolved)


def _finetune_section(finetune: FineTuneConfig) -> dict[str, Any]:
    """``finetune`` as data, the :data:`FINETUNE_SET_ONLY` fields only when not default."""
    default = FineTuneConfig()
    section = dataclasses.asdict(finetune)
    for name in FINETUNE_SET_ONLY:
        if section[name] == getattr(default, name):
            del section[name]
    return section


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
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()[:16]


def is_json_like(value: Any) -> bool:
    """Whether ``value`` is JSON data (finite numbers only): what options may hold."""
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(is_json_like(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json_like(v) for k, v in value.items())
    return False


def json_ready(value: Any) -> Any:
    """A deep copy with tuples as lists and ``str`` subclasses as plain strings."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces: the same data, the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def flatten(value: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
    """Write the leaves of ``value`` into ``out`` under dotted keys, values as text."""
    for name, item in value.items():
        key = f"{prefix}{name}"
        if isinstance(item, dict) and item:
            flatten(item, f"{key}.", out)
        else:
            out[key] = item if isinstance(item, str) else json.dumps(item, sort_keys=True)
