"""The report's input: each finished run's curve, read back from MLflow through
:mod:`benchmark.tracking`.

Only the grid's finished runs of the run keys of the grid as it is now are read, so runs of an
older configuration never mix in; a rerun's latest value per step wins. Each metric is read for
up to 100 runs per request (:func:`benchmark.tracking.metric_histories`), not run by run.
Everything the report computes (:mod:`benchmark.report.summary`) starts from the
:class:`CellCurve` list here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from asvp.discrepancy import SelectionDiscrepancy
from benchmark import metric_names as names
from benchmark.grid import FULL_DATA, Cell, Grid
from benchmark.tracking import HARDWARE_TAG, MlflowClient, Run, finished_runs, metric_histories

DISCREPANCY_FIELDS = tuple(f.name for f in dataclasses.fields(SelectionDiscrepancy))
"""The selection-discrepancy regions a proxy cell logs (``discrepancy_<field>`` metrics)."""

UNKNOWN_HARDWARE = "unknown (not recorded)"
"""The hardware of a run made before runs recorded theirs (no ``env.hardware`` tag)."""


@dataclass(frozen=True)
class CellCurve:
    """One finished run's curve, read back from MLflow.

    A full-data cell (``cell.config.pipeline == "full"``) has one budget, the pool size.
    ``hardware`` is the label of what computed it (:func:`asvp.environment.hardware_label`).
    """

    cell: Cell
    budgets: np.ndarray
    acc: np.ndarray
    sampling_seconds: np.ndarray
    evaluation_seconds: np.ndarray
    device: str
    updates_at: str
    discrepancy: dict[str, dict[int, float]]  # metric name -> labels -> value (proxy cells)
    run_id: str = ""
    hardware: str = UNKNOWN_HARDWARE


def _at(values: dict[int, float], budgets: np.ndarray, default: float | None) -> np.ndarray:
    """The logged value at each budget; ``default`` where none was logged (None: required)."""
    return np.array([values[b] if default is None else values.get(b, default) for b in budgets])


def read_curves(client: MlflowClient, grid: Grid, cells: list[Cell]) -> list[CellCurve]:
    """Curves of the cells that have a finished run (a rerun's latest value per step wins).

    A full-data cell has no budget schedule: its budgets are the steps it logged ``test_acc``
    at (the pool size); it selects nothing, so a sampling time it did not log is 0, and an
    evaluation time it did not log is unknown (NaN).
    """
    runs = finished_runs(client, grid.name)
    chosen = [(cell, runs[cell.run_key]) for cell in cells if cell.run_key in runs]
    read = [run for _, run in chosen]
    wanted = [names.TEST_ACC, names.SAMPLING_SECONDS, names.EVALUATION_SECONDS]
    wanted += [names.discrepancy(field) for field in DISCREPANCY_FIELDS]
    histories = {name: metric_histories(client, read, name) for name in wanted}  # bulk reads
    return [_curve(cell, run, histories) for cell, run in chosen]


def _curve(cell: Cell, run: Run, histories: dict[str, dict[str, dict[int, float]]]) -> CellCurve:
    """One finished run's curve from the metrics' values per step, by metric name and run id
    (:func:`benchmark.tracking.metric_histories`: names as the run logged them)."""
    logged = run.data.metrics

    def history(name: str) -> dict[int, float]:
        return histories[name][run.info.run_id]

    acc = history(names.TEST_ACC)
    full = cell.config.pipeline == FULL_DATA
    budgets = np.array(sorted(acc) if full else cell.config.budgets)
    regions = {field: names.discrepancy(field) for field in DISCREPANCY_FIELDS}
    return CellCurve(
        cell=cell,
        budgets=budgets,
        acc=_at(acc, budgets, None),
        sampling_seconds=_at(history(names.SAMPLING_SECONDS), budgets, 0.0 if full else None),
        evaluation_seconds=_at(
            history(names.EVALUATION_SECONDS), budgets, math.nan if full else None
        ),
        device=run.data.tags.get("device", "cpu"),
        updates_at=run.data.tags.get("feature_updates_at", ""),
        discrepancy={
            field: history(name)
            for field, name in regions.items()
            if names.logged_name(name, logged) in logged
        },
        run_id=run.info.run_id,
        hardware=run.data.tags.get(HARDWARE_TAG, UNKNOWN_HARDWARE),
    )
