"""How fast ``asvp-bench`` answers (issue 13, item 6): the median wall time of ``--help``, of
each subcommand's ``--help`` and of ``validate experiments/table2.yaml`` with no data present.

Usage (from the repository root; ``make bench`` runs it)::

    python -m perf.cli_latency [--repeats 5] [--grid experiments/table2.yaml] [--output PATH]

Each run is a fresh ``python -m benchmark.cli ...`` (the code the ``asvp-bench`` script runs),
interpreter start included: what a user waits for. The runs start in an empty temporary
folder with ``ASVP_DATA``, ``ASVP_CHECKPOINTS``, ``ASVP_FEATURES`` and ``ASVP_STATE`` pointing
into it and ``ASVP_DOWNLOAD=false``: no data is present and nothing is written to the
repository. The subcommands are read from the CLI's own parser, so a new one is timed without
editing this file.

Targets (issue 13): ``--help`` and each subcommand's ``--help`` under 1 s; ``validate`` under
3 s and exit status 0 for a well-formed grid (data problems are the preflight's job). The
script reports each line as pass or fail and exits 0 either way: it measures, it is not a test.
It writes the section ``cli-latency`` of ``docs/benchmarks.md`` (:mod:`perf.document`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asvp.options import Annotated, OptionError, Range, declared_options

from .document import load_sentence, publish_section
from .selection import DEFAULT_OUTPUT, _machine_line, machine_info

SECTION = "cli-latency"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GRID = Path("experiments/table2.yaml")
REPEATS = 5

#: Issue 13's targets, in seconds.
HELP_TARGET = 1.0
VALIDATE_TARGET = 3.0

#: Environment variables the grid files read for paths; each points into the empty folder.
PATH_VARIABLES = {
    "ASVP_DATA": "data",
    "ASVP_CHECKPOINTS": "checkpoints",
    "ASVP_FEATURES": "features",
    "ASVP_STATE": "state",
}


@dataclass(frozen=True)
class Probe:
    """One command line to time: ``label`` as printed, ``args`` after ``benchmark.cli``, and
    the target median in seconds."""

    label: str
    args: tuple[str, ...]
    target: float


@dataclass(frozen=True)
class Timing:
    """The wall times (seconds) and exit statuses of a probe's runs, and the last line its
    last failing run wrote to stderr (empty when every run exited 0)."""

    probe: Probe
    seconds: tuple[float, ...]
    exit_codes: tuple[int, ...]
    error: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def passed(self) -> bool:
        """Every run exited 0 and the median is under the target."""
        return not any(self.exit_codes) and self.median < self.probe.target


def subcommands() -> list[str]:
    """The subcommands of ``asvp-bench``, in the order its parser declares them."""
    from benchmark.cli import build_parser

    # argparse keeps its subcommands on a private action; there is no public accessor.
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def probes(grid: Path, commands: Sequence[str]) -> list[Probe]:
    """``--help``, ``COMMAND --help`` for each of ``commands``, and ``validate GRID``."""
    found = [Probe("asvp-bench --help", ("--help",), HELP_TARGET)]
    found += [Probe(f"asvp-bench {c} --help", (c, "--help"), HELP_TARGET) for c in commands]
    label = f"asvp-bench validate {grid}"
    found.append(Probe(label, ("validate", str(grid.resolve())), VALIDATE_TARGET))
    return found


def no_data_environment(folder: Path) -> dict[str, str]:
    """This process's environment with every grid path variable pointing at an empty folder
    under ``folder``, downloads off, and this checkout first on the import path."""
    env = dict(os.environ)
    for variable, name in PATH_VARIABLES.items():
        (folder / name).mkdir(exist_ok=True)
        env[variable] = str(folder / name)
    env["ASVP_DOWNLOAD"] = "false"
    env["HF_HUB_OFFLINE"] = "1"
    env["MPLBACKEND"] = "Agg"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def measure(
    selected: Sequence[Probe], *, repeats: Annotated[int, Range(ge=1)] = REPEATS
) -> list[Timing]:
    """Run each probe ``repeats`` times, each a fresh process in an empty temporary folder
    (see :func:`no_data_environment`), and time it from start to exit."""
    timings = []
    with tempfile.TemporaryDirectory(prefix="asvp-cli-latency-") as scratch:
        folder = Path(scratch)
        env = no_data_environment(folder)
        for probe in selected:
            command = [sys.executable, "-m", "benchmark.cli", *probe.args]
            seconds, codes, error = [], [], ""
            for _ in range(repeats):
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder)
                seconds.append(time.perf_counter() - start)
                codes.append(done.returncode)
                if done.returncode:
                    lines = [line for line in done.stderr.splitlines() if line.strip()]
                    error = lines[-1] if lines else f"exit status {done.returncode}"
            timings.append(Timing(probe, tuple(seconds), tuple(codes), error))
            print(_row(timings[-1]), file=sys.stderr, flush=True)
    return timings


def _row(timing: Timing) -> str:
    runs = ", ".join(f"{s:.2f}" for s in timing.seconds)
    codes = ", ".join(str(c) for c in sorted(set(timing.exit_codes)))
    verdict = "pass" if timing.passed else "**fail**"
    return (
        f"| `{timing.probe.label}` | {timing.median:.2f} | {runs} | {codes} "
        f"| < {timing.probe.target:g} s | {verdict} |"
    )


def render_table(timings: Sequence[Timing]) -> str:
    """The Markdown table: command, median, every run, exit statuses, target, verdict."""
    head = (
        "| command | median (s) | runs (s) | exit | target | verdict |\n|---|---|---|---|---|---|"
    )
    return "\n".join([head, *(_row(t) for t in timings)])


def render_section(
    timings: Sequence[Timing], info: dict[str, str], repeats: int, loads: tuple[float, float]
) -> str:
    """The ``cli-latency`` section of ``docs/benchmarks.md``."""
    passed = sum(t.passed for t in timings)
    failures = "".join(f"\n* `{t.probe.label}`: {t.error}" for t in timings if t.error)
    if failures:
        failures = "\nNon-zero exits (the last line each wrote to stderr):\n" + failures
    return f"""## CLI latency

Written by `python -m perf.cli_latency` on {time.strftime("%Y-%m-%d")}.

**Machine.** {_machine_line(info)}.
{load_sentence(*loads)}

**What is measured.** The wall time of `python -m benchmark.cli ARGS` (the code the
`asvp-bench` script runs) in a fresh process, interpreter start included; the median of
{repeats} run{"s" if repeats > 1 else ""} per command. Each run starts in an empty temporary
folder, with `ASVP_DATA`, `ASVP_CHECKPOINTS`, `ASVP_FEATURES` and `ASVP_STATE` pointing into
it and `ASVP_DOWNLOAD=false`: no data is present. Targets (issue 13): `--help` and each subcommand's
`--help` under {HELP_TARGET:g} s; `validate` under {VALIDATE_TARGET:g} s and exit status 0
(data problems are the preflight's job). *fail*: over the target or a non-zero exit.

{render_table(timings)}

{passed} of {len(timings)} within target.
{failures}"""


def main(argv: Sequence[str] | None = None) -> int:
    """Time every probe, print the table and write the section; exit status 0 regardless."""
    parser = argparse.ArgumentParser(prog="python -m perf.cli_latency", description=__doc__)
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs per command")
    parser.add_argument("--grid", type=Path, default=DEFAULT_GRID, help="grid to validate")
    parser.add_argument(
        "--output", default=str(DEFAULT_OUTPUT), help="document to write the section to ('-': none)"
    )
    args = parser.parse_args(argv)
    try:
        repeats = declared_options(measure)["repeats"].check(args.repeats, "--repeats")
    except OptionError as error:
        parser.error(str(error))
    load_start = os.getloadavg()[0]
    timings = measure(probes(args.grid, subcommands()), repeats=repeats)
    loads = (load_start, os.getloadavg()[0])

    import torch

    info = machine_info("cpu", torch.get_num_threads())
    section = render_section(timings, info, repeats, loads)
    publish_section(args.output, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
