"""The report's figures: seaborn on matplotlib's Agg canvas, one PNG per dataset and kind.

- ``accuracy_<dataset>.png``: test accuracy vs labels, one panel per strategy, one line per
  pipeline (the random baseline in every panel): seed mean with a ±1 std band clipped to
  [0, 1], the full-data upper bound as a horizontal line when the grid has full-data cells,
  and a note on why LP-FT and FT curves start apart at the shared first budget.
- ``cost_<dataset>.png``: labelling vs training cost at the random baseline's accuracy a*
  (:mod:`benchmark.report.cost_chart`), like the paper's revised Figure 2.
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

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import StrMethodFormatter

from asvp.metrics import mean_std
from benchmark.grid import FULL_DATA, RANDOM
from benchmark.report.cost_chart import cost_figure
from benchmark.report.curves import CellCurve
from benchmark.report.figure_style import (
    FigureStyle,
    cell_point,
    cell_stats,
    footnote,
    panels,
    pipeline_handles,
    sectioned_legend,
    strategy_handles,
    style_from_curves,
    style_from_summaries,
    themed,
)
from benchmark.report.summary import LP_FT_METHODS
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
            errorbar=_clipped_sd if max(seeds) > 1 else None,
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
    methods = {c.cell.config.train_method for c in mine if c.cell.config.pipeline != FULL_DATA}
    if methods & set(LP_FT_METHODS) and methods - set(LP_FT_METHODS):
        footnote(figure, [FIRST_BUDGET_NOTE])
    return figure


FIRST_BUDGET_NOTE = (
    "Note: at the first budget every cell has the same random labelled set; LP-FT pipelines "
    "(linear probe, then fine-tuning) and FT ones start apart there because they train and "
    "evaluate that set differently, not because of anything they selected."
)
"""The accuracy figure's note when it holds both LP-FT-evaluating and FT pipelines."""


def _clipped_sd(values: pd.Series) -> tuple[float, float]:
    """The band of seaborn's ``errorbar="sd"`` (mean ± the sample std) clipped to [0, 1]: an
    accuracy outside it is impossible, so a band past it would misread as one."""
    mean, std = float(values.mean()), float(values.std())
    return max(0.0, mean - std), min(1.0, mean + std)


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
    return cell_stats(mine, ["sampling_hours", "final_acc"])


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
        cell_point(ax, cell, style, "sampling_hours", "final_acc", x_factor=factor)
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
        tops = [max(r["both"] + r["proxy_only"], r["both"] + r["model_only"]) for r in rows]
        for x, top, row in zip(positions, tops, rows, strict=True):
            ax.text(x, top, f"{row['overlap']:.0%}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(
            positions, [f"{r['labels']:,}" for r in rows], rotation=45 if len(rows) > 10 else 0
        )
        ax.set_title(f"{pipeline} / {strategy}", pad=8)
        ax.set_xlabel("Labelled samples when the proxy selected")
        ax.set_ylabel("Samples selected (seed mean)")
        ax.set_ylim(0, max(tops) * 1.18)  # room for the overlap labels under the title
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
