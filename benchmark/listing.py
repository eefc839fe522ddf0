"""``asvp-bench list``: what a grid file may name, read from the registries themselves.

Strategies and datasets with their options (name, type, range, default: the declarations that
:mod:`asvp.options` reads, so the list cannot drift from what ``validate`` accepts), backbones
with their options and the inputs they were pre-trained with, pipelines with their train
methods, executors with the grid key that picks each. :func:`registry_listing` builds it as
plain data (what ``--json`` prints), :func:`render_listing` as text.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command line imports this module before any command runs: no torch
    from asvp.options import Option

__all__ = ["LISTED_KINDS", "registry_listing", "render_listing"]

LISTED_KINDS = ("strategies", "datasets", "backbones", "pipelines", "executors")
"""What ``asvp-bench list`` can list, in its order."""


def registry_listing(kinds: Sequence[str] = LISTED_KINDS) -> dict[str, list[dict[str, Any]]]:
    """Each of ``kinds`` (see :data:`LISTED_KINDS`): one JSON-ready entry per registered name."""
    readers: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "strategies": _strategies,
        "datasets": _datasets,
        "backbones": _backbones,
        "pipelines": _pipelines,
        "executors": _executors,
    }
    return {kind: readers[kind]() for kind in kinds}


def render_listing(listing: Mapping[str, list[dict[str, Any]]]) -> str:
    """``listing`` as text: per kind a heading, per entry its name, what it is, its details
    and one line per option."""
    lines = []
    for kind, entries in listing.items():
        lines.append(f"{kind} ({len(entries)}):")
        for entry in entries:
            lines.append(f"  {entry['name']}: {entry['description']}")
            lines.extend(f"      {key}: {_text(value)}" for key, value in _details(entry))
            for option in entry.get("options", []):
                lines.append(f"      - {_option_text(option)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _details(entry: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """The entry's fields besides its name, description and options."""
    skipped = ("name", "description", "options")
    return ((key, value) for key, value in entry.items() if key not in skipped)


def _text(value: Any, nested: bool = False) -> str:
    """``value`` on one line: a mapping as ``key=value, ...``, a list as ``a, b`` (inside a
    mapping ``[a, b]``)."""
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={_text(item, nested=True)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        items = ", ".join(_text(item, nested=True) for item in value)
        return f"[{items}]" if nested else items or "none"
    return str(value)


def _option_text(option: Mapping[str, Any]) -> str:
    default = "required" if option["required"] else f"default {option['default']!r}"
    return f"{option['name']}: {option['type']} ({default})"


def _options(declared: Mapping[str, Option]) -> list[dict[str, Any]]:
    """Declared options as data: name, expected value (type and range), default."""
    return [
        {
            "name": option.name,
            "type": option.expected(),
            "required": option.required,
            "default": None if option.required else _plain(option.default),
        }
        for option in declared.values()
    ]


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it (tuples as lists, anything else unknown as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return str(value)


def _summary(owner: Any) -> str:
    """The first sentence of ``owner``'s docstring (its first paragraph, on one line)."""
    paragraph = (inspect.getdoc(owner) or "").split("\n\n", 1)[0]
    return " ".join(paragraph.split()).replace("``", "")


def _strategies() -> list[dict[str, Any]]:
    from asvp.strategies.registry import (
        available_strategies,
        declared_strategy_options,
        get_strategy,
    )

    return [
        {
            "name": name,
            "description": _summary(get_strategy(name)),
            "options": _options(declared_strategy_options(name)),
        }
        for name in available_strategies()
    ]


def _datasets() -> list[dict[str, Any]]:
    from asvp.data import available_datasets
    from asvp.data.base import registered_dataset

    def entry(name: str) -> dict[str, Any]:
        registered = registered_dataset(name)
        return {
            "name": name,
            "description": _summary(registered.loader),
            "reads_files": registered.needs_root,
            "options": _options(registered.options),
        }

    return [entry(name) for name in available_datasets()]


def _backbones() -> list[dict[str, Any]]:
    from asvp.models.backbones import available_backbones
    from asvp.models.registry import backbone_remedy, describe_rule, registered_backbone

    def entry(name: str) -> dict[str, Any]:
        registered = registered_backbone(name)
        declared = registered.input_config
        return {
            "name": name,
            "description": _summary(registered.factory),
            "input": describe_rule(declared) if callable(declared) else _plain(vars(declared)),
            "dataset_statistics": registered.dataset_statistics,
            "checkpoint": backbone_remedy(name) or "embedded (no file needed)",
            "options": _options(registered.options),
        }

    return [entry(name) for name in available_backbones()]


def _pipelines() -> list[dict[str, Any]]:
    from asvp.pipelines import available_pipelines, get_pipeline

    return [
        {
            "name": name,
            "description": get_pipeline(name).description,
            "train_methods": list(get_pipeline(name).train_methods),
            "in_grid": get_pipeline(name).in_grid,
        }
        for name in available_pipelines()
    ]


def _executors() -> list[dict[str, Any]]:
    from benchmark.executors.registry import EXECUTOR_CLASSES

    return [
        {"name": kind, "description": _summary(cls), "grid_key": f"executor: {{kind: {kind}}}"}
        for kind, cls in EXECUTOR_CLASSES.items()
    ]
