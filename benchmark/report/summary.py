"""Per-seed metrics and the Table 2 view: sample-saving ratio and total cost per strategy x
pipeline, from the curves of :mod:`benchmark.report.curves`.

Per seed, each curve is compared with the seed-mean curve of the random baseline (DESIGN.md,
"Metrics"): :func:`seed_summaries` computes one row of metrics per run, :func:`table2`
aggregates them into cells of mean +- std over seeds and, where fewer seeds than all reach the
random baseline's accuracy, how many did; :func:`discrepancy_table` averages the proxy cells'
selection-discrepancy regions; :func:`log_summaries` writes the per-seed metrics back into each
run. The definitions are this project's (the paper's formulas are not public).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from asvp.costs import cumulative_sampling_hours, total_cost
from asvp.metrics import (
    accuracy_at,
    area_under_budget_curve,
    budget_to_reach,
    mean_std,
    sample_saving_ratio,
)
from benchmark.grid import FULL_DATA, RANDOM, Costs
from benchmark.report.curves import DISCREPANCY_FIELDS, CellCurve
from benchmark.report.significance import (
    PAIRED_COLUMNS,
    REFERENCE_FAMILIES,
    confidence_interval,
    marker,
    win_counts,
    within_noise,
)
from benchmark.tracking import MlflowClient, log_changed_values

SUMMARY_METRICS = (
    "ssr",
    "total_cost_usd",
    "labelling_cost_usd",
    "training_cost_usd",
    "sampling_hours",
    "aubc",
    "final_acc",
    "cost_saving_vs_random",
)
"""The per-seed metrics :func:`log_summaries` writes into each run (and the names the published
values use, :mod:`benchmark.published`). ``sampling_hours`` is the run's whole sampling compute
(to its last budget); ``training_cost_usd`` is the sampling compute up to ``n`` x its price."""


class ReportError(ValueError):
    """The finished runs cannot be reported (no random baseline, a device without a price)."""


def _device_price(costs: Costs, device: str, source: str) -> float:
    if device not in costs.device_hour:
        raise ReportError(
            f"{source}: costs.device_hour has no price for device {device!r} "
            f"(runs ran on it); known: {sorted(costs.device_hour)}"
        )
    return costs.device_hour[device]


def _family_order(curve: CellCurve) -> int:
    """Random baseline first, the full-data cell next, then the grid's order."""
    return {RANDOM: 0, FULL_DATA: 1}.get(curve.cell.config.pipeline, 2)


def seed_summaries(curves: list[CellCurve], costs: Costs, source: str = "grid") -> pd.DataFrame:
    """One row per run: its metrics against its dataset's seed-mean random baseline.

    Columns: dataset, pipeline (label), strategy (label), family (``CellConfig.pipeline``), seed,
    run_id, device, hardware (its label), device_hour_price, reference_budget (B, the random
    baseline's last budget), reference_acc (a*), labels_needed (n), the
    :data:`SUMMARY_METRICS`, eval_hours, eval_cost_usd and updates_at. Labelling cost = n x
    label price x reviews; training cost = total cost (:func:`asvp.costs.total_cost`) -
    labelling cost. NaN where a run never reaches a*, and for a full-data run everything but
    its accuracy. Rows: per dataset (sorted), random first, full-data next, then the order of
    ``curves``. ``source`` names the grid in errors.
    """
    rows = []
    for dataset in sorted({c.cell.dataset_label for c in curves}):
        mine = sorted((c for c in curves if c.cell.dataset_label == dataset), key=_family_order)
        randoms = [c for c in mine if c.cell.config.pipeline == RANDOM]
        if not randoms:
            raise ReportError(f"{source}: no finished random-baseline run for {dataset}")
        random_budgets = randoms[0].budgets
        random_acc = np.mean([c.acc for c in randoms], axis=0)
        reference = float(random_budgets[-1])
        target = accuracy_at(random_budgets, random_acc, reference)
        random_cost = float(np.mean([_costs_at(c, reference, costs, source)[2] for c in randoms]))
        for c in mine:
            full = c.cell.config.pipeline == FULL_DATA
            n = math.nan if full else budget_to_reach(c.budgets, c.acc, target)
            labelling, training, total = _costs_at(c, n, costs, source)
            price = _device_price(costs, c.device, source)
            eval_hours = float(np.sum(c.evaluation_seconds)) / 3600.0
            curve_metrics = (  # not defined for the full-data cell's single budget
                {"ssr": math.nan, "aubc": math.nan}
                if full
                else {
                    "ssr": sample_saving_ratio(c.budgets, c.acc, random_budgets, random_acc),
                    "aubc": area_under_budget_curve(c.budgets, c.acc),
                }
            )
            rows.append(
                {
                    "dataset": dataset,
                    "pipeline": c.cell.pipeline_label,
                    "strategy": c.cell.strategy_label,
                    "family": c.cell.config.pipeline,
                    "seed": c.cell.config.seed,
                    "run_id": c.run_id,
                    "device": c.device,
                    "hardware": c.hardware,
                    "device_hour_price": price,
                    "reference_budget": reference,
                    "reference_acc": target,
                    "labels_needed": n,
                    **curve_metrics,
                    "total_cost_usd": total,
                    "labelling_cost_usd": labelling,
                    "training_cost_usd": training,
                    "sampling_hours": float(cumulative_sampling_hours(c.sampling_seconds)[-1]),
                    "final_acc": float(c.acc[-1]),
                    "cost_saving_vs_random": 1.0 - total / random_cost if random_cost else math.nan,
                    "eval_hours": eval_hours,
                    "eval_cost_usd": eval_hours * price,
                    "updates_at": c.updates_at,
                }
            )
    return pd.DataFrame(rows)


def _costs_at(
    curve: CellCurve, labels: float, costs: Costs, source: str
) -> tuple[float, float, float]:
    """Labelling, training (sampling compute) and total cost (USD) of ``labels`` labels."""
    price = _device_price(costs, curve.device, source)
    hours = cumulative_sampling_hours(curve.sampling_seconds)
    total = total_cost(
        labels, curve.budgets, hours, costs.label_price, costs.reviews_per_label, price
    )
    labelling = labels * costs.label_price * costs.reviews_per_label
    return labelling, total - labelling, total


def _fmt(
    values: pd.Series, total: int, digits: int, prefix: str = "", interval: bool = False
) -> str:
    """``mean ± std`` over the finite ``values`` and, with ``interval`` when every seed has a
    value, the 95% confidence interval ``[low, high]``; ``(k/N reached)`` when only k of the N
    seeds have one (no interval then: the seeds that never reached have no SSR, and an interval
    of the others would flatter the row); a lone value alone (no spread to show)."""
    mean, std, count = mean_std(values)
    if count == 0:
        return f"n/a (0/{total} reached)" if total else "n/a"
    text = f"{prefix}{mean:.{digits}f}"
    if count > 1:
        text += f" ± {std:.{digits}f}"
    bounds = confidence_interval(values) if interval and count == total else None
    if bounds is not None:
        text += f" [{prefix}{bounds[0]:.{digits}f}, {prefix}{bounds[1]:.{digits}f}]"
    return text + (f" ({count}/{total} reached)" if count < total else "")


@dataclass(frozen=True)
class ReportTable:
    """The table's rows and, per dataset, the random reference accuracy a* they are read at
    (and the full-data upper bound where the grid has one); ``hardware``: how many of the
    table's runs each hardware label computed, most first (DESIGN.md, "Numbers that mean one
    thing": kernels differ between machines, so a table says which made it).
    ``within_noise``: the pairs of pipelines no budget's paired test separates
    (:func:`~benchmark.report.significance.within_noise`); ``ssr_within_noise``: the rows whose
    SSR interval includes 0 (no evidence of fewer, or more, labels than random)."""

    rows: pd.DataFrame
    references: list[str]
    hardware: dict[str, int] = field(default_factory=dict)
    within_noise: list[str] = field(default_factory=list)
    ssr_within_noise: list[str] = field(default_factory=list)


# Table column -> (summary column, digits, prefix, with a 95% interval); the full-data row
# shows only accuracy. Hours are measurements of one run, not estimates of a mean: no interval.
_TABLE_COLUMNS = {
    "SSR": ("ssr", 3, "", True),
    "total cost (USD)": ("total_cost_usd", 2, "$", True),
    "cost saving vs random": ("cost_saving_vs_random", 3, "", True),
    "AUBC": ("aubc", 3, "", True),
    "final acc": ("final_acc", 3, "", True),
    "sampling h": ("sampling_hours", 4, "", False),
    "eval-only h": ("eval_hours", 4, "", False),
    "eval-only cost (USD)": ("eval_cost_usd", 4, "$", False),
}
_FULL_DATA_COLUMNS = ("final acc", "eval-only h", "eval-only cost (USD)")


def table2(summaries: pd.DataFrame, paired: pd.DataFrame | None = None) -> ReportTable:
    """One row per dataset x pipeline x strategy (random first), cells mean ± std and 95%
    interval over seeds; with ``paired`` (:func:`~benchmark.report.significance.paired_tests`),
    a ``vs <pipeline>`` column per SVPp and standard-AL pipeline holding each row's
    :func:`~benchmark.report.significance.marker` against it; the runs counted per hardware."""
    counts = win_counts(paired if paired is not None else pd.DataFrame(columns=PAIRED_COLUMNS))
    versus = _reference_pipelines(summaries, counts)
    rows = []
    references: list[str] = []
    ssr_within_noise: list[str] = []
    keys = ["dataset", "pipeline", "strategy"]
    for (dataset, pipeline, strategy), members in summaries.groupby(keys, sort=False):
        family = members["family"].iloc[0]
        total = len(members)
        row = {"dataset": dataset, "pipeline": pipeline, "strategy": strategy, "seeds": total}
        for column, (name, digits, prefix, interval) in _TABLE_COLUMNS.items():
            shown = family != FULL_DATA or column in _FULL_DATA_COLUMNS
            row[column] = _fmt(members[name], total, digits, prefix, interval) if shown else ""
        updates = sorted(set(members["updates_at"]))
        row["feature updates at"] = "; ".join(updates) if family == "asvp" else ""
        for against in versus:
            row[f"vs {against}"] = _marker_cell(counts, dataset, strategy, pipeline, against)
        bounds = confidence_interval(members["ssr"])
        reached = members["ssr"].notna().all()
        if family != RANDOM and reached and bounds is not None and bounds[0] <= 0.0 <= bounds[1]:
            ssr_within_noise.append(f"{dataset} {pipeline} {strategy}")
        rows.append(row)
    for dataset, members in summaries.groupby("dataset", sort=False):
        first = members.iloc[0]
        references.append(
            f"{dataset}: random seed-mean accuracy at B={int(first['reference_budget'])} "
            f"is {first['reference_acc']:.3f}"
        )
        full = members[members["family"] == FULL_DATA]
        if not full.empty:
            references.append(
                f"{dataset}: full-data upper bound ({full['pipeline'].iloc[0]}, "
                f"{len(full)} seed(s)) is {full['final_acc'].mean():.3f}"
            )
    return ReportTable(
        pd.DataFrame(rows),
        references,
        hardware_counts(summaries["hardware"]),
        within_noise(counts),
        ssr_within_noise,
    )


def hardware_counts(labels: Iterable[str]) -> dict[str, int]:
    """How many runs each hardware label computed, most first (then by label)."""
    counts = Counter(labels)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _reference_pipelines(summaries: pd.DataFrame, counts: pd.DataFrame) -> list[str]:
    """The pipeline labels Table 2 compares every row with: those of the SVPp, then the
    standard-AL family that were tested against something."""
    tested = set(counts["against"])
    labels = summaries.drop_duplicates("pipeline")
    return [
        label
        for family in REFERENCE_FAMILIES
        for label in labels.loc[labels["family"] == family, "pipeline"]
        if label in tested
    ]


def _marker_cell(
    counts: pd.DataFrame, dataset: str, strategy: str, pipeline: str, against: str
) -> str:
    """The marker of ``pipeline`` against ``against`` for one strategy; "" when not compared."""
    match = counts[
        (counts["dataset"] == dataset)
        & (counts["strategy"] == strategy)
        & (counts["pipeline"] == pipeline)
        & (counts["against"] == against)
    ]
    if match.empty:
        return ""
    row = match.iloc[0]
    return marker(int(row["better"]), int(row["worse"]), int(row["budgets"]), int(row["seeds"]))


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
            key = (curve.cell.dataset_label, curve.cell.pipeline_label, curve.cell.strategy_label)
            groups.setdefault(key, []).append(curve)
    for (dataset, pipeline, strategy), members in groups.items():
        steps = sorted(set.intersection(*(set(c.discrepancy["both"]) for c in members)))
        for labels in steps:
            row = {"dataset": dataset, "pipeline": pipeline, "strategy": strategy}
            row |= {"labels": labels, "seeds": len(members)}
            for name in DISCREPANCY_FIELDS:
                row[name] = round(float(np.mean([c.discrepancy[name][labels] for c in members])), 3)
            rows.append(row)
    return pd.DataFrame(rows)


def log_summaries(client: MlflowClient, summaries: pd.DataFrame) -> int:
    """Log each run's :data:`SUMMARY_METRICS` into that run; return how many values were logged.

    Step = the reference budget B the metrics are read at. NaN values are skipped (an undefined
    SSR is not a number to plot). Idempotent: a value equal to the run's latest value of that
    metric is not logged again, so re-running ``report`` adds nothing; a changed value (more
    seeds finished, so a* moved) is appended and becomes the latest, which ``mlflow ui`` shows.
    A value that became NaN leaves the older one in place (MLflow cannot delete metric values).
    """
    logged = 0
    stamp = int(time.time() * 1000)
    for row in summaries.itertuples(index=False):
        if not row.run_id:
            continue
        values = {name: getattr(row, name) for name in SUMMARY_METRICS}
        finite = {name: value for name, value in values.items() if math.isfinite(value)}
        logged += log_changed_values(client, row.run_id, finite, int(row.reference_budget), stamp)
    return logged
