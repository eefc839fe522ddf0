"""Command-line overrides of grid values: ``asvp-bench run GRID finetune.epochs=3 seeds=[0,1]``.

As Hydra users expect, each override is ``KEY=VALUE``: ``KEY`` is a dotted path into the grid
file's mapping (``finetune.epochs``, ``executor.kind``; a number indexes a list, as in
``datasets.0.budgets``), ``VALUE`` is read as YAML (a scalar, or a flow list or mapping:
``[20,40]``, ``{epochs: 3}``; ``1e-4`` is a number). The overrides are applied, in order, to
the file's YAML mapping *before* it is validated (:func:`benchmark.grid.load.load_grid`), so
an override is checked exactly as the same edit of the file would be: a key the schema does
not know or a bad value is refused with the same message, prefixed by the override. A key
missing from the file is added (``finetune.epochs=3`` with no ``finetune`` section); a path
through a list index the file does not have, or through a value that is not a mapping, is
refused here. Scientific overrides change the cells' configs, hence their run keys, as the
edited file would.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.grid.source import GridError, yaml_value

__all__ = ["Override", "apply_overrides", "attribute_errors", "parse_override"]

_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_INDEX = re.compile(r"\d+")


@dataclass(frozen=True)
class Override:
    """One ``KEY=VALUE`` override: its text as given, the path of keys (list indices as
    integers) and the parsed value."""

    text: str
    path: tuple[str | int, ...]
    value: Any

    @property
    def checker_key(self) -> str:
        """The key as the grid checker writes it in its messages (``datasets[0].budgets``)."""
        return _key(self.path)


def parse_override(text: str, grid_path: Path) -> Override:
    """``text`` (``KEY=VALUE``) read as an :class:`Override`; :class:`GridError` if it is not
    of that form."""
    key, equals, value = text.partition("=")
    if not equals or not _KEY.fullmatch(key):
        raise GridError(
            grid_path,
            [
                f"{grid_path}: override {text!r}: expected KEY=VALUE with a dotted KEY "
                "(e.g. finetune.epochs=3, seeds=[0,1], datasets.0.budgets=[20,40])"
            ],
        )
    parts = tuple(int(part) if _INDEX.fullmatch(part) else part for part in key.split("."))
    return Override(text, parts, yaml_value(value, f"override {text!r}", grid_path))


def apply_overrides(data: Any, overrides: Sequence[Override], grid_path: Path) -> Any:
    """A copy of the grid file's mapping ``data`` with each override applied, in order;
    :class:`GridError` naming every override whose path cannot be followed."""
    data = copy.deepcopy(data)
    errors = []
    for override in overrides:
        problem = _set(data, override)
        if problem:
            errors.append(f"{grid_path}: override {override.text}: {problem}")
    if errors:
        raise GridError(grid_path, errors)
    return data


def attribute_errors(error: GridError, overrides: Sequence[Override], grid_path: Path) -> GridError:
    """``error`` with each problem at (or inside, or above) an overridden key prefixed by the
    override that set it, so that ``finetune.epoch=3`` is reported as
    ``override finetune.epoch=3: finetune.epoch: unknown key 'epoch' ...``."""
    prefix = f"{grid_path}: "
    lines = []
    for line in error.errors:
        key = line.removeprefix(prefix).split(": ", 1)[0]
        culprit = _culprit(key, overrides)
        if culprit is not None and line.startswith(prefix):
            line = f"{prefix}override {culprit.text}: {line.removeprefix(prefix)}"
        lines.append(line)
    return GridError(error.path, lines)


def _culprit(key: str, overrides: Sequence[Override]) -> Override | None:
    """The last override whose key is ``key``, lies inside it or contains it."""
    for override in reversed(overrides):
        own = override.checker_key
        if _within(key, own) or _within(own, key):
            return override
    return None


def _within(key: str, outer: str) -> bool:
    """Whether ``key`` is ``outer`` or a key inside it."""
    return key == outer or key.startswith((outer + ".", outer + "["))


class _PathError(Exception):
    """An override's path cannot be followed in the grid file (the message says why)."""


def _set(data: Any, override: Override) -> str | None:
    """Set ``override``'s value in ``data``; what went wrong, or None."""
    if not isinstance(data, dict):
        return "the grid file is not a mapping of grid keys"
    node: Any = data
    *parents, last = override.path
    try:
        for depth, part in enumerate(parents):
            child = _child(node, part, override.path[:depth])
            if child is None:  # a section the file leaves out: the override adds it
                child = node[part] = {}
            elif not isinstance(child, dict | list):
                where = _key(override.path[: depth + 1])
                raise _PathError(
                    f"{where} is {child!r}, which holds no keys; override {where} itself "
                    "(e.g. with a {name: ..., options: {...}} mapping)"
                )
            node = child
        _child(node, last, tuple(parents))
    except _PathError as error:
        return str(error)
    node[last] = override.value
    return None


def _child(node: dict | list, part: str | int, above: tuple[str | int, ...]) -> Any:
    """``node[part]`` (None when a mapping lacks it); :class:`_PathError` when ``part``
    cannot index ``node`` (``above``: the path to ``node``)."""
    where = _key(above) or "<top level>"
    if isinstance(node, list):
        if not isinstance(part, int):
            raise _PathError(f"{where} is a list: index it with a number, not {part!r}")
        if part >= len(node):
            raise _PathError(f"{where} has {len(node)} entries: index {part} is out of range")
        return node[part]
    if isinstance(part, int) and part not in node:
        raise _PathError(f"{where} is a mapping, not a list: index {part} does not apply")
    return node.get(part)


def _key(path: tuple[str | int, ...]) -> str:
    """``path`` written as the grid checker writes keys in its messages
    (``datasets[0].budgets``)."""
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
    return key
