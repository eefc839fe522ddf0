"""Many cells logging at once to one tracking store, without training: the load of a grid's jobs.

``python tests/tracking_writers.py URI GRID COUNT PROGRESS [--pause S]`` imports the project's
tracking code once (3-4 s on a 2-core machine), then forks COUNT processes, one per cell of the
grid file (its first COUNT cells). Each writes what a real cell writes, through
:mod:`benchmark.tracking`: opens the cell's run (``open_run``), starts a
:class:`~benchmark.tracking.CellLogger`, logs every round (a batch of metrics stepped by labels
and the round's JSON artifact), sleeps ``--pause`` seconds between rounds as if it trained, and
finishes (curve, labelled order, tags and one dataset array). The values are made up but fixed
by the cell (:func:`cell_result`), so a test can check every one of them afterwards. A file
``PROGRESS/<cell>-<round>`` appears once a round is logged and ``PROGRESS/<cell>-done`` once the
run is finished, so a test can act mid-run; a failing writer leaves its traceback in
``PROGRESS/<cell>-error``. Prints the wall seconds from the forks to the last writer's end;
exits 0 when every writer finished.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from asvp.discrepancy import SelectionDiscrepancy
from asvp.pipelines import CellResult, RoundRecord
from asvp.trigger import UpdateDecision
from benchmark.grid import Cell, expand_cells, load_grid
from benchmark.tracking import CellLogger, connect, open_run, use_store

PHASES = ("extract_features", "proxy_train", "pool_score", "finetune", "evaluate")
POOL = 5000


def _rng(cell: Cell, *parts: object) -> np.random.Generator:
    digest = hashlib.sha256(":".join(map(str, (cell.run_key, *parts))).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def cell_result(cell: Cell) -> CellResult:
    """The rounds a cell logs (``finished_at_ms`` 0: stamped when logged) and its result, made
    up from its run key: asvp cells carry an indicator reading, svpp cells a discrepancy."""
    budgets = cell.config.budgets
    order = _rng(cell, "order").choice(POOL, size=budgets[-1], replace=False).tolist()
    rounds = []
    for index, labels in enumerate(budgets):
        rng = _rng(cell, "round", index)
        seconds = {phase: float(rng.uniform(0.1, 30.0)) for phase in PHASES}
        start = budgets[index - 1] if index else 0
        indicator = discrepancy = None
        if cell.config.pipeline == "asvp":
            value = float(rng.uniform(0, 1))
            indicator = UpdateDecision(value, 0.5, value > 0.5, "threshold")
        if cell.config.pipeline == "svpp":
            counts = [int(n) for n in rng.integers(0, 10, size=6)]
            discrepancy = SelectionDiscrepancy(*counts, overlap=float(rng.uniform(0, 1)))
        rounds.append(
            RoundRecord(
                round=index,
                labels=labels,
                test_acc=float(rng.uniform(0.1, 0.99)),
                train_method=cell.config.train_method,
                seconds=seconds,
                sampling_seconds=sum(seconds.values()) - seconds["evaluate"],
                evaluation_seconds=seconds["evaluate"],
                selected=order[start:labels],
                feature_version=int(indicator is not None and indicator.update),
                indicator=indicator,
                model_selected=order[start:labels][::-1],
                discrepancy=discrepancy,
            )
        )
    kept = np.arange(0, 2 * POOL, 2, dtype=np.int64)
    return CellResult(rounds, order, 0, {"kept_indices": kept}, f"sha256-{cell.run_key}")


def write_cell(grid_name: str, cell: Cell, index: int, progress: Path, pause: float) -> None:
    """Log one cell's run into the store MLflow points at, as a job of a grid would."""
    client = connect()
    run_id = open_run(client, grid_name, cell, None, fresh=False)
    logger = CellLogger(client, grid_name, run_id, "cpu")
    result = cell_result(cell)
    for number, record in enumerate(result.rounds):
        if number:
            time.sleep(pause)
        record.finished_at_ms = int(time.time() * 1000)
        logger.log_round(record)
        (progress / f"{index}-{number}").touch()
    logger.finish(result)
    (progress / f"{index}-done").touch()


def _child(grid_name: str, cell: Cell, index: int, progress: Path, pause: float) -> int:
    try:
        write_cell(grid_name, cell, index, progress, pause)
        return 0
    except BaseException:
        (progress / f"{index}-error").write_text(traceback.format_exc())
        return 1


def run_writers(uri: str, grid: Path, count: int, progress: Path, pause: float) -> int:
    """Fork ``count`` writers, one per cell, wait for all; the number that failed."""
    use_store(uri)
    loaded = load_grid(grid)
    cells = expand_cells(loaded)[:count]
    if len(cells) < count:
        raise SystemExit(f"{grid} has {len(cells)} cells, fewer than the {count} asked for")
    progress.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    began = time.perf_counter()
    children = []
    for index, cell in enumerate(cells):
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code
            os._exit(_child(loaded.name, cell, index, progress, pause))
        children.append(pid)
    failed = sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in children)
    print(f"{count} writers done in {time.perf_counter() - began:.1f} s, {failed} failed")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri", help="tracking URI (http://host:port, sqlite:///...)")
    parser.add_argument("grid", type=Path, help="grid file whose first COUNT cells write")
    parser.add_argument("count", type=int)
    parser.add_argument("progress", type=Path, help="folder of the progress marker files")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between rounds")
    args = parser.parse_args(argv)
    return min(1, run_writers(args.uri, args.grid, args.count, args.progress, args.pause))


if __name__ == "__main__":
    sys.exit(main())
