"""The command line of ``asvp-bench``: commands, arguments and their help, nothing else.

Light on purpose: building the parser imports the standard library and
:mod:`benchmark.executors.kinds` only, so that ``--help`` and ``--version`` answer at once;
each command imports what it needs when it runs (:mod:`benchmark.cli`). Every argument has
help text (a test walks the parser and checks it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from benchmark.executors.kinds import CELL_STATES, EXECUTOR_KINDS
from benchmark.listing import LISTED_KINDS
from benchmark.version import version_text

__all__ = ["build_parser"]

DESCRIPTION = """\
Active-learning benchmark grids (datasets x strategies x pipelines x seeds), tracked in MLflow.

A grid file (experiments/*.yaml) names the datasets and their label budgets, the backbone, the
strategies, pipelines and seeds, and how cells run (executor: local, debug or slurm). Every
command that reads a grid takes the path of its file (GRID), followed by any KEY=VALUE
overrides of the grid's values (e.g. finetune.epochs=3 seeds=[0,1]).

Precedence of settings: command-line options > environment variables (MLFLOW_TRACKING_URI)
> KEY=VALUE overrides > the grid file > defaults."""

EPILOG = """\
examples:
  asvp-bench list strategies                  what a grid may name, with options
  asvp-bench validate experiments/demo.yaml   check a grid file (reads no data)
  asvp-bench run experiments/demo.yaml --dry-run
  asvp-bench run experiments/demo.yaml seeds=[0] finetune.epochs=3
  asvp-bench status experiments/demo.yaml --state failed
  asvp-bench report experiments/demo.yaml

'asvp-bench COMMAND --help' describes a command."""

GRID_HELP = "path of the grid file (experiments/*.yaml)"
OVERRIDES_HELP = (
    "overrides of the grid's values, after GRID: dotted key = YAML value, e.g. "
    "finetune.epochs=3 seeds=[0,1] datasets.0.budgets=[20,40] executor.kind=debug; "
    "checked as the same edit of the file would be"
)
TRACKING_HELP = "MLflow tracking URI; overrides MLFLOW_TRACKING_URI and the grid's tracking.uri"
RUN_HELP = (
    "Run the grid's cells that are neither finished nor queued/running (--force: finished "
    "ones too); unfinished cells resume from their round checkpoints. The local and debug "
    "executors block until done; slurm returns once the job array is queued (--wait "
    "follows it). A preflight checks data, checkpoints, tracking and executor first."
)
STATUS_HELP = (
    "Every cell's state (one of --state's choices) with its run name, run key, job id, "
    "detail and log, and the counts by state (--json: the same as one JSON object)."
)
COMPARE_HELP = (
    "Line up the finished cells of the grid in two MLflow stores (A: the grid's store, as "
    "the other commands resolve it; B: --other), matched by run key. Per cell: identical "
    "(same picks in every round, bit-identical test accuracy), or the first round whose "
    "selection differs and the largest test-accuracy difference; cells finished in one "
    "store only are listed. Exit status: 0 when every cell found in both stores is "
    "identical, 1 when any differs, 2 for an invalid grid file."
)


class _Version(argparse.Action):
    """``--version``: the package version and git commit, computed only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        kwargs.setdefault("help", "print the version (and git commit) and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text())  # stdout, as argparse's own version action
        parser.exit()


Command = Callable[[argparse.Namespace], int]


def build_parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """The ``asvp-bench`` parser; ``commands`` maps each command name to the function that
    runs it (``args.func``)."""
    parser = argparse.ArgumentParser(
        prog="asvp-bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND",
        help="'asvp-bench COMMAND --help' describes each",
    )  # fmt: skip

    def command(name: str, summary: str, description: str | None = None):
        added = sub.add_parser(name, help=summary, description=description or summary + ".")
        added.set_defaults(func=commands[name])
        return added

    listing = command(
        "list",
        "list the registered strategies, datasets, backbones, pipelines and executors",
        "What a grid file may name, read from the registries: strategies and datasets with "
        "their options (type, range, default), backbones with their options and input "
        "configuration, pipelines with their train methods, executors.",
    )
    listing.add_argument(
        "kinds", nargs="*", type=_listed_kind, metavar="KIND",
        help=f"what to list (default: all): {', '.join(LISTED_KINDS)}",
    )  # fmt: skip
    listing.add_argument("--json", action="store_true", help="print JSON, for machines")

    validate = command(
        "validate", "check a grid file without running it (reads no data)",
        "Check every key of a grid file against the schema and the registries' declared "
        "options, without reading any data, and print the cells it expands to.",
    )  # fmt: skip
    _add_grid(validate)

    run = command("run", "run or submit the grid's unfinished cells", RUN_HELP)
    _add_grid(run)
    run.add_argument(
        "--dry-run", action="store_true",
        help="list the cells with their run keys and whether each would run; run nothing",
    )  # fmt: skip
    run.add_argument("--force", action="store_true", help="re-run chosen finished cells too")
    _add_executor(run)
    run.add_argument(
        "--max-parallel", type=int, metavar="N",
        help="cells at once; overrides executor.max_parallel",
    )  # fmt: skip
    run.add_argument(
        "--wait", action="store_true", help="slurm: follow submitted and queued cells until done"
    )
    run.add_argument(
        "--poll-seconds", type=float, default=15.0, metavar="S",
        help="--wait's poll interval in seconds (default 15)",
    )  # fmt: skip
    _add_common(run)

    check = command(
        "preflight", "check data, checkpoint, tracking and executor; submit nothing",
        "What run checks before it starts anything: every dataset loads and covers its "
        "budgets, every checkpoint file is in its backbone's format, the tracking store and "
        "the executor are usable.",
    )  # fmt: skip
    _add_grid(check)
    _add_executor(check)
    check.add_argument("--tracking-uri", metavar="URI", help=TRACKING_HELP)

    status = command("status", "every cell's state, job id and log", STATUS_HELP)
    _add_grid(status)
    status.add_argument("--json", action="store_true", help="print JSON, for machines")
    _add_common(status)

    _add_server(
        command(
            "mlflow-server", "serve a grid's MLflow store",
            "Serve one MLflow tracking store (SQLite or another backend, artifacts in the "
            "store folder) for the jobs of a grid, e.g. on a cluster's head node.",
        )
    )  # fmt: skip

    report = command(
        "report", "tables, figures and the published comparison from the grid's finished runs",
        "Write the tables (CSV, Markdown, LaTeX), figures and, for grids with a published "
        "counterpart, the comparison with the paper, from the grid's finished MLflow runs.",
    )  # fmt: skip
    _add_grid(report)
    report.add_argument("--out", metavar="DIR", help="output folder (default results/<grid name>)")
    report.add_argument(
        "--published", metavar="CSV",
        help="published-values CSV (default results/published/asvp-tmlr2024.csv)",
    )  # fmt: skip
    report.add_argument("--tracking-uri", metavar="URI", help=TRACKING_HELP)

    compare = command(
        "compare",
        "line up the grid's finished cells in two stores: first differing round, curve gap",
        COMPARE_HELP,
    )
    _add_grid(compare)
    compare.add_argument("--other", required=True, metavar="URI", help="store B's tracking URI")
    compare.add_argument("--tracking-uri", metavar="URI", help=f"store A; {TRACKING_HELP}")
    return parser


def _listed_kind(text: str) -> str:
    """A KIND of ``list`` (checked here: argparse's ``choices`` refuses an empty ``nargs='*'``
    in Python 3.11)."""
    if text not in LISTED_KINDS:
        raise argparse.ArgumentTypeError(
            f"invalid KIND {text!r}; choose from {', '.join(LISTED_KINDS)}"
        )
    return text


def _add_grid(parser: argparse.ArgumentParser) -> None:
    """GRID and its KEY=VALUE overrides."""
    parser.add_argument("grid", metavar="GRID", help=GRID_HELP)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)


def _add_executor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--executor", choices=EXECUTOR_KINDS, help="how cells run; overrides executor.kind"
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    """The tracking URI and the cell filters of ``run`` and ``status``."""
    parser.add_argument("--tracking-uri", metavar="URI", help=TRACKING_HELP)
    filters = parser.add_argument_group("cell filters (repeatable; a cell must match each given)")
    filters.add_argument(
        "--dataset", action="append", metavar="NAME", help="dataset name or label, e.g. mnist5k"
    )
    filters.add_argument(
        "--strategy", action="append", metavar="NAME", help="name or label, e.g. badge"
    )
    filters.add_argument(
        "--pipeline", action="append", metavar="NAME", help="svpp, svpp-lpft, asvp-auto, ..."
    )
    filters.add_argument("--seed", action="append", type=int, metavar="N", help="a seed")
    filters.add_argument("--state", action="append", choices=CELL_STATES, help="a cell state")


def _add_server(server: argparse.ArgumentParser) -> None:
    server.add_argument("--store", required=True, metavar="DIR", help="folder on shared storage")
    server.add_argument(
        "--backend-uri", metavar="URI", help="e.g. postgresql://...; default <store>/mlflow.db"
    )
    server.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other nodes")
    server.add_argument("--port", type=int, default=5000, help="default 5000")
    server.add_argument("--workers", type=int, default=1, help="server workers (default 1)")
    server.add_argument("--pid-file", metavar="FILE", help="written while the server runs")
