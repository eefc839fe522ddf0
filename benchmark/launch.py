"""Executors: run a grid's pending cells, each in its own process, and record them in MLflow.

``local`` runs at most ``max_parallel`` cells at once (default: the number of CPU cores), each
in a fresh process with ``cores // max_parallel`` torch threads, so that cells do not fight over
the cores and their timings stay meaningful. ``debug`` runs cells one after the other in this
process (for tests and for stepping through with a debugger). SLURM comes with submitit later.

A cell whose run key already has a finished run is skipped; an unfinished one is run again
into its existing run (never a second run).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import torch
from mlflow.tracking import MlflowClient

from asvp.features import FeatureStore
from asvp.pipelines import run_cell
from benchmark.grid import Cell, Grid
from benchmark.tracking import (
    STATE_FINISHED,
    CellLogger,
    experiment_id,
    find_cell_run,
    run_state,
)

EXECUTORS = ("local", "debug")


@dataclass(frozen=True)
class CellOutcome:
    cell: Cell
    status: str  # "finished" or "failed"
    error: str = ""


def device_kind() -> str:
    """The device a cell runs on, as named in the grid's ``costs.device_hour`` prices."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def execute_cell(
    cell: Cell, grid_name: str, tracking_uri: str | None, feature_store: str, threads: int
) -> CellOutcome:
    """Run one cell and record it; the unit of work of every executor."""
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    torch.set_num_threads(threads)
    device = device_kind()
    client = MlflowClient()
    logger = CellLogger(client, grid_name, cell, device)
    try:
        result = run_cell(cell.config, FeatureStore(feature_store), device, logger.log_round)
    except Exception:
        details = traceback.format_exc()
        logger.fail(details)
        return CellOutcome(cell, "failed", details)
    logger.finish(result)
    return CellOutcome(cell, STATE_FINISHED)


def pending_cells(cells: list[Cell], grid_name: str, force: bool = False) -> list[Cell]:
    """The cells without a finished run (all of them with ``force``)."""
    if force:
        return list(cells)
    client = MlflowClient()
    return [
        cell
        for cell in cells
        if run_state(find_cell_run(client, grid_name, cell.run_key)) != STATE_FINISHED
    ]


def run_cells(
    grid: Grid,
    cells: list[Cell],
    executor: str,
    max_parallel: int | None,
    tracking_uri: str | None,
    report: Callable[[CellOutcome], None] = lambda outcome: None,
) -> list[CellOutcome]:
    """Run ``cells`` with the named executor; ``report`` is called as each one ends."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of {EXECUTORS}")
    cores = cpu_count()
    parallel = max(1, min(max_parallel or cores, len(cells) or 1))
    threads = max(1, cores // parallel)
    store = str(grid.feature_store)
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    experiment_id(MlflowClient(), grid.name)  # once here, not raced by the first cells
    outcomes = []
    if executor == "debug":
        for cell in cells:
            outcomes.append(execute_cell(cell, grid.name, tracking_uri, store, threads))
            report(outcomes[-1])
        return outcomes
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=context) as pool:
        futures = {
            pool.submit(execute_cell, cell, grid.name, tracking_uri, store, threads): cell
            for cell in cells
        }
        for future in as_completed(futures):
            outcomes.append(_outcome(future, futures[future]))
            report(outcomes[-1])
    return outcomes


def _outcome(future: Future, cell: Cell) -> CellOutcome:
    """A worker's outcome; an error outside the cell (tracking, a dead worker) fails the cell
    instead of stopping the grid."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001  (reported with its traceback, never swallowed)
        details = "".join(traceback.format_exception(error))
        return CellOutcome(cell, "failed", details)
