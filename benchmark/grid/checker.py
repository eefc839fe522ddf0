"""The grid checker: collects every problem of one grid file, then raises them together.

Each problem names the file, the dotted key, the offending value and what is expected. Types
and ranges come from the declarations read by :mod:`asvp.options` (the dataclasses of
:mod:`asvp.config`, :mod:`benchmark.grid.schema` and the registries' keyword options), so no
rule is written here twice. Sections (``finetune``, ``costs``, ...) are read by
:func:`read_section`; ``${NAME}`` references by :func:`expand_env`.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from asvp.options import (
    Option,
    OptionError,
    OptionsError,
    check_value,
    declared_options,
    describe,
)
from benchmark.grid.source import FromEnv, GridError, yaml_scalar

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Absent:
    def __repr__(self) -> str:
        return "<missing>"


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


ABSENT: Any = _Absent()
"""A key not given (distinct from an explicit null)."""
INVALID: Any = _Invalid()
"""A value already reported as wrong."""


class Checker:
    """Collects the errors of one grid file; :meth:`raise_if_errors` raises them together."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[str] = []

    def error(self, key: str, message: str) -> None:
        """Record one problem at ``key`` (the file is prefixed)."""
        self.errors.append(f"{self.path}: {key}: {message}")

    def bad(self, key: str, value: Any, expected: str) -> None:
        """Record that ``value`` at ``key`` is not what is ``expected``."""
        self.error(key, f"got {value!r}; expected {expected}")

    def raise_if_errors(self) -> None:
        """Raise every recorded problem together, one :class:`GridError`."""
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
                join_key(key, name),
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
        """``value`` if it is a non-empty list, else report it and return ``[]``."""
        if value is ABSENT:
            self.error(key, f"missing required key; expected {expected}")
            return []
        if not isinstance(value, list) or not value:
            self.bad(key, value, expected)
            return []
        return value

    def choice(self, value: Any, key: str, allowed: Collection[str], note: str = "") -> Any:
        """``value`` if it is one of ``allowed``, else report it and return ``INVALID``."""
        expected = "one of: " + ", ".join(sorted(allowed)) + note
        if value is ABSENT:
            self.error(key, f"missing required key; expected {expected}")
            return INVALID
        if not isinstance(value, str) or value not in allowed:
            self.bad(key, value, expected)
            return INVALID
        return str(value)

    def typed(self, value: Any, annotation: Any, key: str, expected: str | None = None) -> Any:
        """``value`` checked against ``annotation`` by :func:`asvp.options.check_value` (types
        and, for ``Annotated`` items, ranges), or report it and return :data:`INVALID`."""
        if value is ABSENT:
            self.error(key, f"missing required key; expected {expected or describe(annotation)}")
            return INVALID
        try:
            return check_value(_from_env(value, annotation), annotation, key, expected)
        except OptionError as error:
            self.bad(error.key, error.value, error.expected)
            return INVALID

    def registry_options(
        self, checker: Callable[[str, Any], Any], name: str, options: Any, key: str
    ) -> bool:
        """Check ``options`` of the registered ``name`` with its registry's ``checker``
        (``check_strategy_options``, ...); report each problem under ``key``. True if none."""
        try:
            checker(name, options)
        except OptionsError as error:
            for problem in error.problems:
                self.error(
                    join_key(key, problem.key),
                    f"got {problem.value!r}; expected {problem.expected} ({error.owner})",
                )
            return False
        except ValueError as error:
            self.error(key, str(error))
            return False
        return True

    def option(self, option: Option, value: Any, key: str) -> Any:
        """``value`` checked as the declared ``option`` (type and range), or report it and
        return :data:`INVALID`."""
        try:
            return option.check(_from_env(value, option.annotation), key)
        except OptionError as error:
            self.bad(error.key, error.value, error.expected)
            return INVALID


def read_section(check: Checker, value: Any, key: str, cls: type) -> Any:
    """Build the dataclass ``cls`` from the mapping at ``key``: allowed keys, types, ranges and
    defaults are the dataclass's declared fields. An absent or null section means all
    defaults; a field with a bad value keeps its default (the error is reported)."""
    declared = declared_options(cls)
    if value is None or value is ABSENT:
        return cls()
    if not isinstance(value, dict):
        check.bad(key, value, "a mapping with keys: " + ", ".join(sorted(declared)))
        return cls()
    check.unknown_keys(value, key, declared)
    values = {}
    for name, option in declared.items():
        if name in value:
            item = check.option(option, value[name], f"{key}.{name}")
            if item is not INVALID:
                values[name] = item
    return cls(**values)


def read_overrides(check: Checker, value: Any, key: str, cls: type) -> Any:
    """The fields of section ``cls`` that ``value`` sets (checked as the section itself), or
    :data:`INVALID`."""
    errors_before = len(check.errors)
    section = read_section(check, value, key, cls)
    if len(check.errors) > errors_before or not isinstance(value, dict):
        return INVALID
    return {name: getattr(section, name) for name in value}


def expand_env(check: Checker, value: Any, key: str) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string value (keys are left alone)."""
    if isinstance(value, dict):
        return {name: expand_env(check, item, join_key(key, name)) for name, item in value.items()}
    if isinstance(value, list):
        return [expand_env(check, item, f"{key}[{i}]") for i, item in enumerate(value)]
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
    return FromEnv(expanded)


def _from_env(value: Any, annotation: Any) -> Any:
    """``value`` with each ``${...}`` expansion read as a YAML scalar where ``annotation`` does
    not take a string (``epochs: ${EPOCHS:-15}`` is the integer 15), in lists and mappings too."""
    annotation = _bare(annotation)
    if isinstance(value, FromEnv):
        return (
            value if annotation is str or str in typing.get_args(annotation) else yaml_scalar(value)
        )
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(value, list) and origin is tuple:
        return [_from_env(item, args[0]) for item in value]
    if isinstance(value, dict) and origin is dict:
        return {name: _from_env(item, args[1]) for name, item in value.items()}
    return value


def _bare(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` metadata and without ``| None``."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _bare(annotation.__origin__)
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _bare(args[0])
    return annotation


def join_key(key: str, name: Any) -> str:
    """The dotted key of ``name`` inside ``key`` (``finetune.epochs``)."""
    return f"{key}.{name}" if key else str(name)
