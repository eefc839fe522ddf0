"""``asvp-bench``: validate, run and report experiment grids.

Precedence of settings: command-line options > environment variables (``MLFLOW_TRACKING_URI``)
> the grid file > defaults. GRID is always the path of a grid file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmark.grid import Cell, Grid, GridError, expand_cells, load_grid, resolve_tracking_uri


def _load(path: str) -> Grid:
    try:
        return load_grid(path)
    except GridError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from error


def _apply_tracking(grid: Grid, cli_uri: str | None) -> str | None:
    uri = resolve_tracking_uri(grid, cli_uri)
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def cmd_validate(args: argparse.Namespace) -> int:
    grid = _load(args.grid)
    cells = expand_cells(grid)
    print(f"{args.grid}: valid grid {grid.name!r}, {len(cells)} cells")
    return 0


def _describe_cells(cells: list[Cell], pending: set[str]) -> None:
    for cell in cells:
        action = "run " if cell.run_key in pending else "skip"
        print(f"  {action}  {cell.run_key}  {cell.run_name}")


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.launch import pending_cells, run_cells

    grid = _load(args.grid)
    uri = _apply_tracking(grid, args.tracking_uri)
    cells = expand_cells(grid)
    todo = pending_cells(cells, grid.name, force=args.force)
    print(
        f"grid {grid.name!r}: {len(cells)} cells, {len(cells) - len(todo)} finished, "
        f"{len(todo)} to run"
    )
    if args.dry_run:
        _describe_cells(cells, {cell.run_key for cell in todo})
        return 0
    executor = args.executor or grid.executor.kind
    max_parallel = args.max_parallel or grid.executor.max_parallel
    started = time.perf_counter()

    def progress(outcome) -> None:
        elapsed = time.perf_counter() - started
        suffix = f"\n{outcome.error}" if outcome.error else ""
        print(
            f"  [{elapsed:6.0f}s] {outcome.status:8s} {outcome.cell.run_name}{suffix}", flush=True
        )

    outcomes = run_cells(grid, todo, executor, max_parallel, uri, progress)
    failed = [o for o in outcomes if o.status != "finished"]
    print(
        f"ran {len(outcomes)} cells in {time.perf_counter() - started:.0f}s, {len(failed)} failed"
    )
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from benchmark.report import discrepancy_table, read_curves, table2, write_report

    grid = _load(args.grid)
    _apply_tracking(grid, args.tracking_uri)
    cells = expand_cells(grid)
    curves = read_curves(MlflowClient(), grid, cells)
    if len(curves) < len(cells):
        print(f"note: {len(cells) - len(curves)} of {len(cells)} cells have no finished run yet")
    out_dir = Path(args.out) if args.out else Path("results") / grid.name
    discrepancy = discrepancy_table(curves)
    markdown = write_report(grid, table2(grid, curves), out_dir, discrepancy)
    print(markdown)
    written = sorted(str(path) for path in out_dir.glob("*.*") if path.suffix in (".csv", ".md"))
    print(f"written: {', '.join(written)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asvp-bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a grid file without running it")
    validate.add_argument("grid")
    validate.set_defaults(func=cmd_validate)
    run = commands.add_parser("run", help="run the grid's unfinished cells")
    run.add_argument("grid")
    run.add_argument("--dry-run", action="store_true", help="list cells, run keys, skips")
    run.add_argument("--force", action="store_true", help="re-run finished cells too")
    run.add_argument("--executor", choices=("local", "debug"), help="overrides executor.kind")
    run.add_argument("--max-parallel", type=int, help="overrides executor.max_parallel")
    run.add_argument("--tracking-uri", help="overrides MLFLOW_TRACKING_URI and tracking.uri")
    run.set_defaults(func=cmd_run)
    report = commands.add_parser("report", help="tables from the grid's finished runs")
    report.add_argument("grid")
    report.add_argument("--out", help="output folder (default results/<grid name>)")
    report.add_argument("--tracking-uri", help="overrides MLFLOW_TRACKING_URI and tracking.uri")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
