"""The Table 2 view: sample-saving ratio and total cost per strategy x pipeline, from MLflow.

Everything is read back from the grid's finished MLflow runs (nothing from memory), limited to
the run keys of the grid as it is now, so runs of an older configuration never mix in. Per
seed, each curve is compared with the seed-mean curve of the random baseline (DESIGN.md,
"Metrics"); cells show mean +- std over seeds and, where fewer seeds than all reach the random
baseline's accuracy, how many did. The definitions are this project's (the paper's formulas are
not public); the table says so and prints the prices used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from asvp.costs import cumulative_sampling_hours, total_cost
from asvp.discrepancy import SelectionDiscrepancy
from asvp.metrics import (
    accuracy_at,
    area_under_budget_curve,
    budget_to_reach,
    mean_std,
    sample_saving_ratio,
)
from benchmark.grid import Cell, Grid
from benchmark.tracking import finished_runs

DEFINITIONS_NOTE = (
    "Definitions are asvp-bench's own (the paper's formulas are not public): SSR = 1 - n/B, "
    "n = labels at which the curve first reaches the seed-mean random accuracy at B "
    "(piecewise-linear); total cost = n x label price x reviews + sampling device-hours up to n "
    "x device-hour price; evaluation-only fine-tuning (all budgets) is excluded and shown apart."
)


DISCREPANCY_FIELDS = tuple(f.name for f in dataclasses.fields(SelectionDiscrepancy))


DISCREPANCY_NOTE = (
    "Seed means. At each budget where the proxy selected, the model just fine-tuned on the same "
    "labelled set selected with the same strategy and random stream: both = picked by both, "
    "proxy_only / model_only = by one of them; *_proxy_correct = how many of those the proxy "
    "classifies correctly; overlap = both / batch size (the paper's Figures 4-5).\n"
)


@dataclass(frozen=True)
class CellCurve:
    """One finished run's curve, read back from MLflow."""

    cell: Cell
    budgets: np.ndarray
    acc: np.ndarray
    sampling_seconds: np.ndarray
    evaluation_seconds: np.ndarray
    device: str
    updates_at: str
    discrepancy: dict[str, dict[int, float]]  # metric name -> labels -> value (proxy cells)


def _last_per_step(client: MlflowClient, run_id: str, metric: str) -> dict[int, float]:
    history = sorted(client.get_metric_history(run_id, metric), key=lambda m: m.timestamp)
    return {m.step: m.value for m in history}


def read_curves(client: MlflowClient, grid: Grid, cells: list[Cell]) -> list[CellCurve]:
    """Curves of the cells that have a finished run (a rerun's latest value per step wins)."""
    curves = []
    runs = finished_runs(client, grid.name)
    for cell in cells:
        run = runs.get(cell.run_key)
        if run is None:
            continue
        acc = _last_per_step(client, run.info.run_id, "test_acc")
        sampling = _last_per_step(client, run.info.run_id, "sampling_seconds")
        evaluation = _last_per_step(client, run.info.run_id, "evaluation_seconds")
        budgets = np.array(cell.config.budgets)
        discrepancy = {
            name: _last_per_step(client, run.info.run_id, f"discrepancy_{name}")
            for name in DISCREPANCY_FIELDS
            if f"discrepancy_{name}" in run.data.metrics
        }
        curves.append(
            CellCurve(
                cell=cell,
                budgets=budgets,
                acc=np.array([acc[b] for b in budgets]),
                sampling_seconds=np.array([sampling[b] for b in budgets]),
                evaluation_seconds=np.array([evaluation[b] for b in budgets]),
                device=run.data.tags.get("device", "cpu"),
                updates_at=run.data.tags.get("feature_updates_at", ""),
                discrepancy=discrepancy,
            )
        )
    return curves


def _row_label(cell: Cell) -> tuple[str, str, str]:
    config = cell.config
    return config.dataset, cell.pipeline_label, cell.strategy_label


def _fmt(mean: float, std: float, count: int, total: int, digits: int, prefix: str = "") -> str:
    if count == 0:
        return f"n/a (0/{total} reached)" if total else "n/a"
    text = f"{prefix}{mean:.{digits}f} ± {std:.{digits}f}"
    return text + (f" ({count}/{total} reached)" if count < total else "")


def _device_price(grid: Grid, device: str) -> float:
    prices = grid.costs.device_hour
    if device not in prices:
        raise ValueError(
            f"{grid.path}: costs.device_hour has no price for device {device!r} "
            f"(runs ran on it); known: {sorted(prices)}"
        )
    return prices[device]


@dataclass(frozen=True)
class ReportTable:
    """The table's rows and, per dataset, the random reference accuracy a* they are read at."""

    rows: pd.DataFrame
    references: list[str]


def table2(grid: Grid, curves: list[CellCurve]) -> ReportTable:
    """One row per dataset x pipeline x strategy, random baseline first."""
    costs = grid.costs
    rows = []
    references: list[str] = []
    for dataset in sorted({c.cell.config.dataset for c in curves}):
        mine = [c for c in curves if c.cell.config.dataset == dataset]
        randoms = [c for c in mine if c.cell.config.pipeline == "random"]
        if not randoms:
            raise ValueError(f"{grid.path}: no finished random-baseline run for {dataset}")
        random_budgets = randoms[0].budgets
        random_acc = np.mean([c.acc for c in randoms], axis=0)
        reference = float(random_budgets[-1])
        target = accuracy_at(random_budgets, random_acc, reference)
        random_cost = np.mean(
            [
                total_cost(
                    reference,
                    c.budgets,
                    cumulative_sampling_hours(c.sampling_seconds),
                    costs.label_price,
                    costs.reviews_per_label,
                    _device_price(grid, c.device),
                )
                for c in randoms
            ]
        )
        groups: dict[tuple[str, str, str], list[CellCurve]] = {}
        for curve in sorted(mine, key=lambda c: (c.cell.config.pipeline != "random",)):
            groups.setdefault(_row_label(curve.cell), []).append(curve)
        for (dataset_name, pipeline, strategy), members in groups.items():
            ssr, cost, saving, aubc, hours, eval_hours, eval_cost = [], [], [], [], [], [], []
            for c in members:
                cumulative = cumulative_sampling_hours(c.sampling_seconds)
                n = budget_to_reach(c.budgets, c.acc, target)
                ssr.append(sample_saving_ratio(c.budgets, c.acc, random_budgets, random_acc))
                price = _device_price(grid, c.device)
                cost.append(
                    total_cost(
                        n, c.budgets, cumulative, costs.label_price, costs.reviews_per_label, price
                    )
                )
                saving.append(1.0 - cost[-1] / random_cost if random_cost else float("nan"))
                aubc.append(area_under_budget_curve(c.budgets, c.acc))
                hours.append(float(cumulative[-1]))
                eval_hours.append(float(np.sum(c.evaluation_seconds)) / 3600.0)
                eval_cost.append(eval_hours[-1] * price)
            total = len(members)
            rows.append(
                {
                    "dataset": dataset_name,
                    "pipeline": pipeline,
                    "strategy": strategy,
                    "seeds": total,
                    "SSR": _fmt(*mean_std(ssr), total, 3),
                    "total cost (USD)": _fmt(*mean_std(cost), total, 2, "$"),
                    "cost saving vs random": _fmt(*mean_std(saving), total, 3),
                    "AUBC": _fmt(*mean_std(aubc), total, 3),
                    "final acc": _fmt(*mean_std([c.acc[-1] for c in members]), total, 3),
                    "sampling h": _fmt(*mean_std(hours), total, 4),
                    "eval-only h": _fmt(*mean_std(eval_hours), total, 4),
                    "eval-only cost (USD)": _fmt(*mean_std(eval_cost), total, 4, "$"),
                    "feature updates at": "; ".join(sorted({c.updates_at for c in members}))
                    if pipeline.startswith("asvp")
                    else "",
                }
            )
        references.append(
            f"{dataset}: random seed-mean accuracy at B={int(reference)} is {target:.3f}"
        )
    return ReportTable(pd.DataFrame(rows), references)


def discrepancy_table(curves: list[CellCurve]) -> pd.DataFrame:
    """The selection-discrepancy regions (the paper's Figures 4-5) per proxy cell and budget.

    One row per dataset x pipeline x strategy x labels at which the proxy selected: the
    seed-mean of each region's count (``both``, ``proxy_only``, ``model_only`` and how many of
    each the proxy classifies correctly) and of the overlap fraction.
    """
    rows = []
    groups: dict[tuple[str, str, str], list[CellCurve]] = {}
    for curve in curves:
        if curve.discrepancy:
            groups.setdefault(_row_label(curve.cell), []).append(curve)
    for (dataset, pipeline, strategy), members in groups.items():
        steps = sorted(set.intersection(*(set(c.discrepancy["both"]) for c in members)))
        for labels in steps:
            row = {"dataset": dataset, "pipeline": pipeline, "strategy": strategy}
            row |= {"labels": labels, "seeds": len(members)}
            for name in DISCREPANCY_FIELDS:
                row[name] = round(float(np.mean([c.discrepancy[name][labels] for c in members])), 3)
            rows.append(row)
    return pd.DataFrame(rows)


def caption(grid: Grid, references: list[str]) -> str:
    costs = grid.costs
    prices = ", ".join(f"{k}: ${v}/device-hour" for k, v in sorted(costs.device_hour.items()))
    note = f" {costs.note}" if costs.note else ""
    return (
        f"Grid `{grid.name}`. Prices: ${costs.label_price} per label x {costs.reviews_per_label} "
        f"review(s); {prices}.{note}\n\nReference (a*): {'; '.join(references)}.\n\n"
        f"{DEFINITIONS_NOTE}"
    )


def write_report(
    grid: Grid, table: ReportTable, out_dir: Path, discrepancy: pd.DataFrame | None = None
) -> str:
    """Write ``table2.csv`` and ``table2.md`` (and, when given and not empty,
    ``discrepancy.csv`` and ``discrepancy.md``) into ``out_dir``; return the Table 2 Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = table.rows.fillna("")
    shown.to_csv(out_dir / "table2.csv", index=False)
    markdown = _markdown(shown) + "\n\n" + caption(grid, table.references) + "\n"
    (out_dir / "table2.md").write_text(markdown)
    if discrepancy is not None and not discrepancy.empty:
        discrepancy.to_csv(out_dir / "discrepancy.csv", index=False)
        (out_dir / "discrepancy.md").write_text(_markdown(discrepancy) + "\n\n" + DISCREPANCY_NOTE)
    return markdown


def _markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])
