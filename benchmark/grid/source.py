"""Reading a grid file's YAML, and :class:`GridError`, the error that reports a bad file.

PyYAML alone reads ``1e-4`` as a string (YAML 1.1); the loader here reads it as a number, as
YAML 1.2 does, and a key given twice in one mapping is an error, not "last one wins".
Environment references (``${NAME:-default}``) are expanded by
:func:`benchmark.grid.checker.expand_env`; the strings it produces are :class:`FromEnv`, read
again with :func:`yaml_scalar` where a field is not a string. Command-line overrides
(``KEY=VALUE``) are read with :func:`yaml_value`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


class GridError(ValueError):
    """An invalid grid file. ``errors`` holds one line per problem, each naming the file, the
    dotted key, the offending value and what is expected; the message is those lines."""

    def __init__(self, path: str | os.PathLike[str], errors: Sequence[str]) -> None:
        self.path = Path(path)
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class FromEnv(str):
    """A string produced by ``${...}`` expansion; read as a YAML scalar in non-string fields."""


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


def read_yaml(path: Path) -> Any:
    """The parsed YAML of ``path``; :class:`GridError` if it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GridError(path, [f"{path}: cannot read the grid file: {exc}"]) from exc
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise GridError(path, [f"{path}: not valid YAML: {exc}"]) from exc


def yaml_value(text: str, what: str, path: Path) -> Any:
    """``text`` read as a YAML value (a scalar, or a flow list or mapping: ``[0, 1]``), as in
    the grid file; ``what`` names it in the :class:`GridError` raised when it is not YAML."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        problem = str(exc).replace("\n", " ")
        raise GridError(path, [f"{path}: {what}: not a YAML value: {problem}"]) from exc


def yaml_scalar(text: str) -> Any:
    """``text`` read as an unquoted YAML scalar would be (``15`` -> 15, ``null`` -> None)."""
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text
    return value if value is None or isinstance(value, bool | int | float | str) else text
