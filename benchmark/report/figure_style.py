"""The look shared by a report's figures: a colour per pipeline and a marker per pipeline and
strategy (:class:`FigureStyle`), seaborn's theme around each drawing, panel grids, footnotes,
sectioned legends, and a cell's point with its ±1 std bars (:func:`cell_stats`,
:func:`cell_point`).

One :class:`FigureStyle` for all figures of a report keeps each pipeline's colour and each
strategy's marker the same in all of them (:mod:`benchmark.report.figures`).
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from benchmark.grid import FULL_DATA, RANDOM
from benchmark.report.curves import CellCurve

_PANEL_COLUMNS = 3
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
_FAMILY_PALETTE_INDEX = {"standard": 0, "svpp": 1, "asvp": 2}
_FIXED_COLOURS = {RANDOM: (0.15, 0.15, 0.15), FULL_DATA: (0.45, 0.45, 0.45)}


@dataclass(frozen=True)
class FigureStyle:
    """Colour per pipeline label (one hue per family, shades within it), marker per pipeline
    label and per strategy label."""

    colours: dict[str, tuple[float, float, float]]
    pipeline_markers: dict[str, str]
    strategy_markers: dict[str, str]


def figure_style(pipelines: Iterable[tuple[str, str]], strategies: Iterable[str]) -> FigureStyle:
    """The style of a report's figures from its (pipeline label, family) pairs and strategy
    labels: random black, full-data grey, standard blue, svpp orange, asvp green (seaborn's
    colourblind palette), other families the palette's next colours; several labels of one
    family get darker shades of its colour, in sorted order."""
    palette = sns.color_palette("colorblind")
    by_family: dict[str, list[str]] = {}
    for label, family in sorted(set(pipelines)):
        by_family.setdefault(family, []).append(label)
    colours: dict[str, tuple[float, float, float]] = {}
    spare = iter(palette[len(_FAMILY_PALETTE_INDEX) :])
    for family, labels in by_family.items():
        base = _FIXED_COLOURS.get(family) or (
            palette[_FAMILY_PALETTE_INDEX[family]]
            if family in _FAMILY_PALETTE_INDEX
            else next(spare, palette[-1])
        )
        shades = sns.dark_palette(base, n_colors=len(labels) + 2, reverse=True)
        colours |= {label: tuple(shades[i][:3]) for i, label in enumerate(labels)}
    labels = sorted(colours)
    return FigureStyle(
        colours=colours,
        pipeline_markers={p: _MARKERS[i % len(_MARKERS)] for i, p in enumerate(labels)},
        strategy_markers={
            s: _MARKERS[i % len(_MARKERS)] for i, s in enumerate(sorted(set(strategies)))
        },
    )


def style_from_curves(curves: Sequence[CellCurve]) -> FigureStyle:
    """:func:`figure_style` of every cell in ``curves``."""
    return figure_style(
        ((c.cell.pipeline_label, c.cell.config.pipeline) for c in curves),
        (c.cell.strategy_label for c in curves),
    )


def style_from_summaries(summaries: pd.DataFrame) -> FigureStyle:
    """:func:`figure_style` of every row of a :func:`benchmark.report.seed_summaries` table."""
    return figure_style(
        zip(summaries["pipeline"], summaries["family"], strict=True), summaries["strategy"]
    )


def themed(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw inside seaborn's whitegrid theme without changing matplotlib's global settings."""

    @functools.wraps(draw)
    def in_theme(*args, **kwargs) -> Figure:
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
            return draw(*args, **kwargs)

    return in_theme


def panels(count: int, width: float, height: float, legend_width: float) -> tuple[Figure, list]:
    """A constrained-layout figure with ``count`` panels in rows of at most three."""
    columns = min(count, _PANEL_COLUMNS)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns + legend_width, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    for ax in axes.flat[count:]:
        figure.delaxes(ax)
    return figure, list(axes.flat[:count])


_NOTE_CHARS_PER_INCH = 13  # footnote characters per inch of figure width (fontsize 8)


def footnote(figure: Figure, lines: list[str]) -> None:
    """Text under the figure (kept in the PNG by ``bbox_inches="tight"``), each line wrapped
    to the figure's width so a long note does not widen the PNG."""
    width = int(figure.get_figwidth() * _NOTE_CHARS_PER_INCH)
    wrapped = [part for line in lines for part in textwrap.wrap(line, width) or [""]]
    if wrapped:
        figure.text(0.01, -0.01, "\n".join(wrapped), ha="left", va="top", fontsize=8, color="0.25")


def sectioned_legend(
    figure: Figure, sections: list[tuple[str, list]], loc: str, ncols: int = 1
) -> None:
    """One figure legend of titled sections (bold title rows), placed outside the axes."""
    handles = []
    for title, entries in sections:
        if entries:
            handles += [Patch(visible=False, label=title), *entries]
    legend = figure.legend(handles=handles, loc=loc, ncols=ncols)
    titles = {title for title, _ in sections}
    for text in legend.get_texts():
        if text.get_text() in titles:
            text.set_fontweight("bold")


def pipeline_handles(pipelines: Iterable[str], style: FigureStyle) -> list:
    """A colour patch per pipeline label (first-seen order), for a legend."""
    return [Patch(color=style.colours[p], label=p) for p in dict.fromkeys(pipelines)]


def strategy_handles(strategies: Iterable[str], style: FigureStyle) -> list:
    """A grey marker per strategy label (first-seen order), for a legend."""
    return [
        Line2D([], [], color="0.3", marker=style.strategy_markers[s], linestyle="none", label=s)
        for s in dict.fromkeys(strategies)
    ]


def cell_stats(rows: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
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


def cell_point(
    ax: Axes, cell: dict, style: FigureStyle, x: str, y: str, x_factor: float = 1.0, **extra
) -> None:
    """One row of :func:`cell_stats` as a point at the means of columns ``x`` (times
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
