"""How the harness's own commands grow with the grid (issue 18, items 1 and 2): at about 100, 330
and 1,000 cells whose finished runs the load generator wrote (:mod:`perf.harness_load`), the
median wall time of ``status``, ``report`` (tables and figures), ``run --dry-run`` and a
re-submission (``run``) that finds every cell finished.

Usage (from the repository root; ``make bench`` runs it)::

    python -m perf.harness_scale [--seeds 1,3,9] [--datasets 5] [--repeats 3] [--store server]

Each size is a fresh folder holding the grid (:mod:`perf.harness_grid`: Table 2's shape,
``datasets x seeds x 22`` cells) and its store: an ``asvp-bench mlflow-server`` with SQLite
behind it on a free local port (``--store sqlite``: the SQLite file itself). Each command is a
fresh ``python -m benchmark.cli ...`` started in that folder (interpreter start included: what
a user waits for). The growth is given as the seconds per 100 cells at the largest size and the
exponent ``b`` of ``t ~ N^b`` between the smallest and the largest. Targets at 1,000 cells
(issue 18): status < 5 s, report < 60 s, re-submission < 30 s. It measures and reports pass or
fail; it exits 0 either way. It writes the section ``harness-scale`` of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .document import load_sentence, publish_section
from .harness_grid import cells_per_grid, write_grid
from .harness_load import generate
from .selection import DEFAULT_OUTPUT, _machine_line, machine_info

SECTION = "harness-scale"
ROOT = Path(__file__).resolve().parent.parent
SEEDS = (1, 3, 9)  # x 5 datasets x 22 cells: 110, 330 and 990 cells
DATASETS = 5
REPEATS = 3
COMMANDS = {
    "status": ("status",),
    "report": ("report", "--out", "report"),
    "run --dry-run": ("run", "--dry-run"),
    "re-submission": ("run",),
}
TARGETS = {"status": 5.0, "report": 60.0, "re-submission": 30.0}
"""Issue 18's targets in seconds, at 1,000 cells against a local server."""
TARGET_CELLS = 900  # sizes from here on are checked against the targets


@dataclass(frozen=True)
class SizeResult:
    """One grid size: its cells, the seconds the generator took, and per command the seconds
    of each repeat."""

    cells: int
    generate_seconds: float
    seconds: dict[str, list[float]]

    def median(self, command: str) -> float:
        return statistics.median(self.seconds[command])


@contextmanager
def _store(root: Path, kind: str) -> Iterator[tuple[str, Path | None]]:
    """A store for one size: its URI, and the server's folder (the generator writes its files
    directly: :func:`perf.harness_load.generate`); a local server with SQLite behind it, or the
    SQLite file (no folder)."""
    if kind == "sqlite":
        yield f"sqlite:///{root / 'mlflow.db'}", None
        return
    from benchmark.mlflow_server import (
        ServerSettings,
        free_port,
        start_server,
        stop_server,
        wait_until_ready,
    )

    settings = ServerSettings(root / "mlflow", port=free_port())
    server = start_server(settings)
    try:
        wait_until_ready(settings.tracking_uri, timeout=120, process=server)
        yield settings.tracking_uri, settings.store
    finally:
        stop_server(server.pid)


def _cli(root: Path, grid: Path, uri: str, args: Sequence[str]) -> float:
    """Seconds of one ``python -m benchmark.cli ARGS GRID --tracking-uri URI`` in ``root``;
    raises RuntimeError (with its output's end) on a non-zero exit."""
    command, *options = args
    argv = [sys.executable, "-m", "benchmark.cli", command, str(grid), *options]
    argv += ["--tracking-uri", uri]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-2000:]
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{tail}")
    return seconds


def measure_size(
    datasets: int, seeds: int, repeats: int, store: str, commands: Sequence[str]
) -> SizeResult:
    """Generate a grid of ``datasets x seeds`` and time each command ``repeats`` times."""
    with tempfile.TemporaryDirectory(prefix="harness-scale-") as folder:
        root = Path(folder)
        grid = write_grid(root, datasets, seeds)
        with _store(root, store) as (uri, server_store):
            started = time.perf_counter()
            cells = generate(grid, uri, server_store=server_store)
            generated = time.perf_counter() - started
            print(f"{cells} cells: generated in {generated:.1f} s", flush=True)
            seconds: dict[str, list[float]] = {}
            for name in commands:
                seconds[name] = [_cli(root, grid, uri, COMMANDS[name]) for _ in range(repeats)]
                print(f"  {name:14s} {statistics.median(seconds[name]):8.2f} s", flush=True)
    return SizeResult(cells, generated, seconds)


def exponent(small: SizeResult, large: SizeResult, command: str) -> float:
    """``b`` of ``t ~ N^b`` through the two sizes' medians."""
    ratio = large.median(command) / small.median(command)
    return math.log(ratio) / math.log(large.cells / small.cells)


def render_table(results: Sequence[SizeResult], commands: Sequence[str]) -> str:
    """Cells x command: median seconds, then the growth and the target check."""
    head = "| cells | generate (s) | " + " | ".join(f"{c} (s)" for c in commands) + " |"
    rule = "|---:|---:|" + "---:|" * len(commands)
    rows = [
        f"| {r.cells} | {r.generate_seconds:.1f} | "
        + " | ".join(f"{r.median(c):.2f}" for c in commands)
        + " |"
        for r in results
    ]
    lines = [head, rule, *rows]
    if len(results) > 1:
        small, large = results[0], results[-1]
        per_100 = [f"{100 * large.median(c) / large.cells:.2f}" for c in commands]
        growth = [f"{exponent(small, large, c):.2f}" for c in commands]
        lines.append(f"| s per 100 cells at {large.cells} | | " + " | ".join(per_100) + " |")
        lines.append("| exponent b (t ~ N^b) | | " + " | ".join(growth) + " |")
    return "\n".join(lines)


def verdicts(results: Sequence[SizeResult]) -> list[str]:
    """The targets checked at every size of at least :data:`TARGET_CELLS` cells."""
    out = []
    for result in results:
        if result.cells < TARGET_CELLS:
            continue
        for command, target in TARGETS.items():
            if command in result.seconds:
                seconds = result.median(command)
                verdict = "pass" if seconds < target else "FAIL"
                out.append(
                    f"{verdict}: {command} at {result.cells} cells {seconds:.1f} s "
                    f"(target < {target:g} s)"
                )
    return out


def render_section(
    results: Sequence[SizeResult],
    commands: Sequence[str],
    info: dict[str, str],
    repeats: int,
    store: str,
    loads: tuple[float, float],
) -> str:
    """The ``harness-scale`` section of ``docs/benchmarks.md``."""
    where = (
        "an `asvp-bench mlflow-server` with SQLite behind it, on this machine"
        if store == "server"
        else "a local SQLite file"
    )
    checks = "\n".join(f"* {line}" for line in verdicts(results)) or "* no size reached 900 cells"
    return f"""## Harness at scale

Written by `python -m perf.harness_scale` on {time.strftime("%Y-%m-%d")}.

**Machine.** {_machine_line(info)}.
{load_sentence(*loads)}

**What is measured.** Grids of Table 2's shape (`perf/harness_grid.py`: 5 MNIST-5k entries x
seeds x 22 cells, ten rounds each) whose every cell has a finished run written by the load
generator (`perf/harness_load.py`: the project's own tracking code, made-up round records,
nothing trained) into {where}. The median of {repeats} fresh `python -m benchmark.cli`
processes per command, interpreter start included: `status`, `report` (tables and figures),
`run --dry-run` (preflight included) and `run` finding every cell finished. Growth: seconds
per 100 cells at the largest size, and the exponent b of t ~ N^b between the smallest and the
largest (1: linear; near 0: a fixed cost dominates).

{render_table(results, commands)}

Targets (issue 18, at 1,000 cells against a local server):

{checks}
"""


def _counts(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise SystemExit(f"{name} {text!r}: expected comma-separated whole numbers") from None
    if not values or min(values) < 1:
        raise SystemExit(f"{name} {text!r}: expected whole numbers of at least 1")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every size, print the table and write the section; exit status 0 regardless."""
    parser = argparse.ArgumentParser(prog="python -m perf.harness_scale", description=__doc__)
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="seeds per size")
    parser.add_argument("--datasets", type=int, default=DATASETS, help="dataset entries")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs per command")
    parser.add_argument("--store", choices=("server", "sqlite"), default="server")
    parser.add_argument(
        "--commands", default=",".join(COMMANDS), help=f"some of {', '.join(COMMANDS)}"
    )
    parser.add_argument(
        "--output", default=str(DEFAULT_OUTPUT), help="document to write the section to ('-': none)"
    )
    args = parser.parse_args(argv)
    seeds = _counts(args.seeds, "--seeds")
    commands = [c.strip() for c in args.commands.split(",")]
    unknown = [c for c in commands if c not in COMMANDS]
    if unknown or args.repeats < 1 or args.datasets < 1:
        parser.error(
            f"--commands {unknown} not among {list(COMMANDS)}, or --repeats/--datasets below 1"
        )
    load_start = os.getloadavg()[0]
    results = []
    for count in seeds:
        print(f"grid of {cells_per_grid(args.datasets, count)} cells", flush=True)
        results.append(measure_size(args.datasets, count, args.repeats, args.store, commands))
    loads = (load_start, os.getloadavg()[0])

    import torch

    info = machine_info("cpu", torch.get_num_threads())
    section = render_section(results, commands, info, args.repeats, args.store, loads)
    publish_section(args.output, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
