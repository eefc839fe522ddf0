"""The report's cost figure, ``cost_<dataset>.png``, like the paper's revised Figure 2:
labelling cost (x) vs training (sampling-compute) cost (y) at the random baseline's accuracy
a*, one point per pipeline x strategy, the random baseline at its own cost at B (the
reference, as in Table 2), dashed equal-total-cost lines where training is not negligible
beside labelling and, when one device-hour price applies, a right axis in sampling
device-hours. Cells that never reach a* are listed under the plot, not in the legend.

On the CPU demo training costs about 1e-4 of labelling: equal-total lines would all be vertical
(total ≈ labelling), so when the y range is below :data:`_ISO_LINES_MIN_RATIO` of the x range
they are left out with a note and the y axis is zoomed to the training costs, which a linear
axis keeps readable (a log axis could not hold the random baseline's zero training cost).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from benchmark.grid import FULL_DATA, RANDOM
from benchmark.report.figure_style import (
    FigureStyle,
    cell_point,
    cell_stats,
    footnote,
    pipeline_handles,
    sectioned_legend,
    strategy_handles,
    style_from_summaries,
    themed,
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
    point (seed mean ± 1 std over the seeds that reached a*) per pipeline x strategy, the
    random baseline at its cost at B, iso-total-cost lines unless training is negligible
    (:data:`_ISO_LINES_MIN_RATIO`), axes that hold every error bar and a legend of the plotted
    cells only; the full-data cell is not a point (it has no cost to reach a*)."""
    mine = _random_at_reference(
        summaries[(summaries["dataset"] == dataset) & (summaries["family"] != FULL_DATA)]
    )
    style = style or style_from_summaries(mine)
    cells = cell_stats(mine, ["labelling_cost_usd", "training_cost_usd"])
    reached = cells[cells["labelling_cost_usd_count"] > 0]
    figure = Figure(figsize=(8.8, 5.4), layout="constrained")
    ax = figure.subplots()
    for cell in reached.to_dict("records"):
        cell_point(ax, cell, style, "labelling_cost_usd", "training_cost_usd", zorder=3)
    notes = []
    if not reached.empty:
        ax.set_xlim(*_padded(*_bar_extent(reached, "labelling_cost_usd")))
        low, high = _bar_extent(reached, "training_cost_usd")
        ax.set_ylim(*_padded(min(0.0, low), high))
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        ratio = (y1 - y0) / (x1 - x0)
        if ratio >= _ISO_LINES_MIN_RATIO:
            _iso_total_lines(ax)
        else:
            notes.append(
                f"No equal-total-cost lines: the training costs span {ratio:.2%} of the "
                "labelling costs' range, so total cost ≈ labelling cost (x) and the lines "
                "would all be vertical; the y axis is zoomed to the training costs."
            )
    ax.grid(False, axis="x")  # vertical grid lines would read as iso-cost lines
    ax.set_xlabel("Labelling cost (USD)")
    ax.set_ylabel("Training cost: sampling compute up to n (USD)")
    prices = sorted(set(mine["device_hour_price"]))
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
            f"{c['pipeline']} / {c['strategy']} ({c['labelling_cost_usd_count']} of {c['seeds']})"
            for c in partly.to_dict("records")
        )
        notes.append(f"Mean over the seeds that reached a* only (seeds reached): {names}.")
    footnote(figure, notes)
    sections = [  # only what is plotted: a cell that never reached a* has no mark
        ("pipeline", pipeline_handles(reached["pipeline"], style)),
        ("strategy", strategy_handles(reached["strategy"], style)),
    ]
    sectioned_legend(figure, sections, "outside right upper")
    first = mine.iloc[0]
    ax.set_title(
        f"{dataset}: cost to reach the random baseline's accuracy at "
        f"B = {int(first['reference_budget']):,} labels (a* = {first['reference_acc']:.3f})\n"
        "points: seed mean ± 1 std; random: its cost at B (the reference)"
        + ("; dashed: equal total cost" if _iso_lines_drawn(ax) else "")
    )
    return figure


_ISO_LINES_MIN_RATIO = 0.01
"""Equal-total-cost lines are drawn when the y (training) range is at least this fraction of
the x (labelling) range; below it they are vertical to the eye and only repeat the x axis."""


def _random_at_reference(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the random runs' labelling and training cost at B (the reference, as in
    Table 2) in place of their cost to reach their own seed mean."""
    rows = rows.copy()
    random = rows["family"] == RANDOM
    for name in ("labelling", "training"):
        rows.loc[random, f"{name}_cost_usd"] = rows.loc[random, f"{name}_at_reference_usd"]
    return rows


def _bar_extent(cells: pd.DataFrame, column: str) -> tuple[float, float]:
    """The lowest and highest value the points of ``cells`` and their ±1 std bars reach, so
    the axes hold every bar (a bar cut by the axes reads as an axis line)."""
    mean, std = cells[f"{column}_mean"], cells[f"{column}_std"]
    return float((mean - std).min()), float((mean + std).max())


def _iso_lines_drawn(ax: Axes) -> bool:
    return any(line.get_linestyle() == "--" for line in ax.get_lines())
