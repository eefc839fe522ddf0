"""The Table 2 view: sample-saving ratio and total cost per strategy x pipeline, from MLflow.

Everything is read back from the grid's finished MLflow runs (nothing from memory), limited to
the run keys of the grid as it is now, so runs of an older configuration never mix in. Per
seed, each curve is compared with the seed-mean curve of the random baseline (DESIGN.md,
"Metrics"): :func:`seed_summaries` computes one row of metrics per run, :func:`table2`
aggregates them into cells of mean +- std over seeds and, where fewer seeds than all reach the
random baseline's accuracy, how many did. The definitions are this project's (the paper's
formulas are not public); every table says so and prints the prices used.

:func:`make_report` is ``asvp-bench report``: the table (CSV, Markdown, LaTeX), the
selection-discrepancy table, the figures (:mod:`benchmark.figures`), the per-seed metrics logged
back into each run, and the comparison with the published values (:mod:`benchmark.published`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Metric
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
from benchmark.grid import FULL_DATA, RANDOM, Cell, Costs, Grid, expand_cells
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

DEFAULT_PUBLISHED = Path(__file__).resolve().parents[1] / "results/published/asvp-tmlr2024.csv"


class ReportError(ValueError):
    """The finished runs cannot be reported (no random baseline, a device without a price)."""


@dataclass(frozen=True)
class CellCurve:
    """One finished run's curve, read back from MLflow.

    A full-data cell (``cell.config.pipeline == "full"``) has one budget, the pool size.
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


def _last_per_step(client: MlflowClient, run_id: str, metric: str) -> dict[int, float]:
    history = sorted(client.get_metric_history(run_id, metric), key=lambda m: m.timestamp)
    return {m.step: m.value for m in history}


def _at(values: dict[int, float], budgets: np.ndarray, default: float | None) -> np.ndarray:
    """The logged value at each budget; ``default`` where none was logged (None: required)."""
    return np.array([values[b] if default is None else values.get(b, default) for b in budgets])


def read_curves(client: MlflowClient, grid: Grid, cells: list[Cell]) -> list[CellCurve]:
    """Curves of the cells that have a finished run (a rerun's latest value per step wins).

    A full-data cell has no budget schedule: its budgets are the steps it logged ``test_acc``
    at (the pool size); it selects nothing, so a sampling time it did not log is 0, and an
    evaluation time it did not log is unknown (NaN).
    """
    curves = []
    runs = finished_runs(client, grid.name)
    for cell in cells:
        run = runs.get(cell.run_key)
        if run is None:
            continue
        run_id = run.info.run_id
        acc = _last_per_step(client, run_id, "test_acc")
        full = cell.config.pipeline == FULL_DATA
        budgets = np.array(sorted(acc) if full else cell.config.budgets)
        curves.append(
            CellCurve(
                cell=cell,
                budgets=budgets,
                acc=_at(acc, budgets, None),
                sampling_seconds=_at(
                    _last_per_step(client, run_id, "sampling_seconds"),
                    budgets,
                    0.0 if full else None,
                ),
                evaluation_seconds=_at(
                    _last_per_step(client, run_id, "evaluation_seconds"),
                    budgets,
                    math.nan if full else None,
                ),
                device=run.data.tags.get("device", "cpu"),
                updates_at=run.data.tags.get("feature_updates_at", ""),
                discrepancy={
                    name: _last_per_step(client, run_id, f"discrepancy_{name}")
                    for name in DISCREPANCY_FIELDS
                    if f"discrepancy_{name}" in run.data.metrics
                },
                run_id=run_id,
            )
        )
    return curves


# --------------------------------------------------------------------------------------------
# Per-seed metrics and the table
# --------------------------------------------------------------------------------------------


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
    run_id, device, device_hour_price, reference_budget (B, the random baseline's last budget),
    reference_acc (a*), labels_needed (n), the :data:`SUMMARY_METRICS`, eval_hours,
    eval_cost_usd and updates_at. Labelling cost = n x label price x reviews; training cost =
    total cost (:func:`asvp.costs.total_cost`) - labelling cost. NaN where a run never reaches
    a*, and for a full-data run everything but its accuracy. Rows: per dataset (sorted), random
    first, full-data next, then the order of ``curves``. ``source`` names the grid in errors.
    """
    rows = []
    for dataset in sorted({c.cell.config.dataset for c in curves}):
        mine = sorted((c for c in curves if c.cell.config.dataset == dataset), key=_family_order)
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


def _fmt(mean: float, std: float, count: int, total: int, digits: int, prefix: str = "") -> str:
    if count == 0:
        return f"n/a (0/{total} reached)" if total else "n/a"
    text = f"{prefix}{mean:.{digits}f} ± {std:.{digits}f}"
    return text + (f" ({count}/{total} reached)" if count < total else "")


@dataclass(frozen=True)
class ReportTable:
    """The table's rows and, per dataset, the random reference accuracy a* they are read at
    (and the full-data upper bound where the grid has one)."""

    rows: pd.DataFrame
    references: list[str]


# Table column -> (summary column, digits, prefix); the full-data row shows only accuracy.
_TABLE_COLUMNS = {
    "SSR": ("ssr", 3, ""),
    "total cost (USD)": ("total_cost_usd", 2, "$"),
    "cost saving vs random": ("cost_saving_vs_random", 3, ""),
    "AUBC": ("aubc", 3, ""),
    "final acc": ("final_acc", 3, ""),
    "sampling h": ("sampling_hours", 4, ""),
    "eval-only h": ("eval_hours", 4, ""),
    "eval-only cost (USD)": ("eval_cost_usd", 4, "$"),
}
_FULL_DATA_COLUMNS = ("final acc", "eval-only h", "eval-only cost (USD)")


def table2(summaries: pd.DataFrame) -> ReportTable:
    """One row per dataset x pipeline x strategy (random first), cells mean ± std over seeds."""
    rows = []
    references: list[str] = []
    keys = ["dataset", "pipeline", "strategy"]
    for (dataset, pipeline, strategy), members in summaries.groupby(keys, sort=False):
        family = members["family"].iloc[0]
        total = len(members)
        row = {"dataset": dataset, "pipeline": pipeline, "strategy": strategy, "seeds": total}
        for column, (name, digits, prefix) in _TABLE_COLUMNS.items():
            shown = family != FULL_DATA or column in _FULL_DATA_COLUMNS
            row[column] = _fmt(*mean_std(members[name]), total, digits, prefix) if shown else ""
        updates = sorted(set(members["updates_at"]))
        row["feature updates at"] = "; ".join(updates) if family == "asvp" else ""
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
            key = (curve.cell.config.dataset, curve.cell.pipeline_label, curve.cell.strategy_label)
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


# --------------------------------------------------------------------------------------------
# Writing the table: CSV, Markdown, LaTeX
# --------------------------------------------------------------------------------------------


def caption(grid: Grid, references: list[str]) -> str:
    """The table's caption (Markdown): prices, reference accuracies, the definitions note."""
    costs = grid.costs
    prices = ", ".join(f"{k}: ${v}/device-hour" for k, v in sorted(costs.device_hour.items()))
    note = f" {costs.note}" if costs.note else ""
    return (
        f"Grid `{grid.name}`. Prices: ${costs.label_price} per label x {costs.reviews_per_label} "
        f"review(s); {prices}.{note}\n\nReference (a*): {'; '.join(references)}.\n\n"
        f"{DEFINITIONS_NOTE}"
    )


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "_": r"\_",
    "$": r"\$",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX text mode: the special characters escaped, ``±`` as
    ``$\\pm$``, Markdown code quotes dropped."""
    escaped = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text.replace("`", ""))
    return escaped.replace("±", r"$\pm$")


def table2_latex(table: pd.DataFrame, caption_text: str, label: str) -> str:
    """A booktabs ``table`` environment: text columns left, numbers right, a rule between
    datasets, the caption (paragraphs joined: a caption cannot hold a blank line). Needs
    ``\\usepackage{booktabs,graphicx}``; the tabular is scaled to the text width."""
    text_columns = {"dataset", "pipeline", "strategy", "feature updates at"}
    spec = "".join("l" if c in text_columns else "r" for c in table.columns)
    lines = [
        "% asvp-bench Table 2; needs \\usepackage{booktabs} and \\usepackage{graphicx}",
        "\\begin{table}[t]",
        "\\centering",
        "\\resizebox{\\textwidth}{!}{%",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(str(c)) for c in table.columns) + " \\\\",
        "\\midrule",
    ]
    previous = None
    for row in table.itertuples(index=False):
        if previous is not None and row[0] != previous:
            lines.append("\\midrule")
        previous = row[0]
        lines.append(" & ".join(latex_escape(str(v)) for v in row) + " \\\\")
    caption_line = " ".join(p.strip() for p in caption_text.split("\n\n") if p.strip())
    lines += [
        "\\bottomrule",
        "\\end{tabular}}",
        f"\\caption{{{latex_escape(caption_line)}}}",
        f"\\label{{{latex_escape(label)}}}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


def write_report(
    grid: Grid, table: ReportTable, out_dir: Path, discrepancy: pd.DataFrame | None = None
) -> str:
    """Write ``table2.csv``, ``table2.md`` and ``table2.tex`` (and, when given and not empty,
    ``discrepancy.csv`` and ``discrepancy.md``) into ``out_dir``; return the Table 2 Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = table.rows.fillna("")
    shown.to_csv(out_dir / "table2.csv", index=False)
    text = caption(grid, table.references)
    markdown = markdown_table(shown) + "\n\n" + text + "\n"
    (out_dir / "table2.md").write_text(markdown)
    (out_dir / "table2.tex").write_text(table2_latex(shown, text, f"tab:table2-{grid.name}"))
    if discrepancy is not None and not discrepancy.empty:
        discrepancy.to_csv(out_dir / "discrepancy.csv", index=False)
        (out_dir / "discrepancy.md").write_text(
            markdown_table(discrepancy) + "\n\n" + DISCREPANCY_NOTE
        )
    return markdown


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``table``'s columns and rows, values as text."""
    header = "| " + " | ".join(table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


# --------------------------------------------------------------------------------------------
# Per-seed metrics back into the runs
# --------------------------------------------------------------------------------------------


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
        latest = client.get_run(row.run_id).data.metrics
        step = int(row.reference_budget)
        metrics = [
            Metric(name, float(value), stamp, step)
            for name, value in ((name, getattr(row, name)) for name in SUMMARY_METRICS)
            if math.isfinite(value)
            and not (name in latest and math.isclose(latest[name], value, rel_tol=1e-12))
        ]
        if metrics:
            client.log_batch(row.run_id, metrics=metrics)
            logged += len(metrics)
    return logged


# --------------------------------------------------------------------------------------------
# The report command
# --------------------------------------------------------------------------------------------


def make_report(
    client: MlflowClient, grid: Grid, out_dir: Path, published_path: Path | None = None
) -> int:
    """``asvp-bench report``: everything from the grid's finished runs, printed and written to
    ``out_dir``; returns the exit status (0; 1 with no finished run; 2 on unreportable runs or
    a malformed published-values file).

    Writes ``table2.{csv,md,tex}``, ``discrepancy.{csv,md}`` (proxy cells),
    ``figures/*.png``, ``published_comparison.{csv,md}``; logs the per-seed metrics into each
    run and the published values (``published_path``, default
    ``results/published/asvp-tmlr2024.csv``, skipped with a note when an installation lacks
    it) into the MLflow experiment ``published``. The published file is read first, so a
    malformed one stops the report before anything is written.
    """
    # imported here, not at the top: both modules import this one
    from benchmark.figures import write_figures
    from benchmark.published import (
        PublishedError,
        compare_published,
        log_published,
        write_comparison,
    )

    try:
        published, path = _published_values(published_path)  # before anything is written
    except PublishedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    cells = expand_cells(grid)
    curves = read_curves(client, grid, cells)
    if len(curves) < len(cells):
        print(f"note: {len(cells) - len(curves)} of {len(cells)} cells have no finished run yet")
    if not curves:
        print(f"no finished run of grid {grid.name!r} to report")
        return 1
    try:
        summaries = seed_summaries(curves, grid.costs, str(grid.path))
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    discrepancy = discrepancy_table(curves)
    print(write_report(grid, table2(summaries), out_dir, discrepancy))
    figures = write_figures(curves, summaries, discrepancy, out_dir / "figures")
    print(f"logged {log_summaries(client, summaries)} new per-seed metric values into the runs")
    if published is not None:
        print(log_published(client, published, path.name).describe())
        print(write_comparison(compare_published(published, summaries), out_dir))
    _print_written(out_dir, figures)
    return 0


def _published_values(given: Path | None) -> tuple[pd.DataFrame | None, Path]:
    """The published values to compare with and their file: ``given``, or the shipped file
    (None, with a note, when this installation lacks it)."""
    from benchmark.published import load_published

    path = given or DEFAULT_PUBLISHED
    if given is None and not path.exists():
        print(f"note: no published values at {path} (not in this installation): no comparison")
        return None, path
    return load_published(path), path


def _print_written(out_dir: Path, figures: Iterable[Path]) -> None:
    tables = sorted(str(p) for p in out_dir.glob("*.*") if p.suffix in (".csv", ".md", ".tex"))
    print(f"written: {', '.join(tables)}")
    print(f"figures: {', '.join(str(p) for p in figures)}")
