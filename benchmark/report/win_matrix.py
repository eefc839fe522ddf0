"""The pairwise win matrix of a dataset's pipelines, as the active-learning literature draws it
(Ash et al., ICLR 2020, Figure 3): which pipeline's accuracy is significantly higher than
which, counted over strategies and budgets from the paired tests of
:mod:`benchmark.report.significance`.

``pairwise_<dataset>.png``: row pipeline vs column pipeline; each square is the fraction of the
(strategy, budget) comparisons at which the row is significantly more accurate, written as
``k/L``. Read a row for where a pipeline wins, a column for where it loses; a pair with no win
either way is within noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from benchmark.report.figure_style import footnote, themed
from benchmark.report.significance import CONFIDENCE, win_counts


def win_matrix(paired: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(wins, compared)`` for ``dataset``: square tables indexed by pipeline (rows: the
    pipeline, columns: the one it is compared with) of budgets won (summed over strategies) and
    budgets compared; NaN on the diagonal and for pairs never compared."""
    counts = win_counts(paired[paired["dataset"] == dataset], by=("dataset",))
    order = list(dict.fromkeys([*counts["pipeline"], *counts["against"]]))
    wins = counts.pivot(index="pipeline", columns="against", values="better")
    compared = counts.pivot(index="pipeline", columns="against", values="budgets")
    return (
        wins.reindex(index=order, columns=order).astype(float),
        compared.reindex(index=order, columns=order).astype(float),
    )


@themed
def win_matrix_figure(paired: pd.DataFrame, dataset: str) -> Figure:
    """The win matrix of ``dataset`` (:func:`win_matrix`) as an annotated heatmap."""
    wins, compared = win_matrix(paired, dataset)
    fraction = wins / compared
    labels = np.where(compared.notna(), wins.fillna(0).astype(int).astype(str) + "/", "")
    labels = labels.astype(object) + np.where(
        compared.notna(), compared.fillna(0).astype(int).astype(str), ""
    )
    size = 1.6 + 1.1 * len(wins)
    figure = Figure(figsize=(size + 1.4, size), layout="constrained")
    ax = figure.subplots()
    sns.heatmap(
        fraction,
        ax=ax,
        vmin=0.0,
        vmax=1.0,
        cmap="Greens",
        annot=labels,
        fmt="",
        square=True,
        linewidths=0.5,
        cbar_kws={"label": "fraction of comparisons won"},
    )
    ax.grid(False)  # the theme's grid would cross the empty diagonal
    ax.tick_params(axis="y", rotation=0)
    ax.set_xlabel("compared with (column)")
    ax.set_ylabel("pipeline (row)")
    ax.set_title(f"{dataset}: row significantly more accurate than column")
    seeds = int(paired.loc[paired["dataset"] == dataset, "seeds"].min())
    footnote(
        figure,
        [
            f"k/L: budgets (after the first, summed over strategies) where the row's accuracy "
            f"is higher, two-sided paired t-test over {seeds}+ seeds at {CONFIDENCE:.0%}.",
            "A pair with 0/L both ways is within noise; tests are per budget, uncorrected.",
        ],
    )
    return figure
