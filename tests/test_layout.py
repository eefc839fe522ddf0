"""The layout's rules (docs/design.md, "Layout"): the method never imports the harness, no import
cycle anywhere in the project, no module over 500 lines.

The import graph is read from the source (every ``import`` and ``from ... import``, at module
level, inside functions and under ``TYPE_CHECKING`` alike, so that a function-level import
cannot hide a cycle). An edge goes from a module to each project module it names: ``from a.b
import c`` names ``a.b``, and ``a.b.c`` too when that is a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("asvp", "benchmark", "perf")
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imported(name: str, path: Path) -> set[str]:
    """The project modules that the module ``name`` at ``path`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: _imported(name, path) for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    """One import cycle of :data:`GRAPH` (its modules in order), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_graph_is_read():
    assert "benchmark.grid.load" in GRAPH["benchmark.grid"]
    assert "asvp.options" in GRAPH["asvp.config"]


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle)


def test_the_method_never_imports_the_harness():
    offenders = {
        name: sorted(m for m in GRAPH[name] if not m.startswith("asvp"))
        for name in GRAPH
        if name.startswith("asvp")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


@pytest.mark.parametrize("package", ["asvp", "benchmark"])
def test_no_module_over_500_lines(package):
    long = {
        str(path.relative_to(ROOT)): count
        for name, path in MODULES.items()
        if name.split(".")[0] == package
        and (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
