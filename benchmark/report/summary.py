"""Per-seed metrics and the Table 2 view: sample-saving ratio and total cost per strategy x
pipeline, from the curves of :mod:`benchmark.report.curves`.

Per seed, each curve is compared with the seed-mean curve of the random baseline (docs/design.md,
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
from benchmark.metric_names import SUMMARY_PREFIX
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
from benchmark.tracking.queries import latest_metrics

SUMMARY_METRICS = (
    "ssr",
    "total_cost_usd",
    "labelling_cost_usd",
    "training_cost_usd",
    "sampling_hours",
    "aubc",
    "final_acc",
    "cost_saving_vs_random",
    "saving_vs_random_usd",
)
"""The per-seed metrics :func:`log_summaries` writes into each run (and the names the published
values use, :mod:`benchmark.published`). ``sampling_hours`` is the run's whole sampling compute
(to its last budget); ``training_cost_usd`` is the sampling compute up to ``n`` x its price;
``saving_vs_random_usd`` is the paper's "equivalent saving amount" in dollars (our definition:
random's seed-mean total cost at B minus the run's total cost to reach a*)."""

RATIO_TO_RANDOM = ("ssr", "cost_saving_vs_random", "saving_vs_random_usd")
"""The metrics that compare a run with the random baseline: undefined for a random run itself
(it would be scored against its own seed mean), so neither shown nor logged for it."""


_REACH_METRICS = ("ssr", "total_cost_usd", "cost_saving_vs_random", "saving_vs_random_usd")
"""The metrics read where a run reaches a*: NaN in the seeds that never do."""


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

    Columns: dataset, pipeline (label), strategy (label), family (``CellConfig.pipeline``),
    train_method, seed, run_id, device, hardware (its label), device_hour_price,
    reference_budget (B, the random baseline's last budget), reference_acc (a*),
    reference_cost_usd (random's seed-mean total cost at B), labels_needed (n), the
    :data:`SUMMARY_METRICS`, cost_at_reference_usd, labelling_at_reference_usd and
    training_at_reference_usd (a random run's own costs at B, where the table and the cost
    figure show the reference; NaN for other runs), eval_hours, eval_cost_usd and updates_at.
    Labelling cost = n x label price x reviews; training cost = total cost
    (:func:`asvp.costs.total_cost`) - labelling cost. NaN where a run never reaches a*, and
    for a full-data run everything but its accuracy. Rows: per dataset (sorted), random first,
    full-data next, then the order of ``curves``. ``source`` names the grid in errors.
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
            random = c.cell.config.pipeline == RANDOM
            at_b = _costs_at(c, reference, costs, source) if random else (math.nan,) * 3
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
                    "train_method": c.cell.config.train_method,
                    "seed": c.cell.config.seed,
                    "run_id": c.run_id,
                    "device": c.device,
                    "hardware": c.hardware,
                    "device_hour_price": price,
                    "reference_budget": reference,
                    "reference_acc": target,
                    "reference_cost_usd": random_cost,
                    "labels_needed": n,
                    **curve_metrics,
                    "total_cost_usd": total,
                    "labelling_cost_usd": labelling,
                    "training_cost_usd": training,
                    "sampling_hours": float(cumulative_sampling_hours(c.sampling_seconds)[-1]),
                    "final_acc": float(c.acc[-1]),
                    "cost_saving_vs_random": 1.0 - total / random_cost if random_cost else math.nan,
                    "saving_vs_random_usd": random_cost - total,
                    "cost_at_reference_usd": at_b[2],
                    "labelling_at_reference_usd": at_b[0],
                    "training_at_reference_usd": at_b[1],
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


def _amount(value: float, digits: int, prefix: str) -> str:
    """``value`` with ``digits`` decimals after ``prefix`` (a minus sign before it: -$0.15)."""
    return f"{'-' if value < 0 else ''}{prefix}{abs(value):.{digits}f}"


def _fmt(
    values: pd.Series,
    total: int,
    digits: int,
    prefix: str = "",
    interval: bool = False,
    reach: bool = False,
) -> str:
    """``mean ± std`` over the finite ``values`` and, with ``interval`` when every seed has a
    value, the 95% confidence interval ``[low, high]``; a lone value alone (no spread to show).

    When only k of the N seeds have a value (``reach``: the k that reached a*), it says so in
    words that cannot be read as zero variance: ``(1 of 2 seeds reached a*; no spread)``, or
    ``mean ± std (over the k of N seeds that reached a*)``, and gives no interval (an interval
    of the seeds that reached would flatter the row)."""
    mean, std, count = mean_std(values)
    if count == 0:
        return f"never reached a* (0 of {total} seeds)" if reach and total else "n/a"
    text = _amount(mean, digits, prefix)
    if count > 1:
        text += f" ± {std:.{digits}f}"
    bounds = confidence_interval(values) if interval and count == total else None
    if bounds is not None:
        text += f" [{_amount(bounds[0], digits, prefix)}, {_amount(bounds[1], digits, prefix)}]"
    if count == total:
        return text
    which = "reached a*" if reach else "have a value"
    if count == 1:
        return f"{text} (1 of {total} seeds {which}; no spread)"
    return f"{text} (over the {count} of {total} seeds that {which})"


@dataclass(frozen=True)
class ReportTable:
    """The table's rows and, per dataset, the random reference accuracy a* they are read at
    (and the full-data upper bound where the grid has one); ``hardware``: how many of the
    table's runs each hardware label computed, most first (docs/design.md, "Numbers that mean one
    thing": kernels differ between machines, so a table says which made it).
    ``within_noise``: the pairs of pipelines no budget's paired test separates
    (:func:`~benchmark.report.significance.within_noise`); ``ssr_within_noise``: the rows whose
    SSR interval includes 0 (no evidence of fewer, or more, labels than random).
    ``numbers``: per row, the numbers behind the text cells that depend on reaching a*
    (``seeds_reached``, ``<metric>_mean`` and ``<metric>_std``), for the CSV; ``warnings``:
    lines to print under the table (rows that never reached a* in any seed)."""

    rows: pd.DataFrame
    references: list[str]
    hardware: dict[str, int] = field(default_factory=dict)
    within_noise: list[str] = field(default_factory=list)
    ssr_within_noise: list[str] = field(default_factory=list)
    numbers: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)


REFERENCE = "reference"
"""What the random baseline's row shows in the columns that compare with random."""

# Table column -> (summary column, digits, prefix, with a 95% interval); the full-data row
# shows only accuracy. Hours are measurements of one run, not estimates of a mean: no interval.
_TABLE_COLUMNS = {
    "SSR": ("ssr", 3, "", True),
    "total cost (USD)": ("total_cost_usd", 2, "$", True),
    "cost saving vs random": ("cost_saving_vs_random", 3, "", True),
    "saving vs random (USD)": ("saving_vs_random_usd", 2, "$", True),
    "AUBC": ("aubc", 3, "", True),
    "final acc": ("final_acc", 3, "", True),
    "sampling h": ("sampling_hours", 4, "", False),
    "eval-only h": ("eval_hours", 4, "", False),
    "eval-only cost (USD)": ("eval_cost_usd", 4, "$", False),
}
_FULL_DATA_COLUMNS = ("final acc", "eval-only h", "eval-only cost (USD)")
LP_FT_METHODS = ("lpft", "auto")
"""The train methods that train and evaluate with LP-FT (linear probe, then fine-tuning;
``auto`` until its features are updated): weaker than FT at few epochs and at the shared
first budget, which the table's warning and the accuracy figure's note say."""


def _cell_text(column: str, members: pd.DataFrame, family: str) -> str:
    """One text cell of Table 2: the random row is the reference (no ratio to itself; its total
    cost is its own at B), the full-data row shows accuracy and evaluation cost only."""
    name, digits, prefix, interval = _TABLE_COLUMNS[column]
    if family == FULL_DATA and column not in _FULL_DATA_COLUMNS:
        return ""
    if family == RANDOM and name in RATIO_TO_RANDOM:
        return REFERENCE
    if family == RANDOM and name == "total_cost_usd":
        name = "cost_at_reference_usd"
    reach = family != RANDOM and name in _REACH_METRICS
    return _fmt(members[name], len(members), digits, prefix, interval, reach)


def _row_numbers(members: pd.DataFrame, family: str) -> dict[str, float]:
    """The numbers behind a row's reach-dependent cells (NaN where the cell shows none)."""
    numbers: dict[str, float] = {"seeds_reached": math.nan}
    if family not in (RANDOM, FULL_DATA):
        numbers["seeds_reached"] = float(members["total_cost_usd"].notna().sum())
    for name in _REACH_METRICS:
        source = "cost_at_reference_usd" if family == RANDOM and name == "total_cost_usd" else name
        shown = family != FULL_DATA and not (family == RANDOM and name in RATIO_TO_RANDOM)
        mean, std, _ = mean_std(members[source]) if shown else (math.nan, math.nan, 0)
        numbers |= {f"{name}_mean": mean, f"{name}_std": std}
    return numbers


def _never_reached_warning(never: list[tuple[str, str]]) -> list[str]:
    """The line under the table naming the rows that never reached a* in any seed and what to
    check first (``never``: (row name, train method) pairs); none when every row reached."""
    if not never:
        return []
    text = (
        f"Warning: never reached a* in any seed: {'; '.join(name for name, _ in never)}. "
        "Check that fine-tuning reaches a* at these budgets at all (few fine-tuning epochs keep "
        "every selection below it) before reading it as the strategy's failure"
    )
    lp_ft = [name for name, method in never if method in LP_FT_METHODS]
    if lp_ft:
        text += (
            "; LP-FT evaluation (linear probe, then fine-tuning) can stay below FT at few "
            f"epochs, and these rows use it: {', '.join(lp_ft)}"
        )
    return [text + "."]


def table2(summaries: pd.DataFrame, paired: pd.DataFrame | None = None) -> ReportTable:
    """One row per dataset x pipeline x strategy (random first), cells mean ± std and 95%
    interval over seeds; with ``paired`` (:func:`~benchmark.report.significance.paired_tests`),
    a ``vs <pipeline>`` column per SVPp and standard-AL pipeline holding each row's
    :func:`~benchmark.report.significance.marker` against it; the runs counted per hardware.
    The random row is the reference: ``reference`` in the columns that compare with random, its
    own total cost at B; a row that never reached a* in any seed gets a warning."""
    counts = win_counts(paired if paired is not None else pd.DataFrame(columns=PAIRED_COLUMNS))
    versus = _reference_pipelines(summaries, counts)
    rows, numbers = [], []
    references: list[str] = []
    ssr_within_noise: list[str] = []
    never: list[tuple[str, str]] = []
    keys = ["dataset", "pipeline", "strategy"]
    for (dataset, pipeline, strategy), members in summaries.groupby(keys, sort=False):
        family = members["family"].iloc[0]
        row = {"dataset": dataset, "pipeline": pipeline, "strategy": strategy}
        row["seeds"] = len(members)
        row |= {column: _cell_text(column, members, family) for column in _TABLE_COLUMNS}
        updates = sorted(set(members["updates_at"]))
        row["feature updates at"] = "; ".join(updates) if family == "asvp" else ""
        for against in versus:
            row[f"vs {against}"] = _marker_cell(counts, dataset, strategy, pipeline, against)
        bounds = confidence_interval(members["ssr"])
        reached = members["ssr"].notna().all()
        if family != RANDOM and reached and bounds is not None and bounds[0] <= 0.0 <= bounds[1]:
            ssr_within_noise.append(f"{dataset} {pipeline} {strategy}")
        numbers.append(_row_numbers(members, family))
        if family not in (RANDOM, FULL_DATA) and members["total_cost_usd"].isna().all():
            never.append((f"{dataset} {pipeline} {strategy}", members["train_method"].iloc[0]))
        rows.append(row)
    for dataset, members in summaries.groupby("dataset", sort=False):
        first = members.iloc[0]
        references.append(
            f"{dataset}: random seed-mean accuracy at B={int(first['reference_budget'])} "
            f"is {first['reference_acc']:.3f}, its seed-mean total cost at B "
            f"${first['reference_cost_usd']:.2f}"
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
        pd.DataFrame(numbers),
        _never_reached_warning(never),
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
    """Log each run's :data:`SUMMARY_METRICS` into that run as ``summary/<name>`` at step 0;
    return how many values were logged.

    Why a prefix at step 0, not tags: they are numbers a reader sorts and compares across runs
    (tags are strings in MLflow's runs table), but they are one value per run, not curves.
    MLflow's chart view groups metrics by the part before ``/`` (:mod:`benchmark.metric_names`),
    so they sit in their own ``summary`` section instead of among the per-round curves,
    and step 0 does not pretend they were measured at a budget. A random run gets no
    :data:`RATIO_TO_RANDOM` metric (it is the reference, not scored against itself). NaN
    values are skipped (an undefined SSR is not a number to plot). Idempotent: a value equal to
    the run's latest value of that metric is not logged again, so re-running ``report`` adds
    nothing; a changed value (more seeds finished, so a* moved) is appended and becomes the
    latest, which ``mlflow ui`` shows. A value that became NaN leaves the older one in place
    (MLflow cannot delete metric values). The runs' latest values are read a search of many
    runs at a time (:func:`benchmark.tracking.queries.latest_metrics`), not one request per run.
    """
    logged = 0
    stamp = int(time.time() * 1000)
    latest = latest_metrics(client, [run_id for run_id in summaries["run_id"] if run_id])
    for row in summaries.itertuples(index=False):
        if not row.run_id:
            continue
        names = [
            name
            for name in SUMMARY_METRICS
            if not (row.family == RANDOM and name in RATIO_TO_RANDOM)
        ]
        values = {f"{SUMMARY_PREFIX}{name}": getattr(row, name) for name in names}
        finite = {name: value for name, value in values.items() if math.isfinite(value)}
        logged += log_changed_values(client, row.run_id, finite, 0, stamp, latest.get(row.run_id))
    return logged
