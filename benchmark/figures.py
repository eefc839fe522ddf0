"""The report's figures, kept importable from their old path: the code is in
:mod:`benchmark.report.figures` (and the shared look in :mod:`benchmark.report.figure_style`)."""

from benchmark.report.figure_style import FigureStyle, figure_style, style_from_curves
from benchmark.report.figures import (
    DPI,
    accuracy_figure,
    cost_figure,
    discrepancy_figure,
    selection_points,
    selection_time_figure,
    write_figures,
)

__all__ = [
    "DPI",
    "FigureStyle",
    "accuracy_figure",
    "cost_figure",
    "discrepancy_figure",
    "figure_style",
    "selection_points",
    "selection_time_figure",
    "style_from_curves",
    "write_figures",
]
