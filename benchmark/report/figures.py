"""The report's figures: seaborn on matplotlib's Agg canvas, one PNG per dataset and kind.

- ``accuracy_<dataset>.png``: test accuracy vs labels, one panel per strategy, one line per
  pipeline (the random baseline in every panel): seed mean with a ±1 std band, and the
  full-data upper bound as a horizontal line when the grid has full-data cells.
- ``cost_<dataset>.png``: labelling cost (x) vs training (sampling-compute) cost (y) at the
  random baseline's accuracy a*, one point per pipeline x strategy, dashed iso-total-cost
  lines and, when one device-hour price applies, a right axis in sampling device-hours; like
  the paper's revised Figure 2. Cells that never reach a* are listed under the plot.
- ``selection_time_<dataset>.png``: selection (sampling) compute vs final accuracy, one point
  per pipeline x strategy with ±1 std error bars; like the paper's Figure 1.
- ``discrepancy_<dataset>.png``: per proxy cell and budget, the proxy's picks and the
  fine-tuned model's picks split into both / proxy only / model only and by whether the proxy
  classifies them correctly; like the paper's Figures 4-5.
- ``pairwise_<dataset>.png``: which pipeline is significantly more accurate than which, over
  strategies and budgets (:mod:`benchmark.report.win_matrix`).

Every function takes plain data (:class:`benchmark.report.CellCurve` lists or the DataFrames of
:func:`benchmark.report.seed_summaries` and :func:`benchmark.report.discrepancy_table`) and
returns a :class:`~matplotlib.figure.Figure` (not attached to pyplot, so nothing leaks); the
shared look (:class:`FigureStyle`, the theme, legends) is in
:mod:`benchmark.report.figure_style`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, StrMethodFormatter

from asvp.metrics import mean_std
from benchmark.grid import FULL_DATA, RANDOM
from benchmark.report.curves import CellCurve
from benchmark.report.figure_style import (
    FigureStyle,
    footnote,
    panels,
    pipeline_handles,
    sectioned_legend,
    strategy_handles,
    style_from_curves,
    style_from_summaries,
    themed,
)
from benchmark.report.win_matrix import win_matrix_figure

DPI = 150
_BASELINES = (RANDOM, FULL_DATA)


# --------------------------------------------------------------------------------------------
# Accuracy vs labels
# --------------------------------------------------------------------------------------------


@themed
def accuracy_figure(
    curves: Sequence[CellCurve], dataset: str, style: FigureStyle | None = None
) -> Figure:
    """Test accuracy vs labels on ``dataset``: a panel per strategy with a line per pipeline and
    the random baseline, seed mean ± 1 std (band; none for a single seed), and the full-data
    cells' seed-mean accuracy as a dashed horizontal line."""
    mine = [c for c in curves if c.cell.dataset_label == dataset]
    style = style or style_from_curves(mine)
    long = pd.DataFrame(
        [
            {
                "pipeline": c.cell.pipeline_label,
                "strategy": c.cell.strategy_label,
                "family": c.cell.config.pipeline,
                "labels": float(b),
                "acc": float(a),
            }
            for c in mine
            if c.cell.config.pipeline != FULL_DATA
            for b, a in zip(c.budgets, c.acc, strict=True)
        ]
    )
    full = [c for c in mine if c.cell.config.pipeline == FULL_DATA]
    selecting = long[long["family"] != RANDOM]
    strategies = list(dict.fromkeys(selecting["strategy"])) or [None]
    seeds = sorted(
        set(Counter((c.cell.pipeline_label, c.cell.strategy_label) for c in mine).values())
    )
    figure, axes = panels(len(strategies), 4.3, 3.4, 3.2)
    for ax, strategy in zip(axes, strategies, strict=True):
        shown = long[(long["family"] == RANDOM) | (long["strategy"] == strategy)]
        sns.lineplot(
            data=shown,
            x="labels",
            y="acc",
            hue="pipeline",
            style="pipeline",
            palette=style.colours,
            markers=style.pipeline_markers,
            dashes=False,
            errorbar="sd" if max(seeds) > 1 else None,
            ax=ax,
            legend=False,
        )
        if full:
            ax.axhline(
                np.mean([c.acc[-1] for c in full]),
                color=style.colours[full[0].cell.pipeline_label],
                linestyle="--",
                linewidth=1.3,
            )
        ax.set_title(strategy or "random baseline only")
        ax.set_xlabel("Labelled samples")
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        ax.set_ylabel("Test accuracy (top-1)")
    handles = [
        Line2D([], [], color=style.colours[p], marker=style.pipeline_markers[p], label=p)
        for p in dict.fromkeys(long["pipeline"])
    ]
    if full:
        pool = int(full[0].budgets[-1])
        mean, std, _ = mean_std(c.acc[-1] for c in full)
        handles.append(
            Line2D(
                [],
                [],
                color=style.colours[full[0].cell.pipeline_label],
                linestyle="--",
                label=f"full-data upper bound\n({full[0].cell.pipeline_label}, {pool:,} labels):"
                f"\n{mean:.3f} ± {std:.3f}",
            )
        )
    band = "line: seed mean\nband: ± 1 std over seeds" if max(seeds) > 1 else "one seed: no band"
    figure.legend(handles=handles, loc="outside right upper", title=f"pipeline\n({band})")
    counts = "/".join(map(str, seeds))
    title = f"{dataset}: test accuracy vs labels ({counts} seed(s) per cell)"
    figure.suptitle(title, x=0.01, ha="left")
    return figure


# --------------------------------------------------------------------------------------------
# Cost at the reference accuracy (revised Figure 2)
# --------------------------------------------------------------------------------------------


def _cell_stats(rows: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per pipeline x strategy (first-seen order): family, seeds, and mean, std (ddof 1, 0 for
    one value) and count of the finite values of each column."""
    stats = []
    for (pipeline, strategy), members in rows.groupby(["pipeline", "strategy"], sort=False):
        row = {"pipeline": pipeline, "strategy": strategy, "seeds": len(members)}
        row["family"] = members["family"].iloc[0]
        for column in columns:
            values = members[column].to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            row[f"{column}_mean"] = finite.mean() if finite.size else math.nan
            row[f"{column}_std"] = finite.std(ddof=1) if finite.size > 1 else 0.0
            row[f"{column}_count"] = int(finite.size)
        stats.append(row)
    return pd.DataFrame(stats)


def _cell_point(
    ax: Axes, cell: dict, style: FigureStyle, x: str, y: str, x_factor: float = 1.0, **extra
) -> None:
    """One row of :func:`_cell_stats` as a point at the means of columns ``x`` (times
    ``x_factor``) and ``y`` with ±1 std error bars: its pipeline's colour, its strategy's
    marker; ``extra`` goes to :meth:`~matplotlib.axes.Axes.errorbar`."""
    ax.errorbar(
        cell[f"{x}_mean"] * x_factor,
        cell[f"{y}_mean"],
        xerr=cell[f"{x}_std"] * x_factor,
        yerr=cell[f"{y}_std"],
        marker=style.strategy_markers[cell["strategy"]],
        color=style.colours[cell["pipeline"]],
        markersize=8,
        capsize=3,
        linestyle="none",
        **extra,
    )


def _money(value: float) -> str:
    """``value`` in dollars with as few decimals as it needs (up to 4): $9,000, $32.5."""
    decimals = next((d for d in range(4) if math.isclose(round(value, d), value, abs_tol=1e-9)), 4)
    return f"${value:,.{decimals}f}"


def _padded(low: float, high: float, fraction: float = 0.12) -> tuple[float, float]:
    span = high - low or max(abs(high) * 0.1, 1e-6)
    return low - span * fraction, high + span * fraction


def _iso_total_lines(ax: Axes) -> None:
    """Dashed lines of equal total cost (labelling x + training y) across the axes' box, each
    long enough to hold it labelled ``Total Cost: $...`` at its middle."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    totals = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(x0 + y0, x1 + y1)
    for total in totals:
        xs = np.array([max(x0, total - y1), min(x1, total - y0)])
        if total <= x0 + y0 or total >= x1 + y1 or xs[1] <= xs[0]:
            continue
        ax.plot(xs, total - xs, linestyle="--", color="0.45", linewidth=0.9, zorder=1)
        length = math.hypot((xs[1] - xs[0]) / (x1 - x0), (xs[1] - xs[0]) / (y1 - y0))
        if length < 0.35:  # a corner of the box: too short for its label
            continue
        middle = xs.mean()
        ax.text(
            middle,
            total - middle,
            f"Total Cost: {_money(total)}",
            rotation=-45,  # the line's direction in data coordinates
            transform_rotates_text=True,
            rotation_mode="anchor",
            ha="center",
            va="center",
            fontsize=7,
            color="0.3",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
            zorder=2,
        )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


@themed
def cost_figure(summaries: pd.DataFrame, dataset: str, style: FigureStyle | None = None) -> Figure:
    """Labelling vs training cost on ``dataset`` at the random baseline's accuracy a*, one
    point (seed mean ± 1 std over the seeds that reached a*) per pipeline x strategy, with
    iso-total-cost lines; the full-data cell is not a point (it has no cost to reach a*)."""
    mine = summaries[(summaries["dataset"] == dataset) & (summaries["family"] != FULL_DATA)]
    style = style or style_from_summaries(mine)
    cells = _cell_stats(mine, ["labelling_cost_usd", "training_cost_usd"])
    reached = cells[cells["labelling_cost_usd_count"] > 0]
    figure = Figure(figsize=(8.8, 5.4), layout="constrained")
    ax = figure.subplots()
    for cell in reached.to_dict("records"):
        _cell_point(ax, cell, style, "labelling_cost_usd", "training_cost_usd", zorder=3)
    if not reached.empty:
        xs, ys = reached["labelling_cost_usd_mean"], reached["training_cost_usd_mean"]
        ax.set_xlim(*_padded(xs.min(), xs.max()))
        ax.set_ylim(*_padded(min(0.0, ys.min()), ys.max()))
        _iso_total_lines(ax)
    ax.grid(False, axis="x")  # vertical grid lines would read as iso-cost lines
    ax.set_xlabel("Labelling cost (USD)")
    ax.set_ylabel("Training cost: sampling compute up to n (USD)")
    prices = sorted(set(mine["device_hour_price"]))
    notes = []
    if len(prices) == 1 and prices[0] > 0:
        price = prices[0]
        right = ax.secondary_yaxis("right", functions=(lambda y: y / price, lambda h: h * price))
        right.set_ylabel(f"Sampling time up to n (device-hours at ${price:g}/h)")
    else:
        notes.append(f"No sampling-time axis: the cells' device-hour prices are {prices}.")
    never = cells[cells["labelling_cost_usd_count"] == 0]
    if not never.empty:
        names = ", ".join(f"{c['pipeline']} / {c['strategy']}" for c in never.to_dict("records"))
        notes.append(f"Not shown, never reached a* in any seed: {names}.")
    partly = reached[reached["labelling_cost_usd_count"] < reached["seeds"]]
    if not partly.empty:
        names = ", ".join(
            f"{c['pipeline']} / {c['strategy']} ({c['labelling_cost_usd_count']}/{c['seeds']})"
            for c in partly.to_dict("records")
        )
        notes.append(f"Mean over the seeds that reached a* only: {names}.")
    footnote(figure, notes)
    sections = [
        ("pipeline", pipeline_handles(cells["pipeline"], style)),
        ("strategy", strategy_handles(cells["strategy"], style)),
    ]
    sectioned_legend(figure, sections, "outside right upper")
    first = mine.iloc[0]
    ax.set_title(
        f"{dataset}: cost to reach the random baseline's accuracy at "
        f"B = {int(first['reference_budget']):,} labels (a* = {first['reference_acc']:.3f})\n"
        "points: seed mean ± 1 std; dashed: equal total cost (labelling + training)"
    )
    return figure


# --------------------------------------------------------------------------------------------
# Selection time vs accuracy (Figure 1)
# --------------------------------------------------------------------------------------------


def _time_unit(hours: float) -> tuple[str, float]:
    """A readable unit for durations up to ``hours``: (name, factor from hours)."""
    if hours >= 1.0:
        return "hours", 1.0
    if hours >= 1.0 / 60.0:
        return "minutes", 60.0
    return "seconds", 3600.0


def selection_points(summaries: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per selecting pipeline x strategy of ``dataset`` (not random, not full-data): seed mean,
    std and count of ``sampling_hours`` and ``final_acc``."""
    mine = summaries[
        (summaries["dataset"] == dataset) & ~summaries["family"].isin(list(_BASELINES))
    ]
    return _cell_stats(mine, ["sampling_hours", "final_acc"])


@themed
def selection_time_figure(
    summaries: pd.DataFrame, dataset: str, style: FigureStyle | None = None
) -> Figure:
    """Selection (sampling) compute of a whole run vs its final accuracy on ``dataset``, a point
    (seed mean ± 1 std) per pipeline x strategy; the random baseline (no selection compute) and
    the full-data upper bound as horizontal lines. Log time axis when the times span more than
    a factor of 20."""
    mine = summaries[summaries["dataset"] == dataset]
    style = style or style_from_summaries(mine)
    points = selection_points(summaries, dataset)
    figure = Figure(figsize=(8.8, 5.2), layout="constrained")
    ax = figure.subplots()
    unit, factor = _time_unit(float(points["sampling_hours_mean"].max()) if len(points) else 0)
    for cell in points.to_dict("records"):
        _cell_point(ax, cell, style, "sampling_hours", "final_acc", x_factor=factor)
    times = points["sampling_hours_mean"].to_numpy() if len(points) else np.array([])
    if times.size and times.min() > 0 and times.max() / times.min() > 20:
        ax.set_xscale("log")
    baselines = []
    for family, dash, what in (
        (RANDOM, ":", "random baseline (no selection compute)"),
        (FULL_DATA, "--", "full-data upper bound"),
    ):
        baseline = mine[mine["family"] == family]
        if baseline.empty:
            continue
        colour = style.colours[baseline["pipeline"].iloc[0]]
        acc = baseline["final_acc"].mean()
        ax.axhline(acc, color=colour, linestyle=dash, linewidth=1.3)
        label = f"{what}: {acc:.3f}"
        baselines.append(Line2D([], [], color=colour, linestyle=dash, label=label))
    ax.set_xlabel(f"Selection (sampling) compute per run ({unit} of device time)")
    budget = int(mine["reference_budget"].iloc[0])
    ax.set_ylabel(f"Final test accuracy (at {budget:,} labels)")
    ax.set_title(
        f"{dataset}: selection time vs final accuracy\npoints: seed mean ± 1 std over seeds"
    )
    sections = [
        ("pipeline", pipeline_handles(points.get("pipeline", []), style)),
        ("strategy", strategy_handles(points.get("strategy", []), style)),
        ("baselines", baselines),
    ]
    sectioned_legend(figure, sections, "outside right upper")
    return figure


# --------------------------------------------------------------------------------------------
# Selection discrepancy (Figures 4-5)
# --------------------------------------------------------------------------------------------

_REGION_COLOURS = {"both": 4, "proxy_only": 3, "model_only": 9}  # colourblind palette indices
_REGION_NAMES = {"both": "both", "proxy_only": "proxy only", "model_only": "model only"}


def _region_count(row: dict, region: str, correct: bool) -> float:
    """How many of a region's samples the proxy classifies correctly (or not)."""
    right = row[f"{region}_proxy_correct"]
    return right if correct else row[region] - right


def _region_fill(region: str, correct: bool) -> dict:
    """A region's face: its colour, solid where the proxy is correct, paler and hatched not."""
    colour = sns.color_palette("colorblind")[_REGION_COLOURS[region]]
    if correct:
        return {"facecolor": colour, "edgecolor": "white"}
    return {"facecolor": sns.desaturate(colour, 0.35), "hatch": "///", "edgecolor": "white"}


@themed
def discrepancy_figure(regions: pd.DataFrame, dataset: str) -> Figure:
    """The selection-discrepancy regions of ``dataset``'s proxy cells (rows of
    :func:`benchmark.report.discrepancy_table`), a panel per pipeline x strategy: at each budget
    the proxy's picks (left bar: both + proxy only) and the fine-tuned model's picks (right bar:
    both + model only), each split by whether the proxy classifies them correctly (solid) or
    not (hatched), seed means; the overlap fraction above each pair."""
    mine = regions[regions["dataset"] == dataset]
    cells = list(dict.fromkeys(zip(mine["pipeline"], mine["strategy"], strict=True)))
    budgets = max(int(((mine["pipeline"] == p) & (mine["strategy"] == s)).sum()) for p, s in cells)
    figure, axes = panels(len(cells), max(4.2, 0.55 * budgets), 3.6, 0.0)
    width = 0.4
    for ax, (pipeline, strategy) in zip(axes, cells, strict=True):
        rows = mine[(mine["pipeline"] == pipeline) & (mine["strategy"] == strategy)]
        rows = rows.sort_values("labels").to_dict("records")
        positions = np.arange(len(rows))
        for offset, side in ((-width / 2, "proxy_only"), (width / 2, "model_only")):
            bottom = np.zeros(len(rows))
            for region in ("both", side):
                for correct in (True, False):
                    heights = np.array([_region_count(r, region, correct) for r in rows])
                    ax.bar(
                        positions + offset,
                        heights,
                        width,
                        bottom=bottom,
                        linewidth=0.5,
                        **_region_fill(region, correct),
                    )
                    bottom += heights
        for x, row in zip(positions, rows, strict=True):
            top = max(row["both"] + row["proxy_only"], row["both"] + row["model_only"])
            ax.text(x, top, f"{row['overlap']:.0%}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(
            positions, [f"{r['labels']:,}" for r in rows], rotation=45 if len(rows) > 10 else 0
        )
        ax.set_title(f"{pipeline} / {strategy}")
        ax.set_xlabel("Labelled samples when the proxy selected")
        ax.set_ylabel("Samples selected (seed mean)")
        ax.margins(y=0.12)
    handles = [
        Patch(
            label=f"{_REGION_NAMES[region]}, proxy {'correct' if correct else 'wrong'}",
            **_region_fill(region, correct),
        )
        for region in _REGION_NAMES
        for correct in (True, False)
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=3)
    figure.suptitle(
        f"{dataset}: selection discrepancy, proxy vs the model fine-tuned on the same labels\n"
        "left bar: the proxy's picks, right bar: the fine-tuned model's picks; "
        "% = overlap (both / batch)"
    )
    return figure


# --------------------------------------------------------------------------------------------
# All figures of a report
# --------------------------------------------------------------------------------------------


def write_figures(
    curves: Sequence[CellCurve],
    summaries: pd.DataFrame,
    regions: pd.DataFrame,
    out_dir: Path,
    paired: pd.DataFrame | None = None,
) -> list[Path]:
    """Write every figure of every dataset into ``out_dir`` (``<kind>_<dataset>.png``, 150 dpi)
    with one :class:`FigureStyle`; return the paths. A dataset without selecting cells gets no
    selection-time figure, one without proxy cells no discrepancy figure, one without paired
    tests (``paired``, :func:`~benchmark.report.significance.paired_tests`) no pairwise
    win matrix (:mod:`benchmark.report.win_matrix`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    style = style_from_curves(curves)
    written = []
    for dataset in sorted(set(summaries["dataset"])):
        figures = {
            "accuracy": accuracy_figure(curves, dataset, style),
            "cost": cost_figure(summaries, dataset, style),
        }
        if not selection_points(summaries, dataset).empty:
            figures["selection_time"] = selection_time_figure(summaries, dataset, style)
        if not regions.empty and (regions["dataset"] == dataset).any():
            figures["discrepancy"] = discrepancy_figure(regions, dataset)
        if paired is not None and (paired["dataset"] == dataset).any():
            figures["pairwise"] = win_matrix_figure(paired, dataset)
        for kind, figure in figures.items():
            path = out_dir / f"{kind}_{dataset}.png"
            figure.savefig(path, dpi=DPI, bbox_inches="tight")
            written.append(path)
    return written
