"""``asvp-bench``'s commands: list the registries; validate, run (or submit), follow and report
experiment grids; serve their MLflow store. The parser and every help text are in
:mod:`benchmark.cli_parser`.

``run`` submits the cells that are neither finished nor queued/running (``--force``: finished
ones too) and resumes unfinished ones from their round checkpoints; the local and debug
executors block until done, the slurm executor returns once the job array is queued (``--wait``
follows it). With the local and debug executors ``run`` prints each cell's start and log, each
round's end and each outcome; SIGINT (Ctrl-C) or SIGTERM stops it cleanly: running cells are
recorded ``killed`` with their round checkpoints kept, one line says how to resume, exit status
130. ``status`` lists every cell as pending, running, finished, failed or killed with its job id
and log (``--json`` for scripts). Both take cell filters (``--dataset``, ``--strategy``,
``--pipeline``, ``--seed``, ``--state``).

``compare`` lines up a grid's finished cells in two stores, to find where two runs parted
(:mod:`benchmark.compare`).

Every command that reads a grid takes ``KEY=VALUE`` overrides of the grid's values after
GRID (:mod:`benchmark.grid.overrides`), checked as the same edit of the file would be.
Precedence of settings: command-line options > environment variables
(``MLFLOW_TRACKING_URI``) > overrides > the grid file > defaults. GRID is always the path of a
grid file.

Output to a closed pipe (``asvp-bench status GRID | head -3``) ends the command quietly with
status 141 (128 + SIGPIPE), as other command-line tools do, not with a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# Light on purpose: the parser answers `--help` at once; each command imports what it needs.
from benchmark import cli_parser

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from benchmark.executors.base import Executor, Submission
    from benchmark.executors.job import CellJob
    from benchmark.grid import Cell, Grid
    from benchmark.status import CellStatus


def _load(path: str, overrides: Sequence[str] = ()) -> Grid:
    """The grid file at ``path`` with its ``KEY=VALUE`` ``overrides``, checked without reading
    any data (that is the preflight's job); exits with status 2 and every problem if it is
    invalid."""
    from benchmark.grid import GridError, load_grid

    try:
        return load_grid(path, overrides)
    except GridError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from error


def _apply_tracking(grid: Grid, cli_uri: str | None) -> str:
    """Point MLflow (this process and the jobs it starts) at the resolved store; returns its
    URI (MLflow's default made absolute, so that jobs elsewhere find the same file)."""
    from benchmark.grid import resolve_tracking_uri
    from benchmark.tracking import use_store

    return use_store(resolve_tracking_uri(grid, cli_uri))


def cmd_validate(args: argparse.Namespace) -> int:
    from benchmark.grid import expand_cells

    grid = _load(args.grid, args.overrides)
    cells = expand_cells(grid)
    print(f"{args.grid}: valid grid {grid.name!r}, {len(cells)} cells")
    _print_transforms(cells)
    return 0


def _select_cells(cells: list[Cell], args: argparse.Namespace) -> list[Cell]:
    """The cells matching every given filter (each filter: any of its values)."""
    tests = {
        "dataset": lambda cell: {cell.config.dataset, cell.dataset_label},
        "strategy": lambda cell: {cell.strategy_label, cell.config.strategy},
        "pipeline": lambda cell: {
            cell.pipeline_label,
            cell.config.pipeline,
            f"{cell.config.pipeline}-{cell.config.train_method}",
        },
        "seed": lambda cell: {str(cell.config.seed)},
    }
    for name, names_of in tests.items():
        wanted = getattr(args, name)
        if not wanted:
            continue
        wanted = set(map(str, wanted))
        known = set().union(*(names_of(cell) for cell in cells))
        unknown = sorted(wanted - known)
        if unknown:
            print(
                f"error: --{name} {', '.join(unknown)} matches no cell of the grid; "
                f"known: {', '.join(sorted(known))}",
                file=sys.stderr,
            )
            raise SystemExit(2)
        cells = [cell for cell in cells if names_of(cell) & wanted]
    return cells


def _statuses(client: MlflowClient, grid: Grid, args: argparse.Namespace) -> list[CellStatus]:
    from benchmark.grid import expand_cells
    from benchmark.status import cell_statuses

    statuses = cell_statuses(client, grid, _select_cells(expand_cells(grid), args))
    return [s for s in statuses if not args.state or s.state in args.state]


def _passes_preflight(args: argparse.Namespace, grid: Grid, uri: str, started: float) -> bool:
    """Run the preflight (:mod:`benchmark.preflight`: the one place the grid's data is read)
    and print what it found; False if anything is missing."""
    from benchmark.preflight import preflight, with_kind

    settings = with_kind(grid.executor, args.executor)
    found = preflight(grid, settings, uri, grid.tracking.allow_sqlite)
    elapsed = time.perf_counter() - started
    for note in found.notes:
        print(f"preflight: {note}")
    if not found.problems:
        print(f"preflight: {args.grid}: data, checkpoint, tracking and executor ready")
        return True
    print(
        f"preflight: {args.grid}: {len(found.problems)} problem(s) found in {elapsed:.0f}s; "
        "nothing was submitted",
        file=sys.stderr,
    )
    for problem in found.problems:
        print(f"  - {problem}", file=sys.stderr)
    return False


def cmd_preflight(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    grid = _load(args.grid, args.overrides)
    uri = _apply_tracking(grid, args.tracking_uri)
    return 0 if _passes_preflight(args, grid, uri, started) else 2


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.executors.job import submission_lock
    from benchmark.executors.registry import make_executor
    from benchmark.status import wait_until_done
    from benchmark.tracking import connect

    started = time.perf_counter()
    grid = _load(args.grid, args.overrides)
    uri = _apply_tracking(grid, args.tracking_uri)
    resume = " ".join(["asvp-bench run", args.grid, *args.overrides])
    if args.tracking_uri:
        resume += f" --tracking-uri {args.tracking_uri}"
    print(f"preflight: checking {args.grid}: data, checkpoint, tracking, executor", flush=True)
    try:  # Ctrl-C before the cells run (they handle it themselves): no traceback
        if not _passes_preflight(args, grid, uri, started):
            return 2
        kind = args.executor or grid.executor.kind
        settings = grid.executor
        if args.max_parallel:
            settings = dataclasses.replace(settings, max_parallel=args.max_parallel)
        executor = make_executor(kind, grid, settings)
        client = connect()
        started = time.perf_counter()
        with submission_lock(grid):  # decided and submitted by one driver at a time
            statuses = _statuses(client, grid, args)
            todo = _plan(grid, statuses, args.force, kind)
            if args.dry_run:
                _describe(statuses, todo)
                return 0
            jobs = _prepare(client, grid, todo, uri, args.force)
            if executor.scheduler:
                submissions = _submit_to_scheduler(executor, client, jobs)
    except KeyboardInterrupt:
        print(
            "stopped by SIGINT before any cell ran here (jobs already queued stay queued: "
            f"asvp-bench status {args.grid}); resume with: {resume}",
            file=sys.stderr,
        )
        return 130
    if not executor.scheduler:
        status = _run_here(executor, client, jobs, started, resume)
        if status != 130 and jobs:
            _print_browse_hint(client, grid, uri)
        return status
    followed = [s.cell for s in submissions] + [s.cell for s in statuses if s.live]
    if not args.wait or not followed:
        if followed:
            print(f"follow with: asvp-bench status {args.grid}")
        return 0
    final = wait_until_done(client, grid, followed, args.poll_seconds, _change_printer(started))
    failed = [status for status in final if status.state != "finished"]
    print(f"{len(final) - len(failed)} finished, {len(failed)} not finished")
    return 1 if failed else 0


def _plan(grid: Grid, statuses: list[CellStatus], force: bool, kind: str) -> list[CellStatus]:
    """The cells to submit; says why the others are skipped. A live cell (queued or running)
    is never submitted again, even with ``--force``."""
    todo = [s for s in statuses if not s.live and (s.state != "finished" or force)]
    finished = sum(s.state == "finished" for s in statuses)
    print(
        f"grid {grid.name!r}: {len(statuses)} cells, {finished} finished, "
        f"{len(todo)} to run ({kind})"
    )
    for status in statuses:
        if status.live:
            print(f"  skip: {status.cell.run_name}: {status.state} ({status.detail})")
    return todo


def _print_transforms(cells: list[Cell]) -> None:
    """One line per dataset (by label) x backbone: the image transform its cells use."""
    from asvp.data import dataset_images
    from asvp.recipe import resolve_transform

    transforms = {(c.dataset_label, c.config.backbone): c for c in cells}
    for (label, backbone), cell in transforms.items():
        files = dataset_images(cell.config.dataset).native_size is None
        described = resolve_transform(cell.config).describe(files)
        print(f"  transform {label} x {backbone}: {described}")


def _describe(statuses: list[CellStatus], todo: list[CellStatus]) -> None:
    _print_transforms([s.cell for s in statuses])
    chosen = {s.cell.run_key for s in todo}
    for status in statuses:
        action = "run" if status.cell.run_key in chosen else "skip"
        print(f"  {action:5s} {status.state:8s} {status.cell.run_key}  {status.cell.run_name}")


def _prepare(
    client: MlflowClient,
    grid: Grid,
    todo: list[CellStatus],
    uri: str,
    force: bool,
) -> list[CellJob]:
    """Open (or reuse) each chosen cell's run and build its job."""
    from benchmark.executors.job import prepare_jobs

    if not todo:
        return []
    cells = [(status.cell, status.run) for status in todo]
    return prepare_jobs(client, grid, cells, uri, force)


def _submit_to_scheduler(
    executor: Executor, client: MlflowClient, jobs: list[CellJob]
) -> list[Submission]:
    """A queueing executor (slurm): queue the jobs and say where they went."""
    if not jobs:
        return []
    submissions = executor.submit(client, jobs, lambda submission: None)
    print(
        f"submitted {len(submissions)} cells to {executor.scheduler}: "
        f"jobs {_job_range(submissions)}"
    )
    print(f"logs: {Path(submissions[0].log_path).parent.parent}")
    return submissions


def _run_here(
    executor: Executor, client: MlflowClient, jobs: list[CellJob], started: float, resume: str
) -> int:
    """The local and debug executors: run the jobs to the end, printing each cell's progress
    and outcome; stopped by SIGINT or SIGTERM, one line on what was stopped and how to resume
    (exit status 130, as a shell reports Ctrl-C)."""
    if not jobs:
        return 0
    submissions = executor.submit(client, jobs, _progress_printer(started))
    if executor.stopped_by:
        killed = sum(s.state == "killed" for s in submissions)
        waiting = sum(s.state == "pending" for s in submissions)
        print(
            f"{executor.stopped_by}: {killed} running cells killed (round checkpoints kept), "
            f"{waiting} not started; resume with: {resume}",
            flush=True,
        )
        return 130
    failed = [s for s in submissions if s.state != "finished"]
    elapsed = time.perf_counter() - started
    print(f"ran {len(submissions)} cells in {elapsed:.0f}s, {len(failed)} failed")
    return 1 if failed else 0


def _job_range(submissions: list[Submission]) -> str:
    ids = [s.job_id for s in submissions]
    return ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]}"


def _progress_printer(started: float):
    """What the local and debug executors report: a cell's progress lines (started, with its
    log; each round's end) and its outcome (with the error and log if it failed)."""
    from benchmark.executors.base import CellProgress

    def report(event: Submission | CellProgress) -> None:
        elapsed = time.perf_counter() - started
        if isinstance(event, CellProgress):
            print(f"  [{elapsed:6.0f}s] {event.cell.run_name}: {event.message}", flush=True)
            return
        log = f"  log: {event.log_path}" if event.error and event.log_path else ""
        suffix = f"{log}\n{event.error}" if event.error else ""
        print(f"  [{elapsed:6.0f}s] {event.state:8s} {event.cell.run_name}{suffix}", flush=True)

    return report


def _change_printer(started: float):
    def report(status: CellStatus) -> None:
        elapsed = time.perf_counter() - started
        log = f"  log: {status.log_path}" if status.state == "failed" and status.log_path else ""
        print(
            f"  [{elapsed:6.0f}s] {status.state:8s} {status.job_id or '-':>10s} "
            f"{status.cell.run_name}  {status.detail}{log}",
            flush=True,
        )

    return report


def cmd_status(args: argparse.Namespace) -> int:
    from benchmark.status import count_states
    from benchmark.tracking import connect

    grid = _load(args.grid, args.overrides)
    _apply_tracking(grid, args.tracking_uri)
    statuses = _statuses(connect(), grid, args)
    counts = count_states(statuses)
    if args.json:
        print(json.dumps(_status_document(grid, statuses, counts), indent=2))
        return 0
    summary = ", ".join(f"{count} {state}" for state, count in counts.items())
    print(f"grid {grid.name!r}: {len(statuses)} cells: {summary}")
    print(f"  {'state':8s} {'job':>12s}  run name  |  detail  |  log")
    for status in statuses:
        print(
            f"  {status.state:8s} {status.job_id or '-':>12s}  {status.cell.run_name}  |  "
            f"{status.detail}  |  {status.log_path or '-'}"
        )
    return 0


def _status_document(grid: Grid, statuses: list[CellStatus], counts: dict[str, int]) -> dict:
    """``status --json``: the grid, the counts by state and one object per cell."""
    return {
        "grid": grid.name,
        "path": str(grid.path),
        "overrides": list(grid.overrides),
        "total": len(statuses),
        "counts": counts,
        "cells": [
            {
                "run_name": status.cell.run_name,
                "run_key": status.cell.run_key,
                "state": status.state,
                "live": status.live,
                "job_id": status.job_id,
                "run_id": status.run_id,
                "detail": status.detail,
                "log_path": status.log_path,
            }
            for status in statuses
        ],
    }


def cmd_list(args: argparse.Namespace) -> int:
    """What a grid may name: strategies, datasets, backbones, pipelines, executors."""
    from benchmark.listing import LISTED_KINDS, registry_listing, render_listing

    kinds = [kind for kind in LISTED_KINDS if kind in args.kinds] or LISTED_KINDS
    listing = registry_listing(kinds)
    print(json.dumps(listing, indent=2) if args.json else render_listing(listing), end="\n")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark.report import make_report
    from benchmark.tracking import connect

    grid = _load(args.grid, args.overrides)  # reads MLflow only: no data needed here
    uri = _apply_tracking(grid, args.tracking_uri)
    out_dir = Path(args.out) if args.out else Path("results") / grid.name
    published = Path(args.published) if args.published else None
    client = connect()
    status = make_report(client, grid, out_dir, published)
    if status == 0:
        _print_browse_hint(client, grid, uri)
    return status


def _print_browse_hint(client: MlflowClient, grid: Grid, uri: str) -> None:
    """Where the grid's runs are in the MLflow UI (:mod:`benchmark.mlflow_links`)."""
    from benchmark.mlflow_links import browse_hint
    from benchmark.tracking import experiment_id

    print(browse_hint(uri, experiment_id(client, grid.name)))


def cmd_compare(args: argparse.Namespace) -> int:
    """Line up the grid's finished cells in its store (A) and in ``--other`` (B)."""
    from benchmark.compare import compare_stores, describe
    from benchmark.tracking import connect, finished_cell_runs, store_client

    grid = _load(args.grid, args.overrides)  # reads MLflow only: no data needed here
    uri = _apply_tracking(grid, args.tracking_uri)
    ours = finished_cell_runs(connect(), grid.name)
    theirs = finished_cell_runs(store_client(args.other), grid.name)
    comparison = compare_stores(ours, theirs)
    print(f"grid {grid.name!r}: A = {uri}, B = {args.other}")
    print("\n".join(describe(comparison)))
    return comparison.exit_status


def cmd_mlflow_server(args: argparse.Namespace) -> int:
    from benchmark.mlflow_server import ServerSettings, serve

    try:
        settings = ServerSettings(
            Path(args.store), args.backend_uri, args.host, args.port, args.workers
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return serve(settings, Path(args.pid_file) if args.pid_file else None)


COMMANDS = {
    "list": cmd_list,
    "validate": cmd_validate,
    "run": cmd_run,
    "preflight": cmd_preflight,
    "status": cmd_status,
    "mlflow-server": cmd_mlflow_server,
    "report": cmd_report,
    "compare": cmd_compare,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``asvp-bench`` parser (:func:`benchmark.cli_parser.build_parser`)."""
    return cli_parser.build_parser(COMMANDS)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        return _closed_pipe()
    return status


def _closed_pipe() -> int:
    """The reader of our output went away (``| head``): stop quietly, as ``cat`` does.

    Python's own advice (the ``signal`` module's documentation, "Note on SIGPIPE"): point
    stdout at devnull, so that the final flush at exit raises nothing, and exit 141 (128 +
    SIGPIPE, what a shell reports for a process killed by the signal)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    raise SystemExit(main())
