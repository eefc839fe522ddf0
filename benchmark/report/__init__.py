"""``asvp-bench report``: Table 2, the selection-discrepancy table, the figures and the
comparison with the published values, all from the grid's finished MLflow runs.

Everything is read back from MLflow (nothing from memory), limited to the run keys of the grid
as it is now, so runs of an older configuration never mix in. The modules, each using only
those above it:

- :mod:`~benchmark.report.curves`: each finished run's curve (:func:`read_curves`);
- :mod:`~benchmark.report.significance`: 95% intervals over seeds and paired tests between
  pipelines (:func:`paired_tests`), which say which differences are within noise;
- :mod:`~benchmark.report.summary`: per-seed metrics (:func:`seed_summaries`), Table 2
  (:func:`table2`), the discrepancy table, the metrics logged back into the runs;
- :mod:`~benchmark.report.render`: the tables as CSV, Markdown and LaTeX (:func:`write_report`);
- :mod:`~benchmark.report.figure_style`, :mod:`~benchmark.report.win_matrix` and
  :mod:`~benchmark.report.figures`: the PNG figures;
- :mod:`~benchmark.report.model_scale`: the model-scale view (the paper's Figure 1) of a grid
  that runs one dataset under several backbones;
- :mod:`~benchmark.report.published` and :mod:`~benchmark.report.comparison`: the published
  values, logged to MLflow and compared with ours.

All MLflow reads and writes go through :mod:`benchmark.tracking`. :func:`make_report` runs
them in order; every public name of these modules is importable from here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from benchmark.grid import Grid, expand_cells
from benchmark.report.comparison import (
    DOLLARS_NOTE,
    PAPER_BACKBONE,
    RATIO_METRICS,
    RATIO_PAIRS,
    compare_published,
    no_counterpart_note,
    published_counterparts,
    write_comparison,
)
from benchmark.report.curves import DISCREPANCY_FIELDS, UNKNOWN_HARDWARE, CellCurve, read_curves
from benchmark.report.figure_style import FigureStyle, figure_style, style_from_curves
from benchmark.report.figures import (
    DPI,
    FIRST_BUDGET_NOTE,
    accuracy_figure,
    cost_figure,
    discrepancy_figure,
    selection_points,
    selection_time_figure,
    write_figures,
)
from benchmark.report.model_scale import (
    MODEL_SCALE_COLUMNS,
    backbone_parameters,
    model_scale_figure,
    model_scale_table,
    scale_entries,
    write_model_scale,
)
from benchmark.report.published import (
    COLUMNS,
    EXPERIMENT,
    GROUP_COLUMNS,
    METRIC_UNITS,
    NOT_STATED,
    PAPER,
    PIPELINE_FAMILIES,
    PRICE_METRIC,
    SOURCE_PRICES_PREFIX,
    PublishedError,
    PublishedLog,
    load_published,
    log_published,
    published_metric_name,
    source_short,
)
from benchmark.report.render import (
    DEFINITIONS_NOTE,
    DISCREPANCY_NOTE,
    PAIRED_NOTE,
    STATISTICS_NOTE,
    caption,
    hardware_note,
    latex_escape,
    markdown_table,
    significance_note,
    table2_latex,
    write_report,
)
from benchmark.report.significance import (
    BETTER,
    CONFIDENCE,
    PAIRED_COLUMNS,
    REFERENCE_FAMILIES,
    TIE,
    UNTESTED,
    WORSE,
    PairedTest,
    confidence_interval,
    marker,
    paired_test,
    paired_tests,
    win_counts,
    within_noise,
)
from benchmark.report.summary import (
    LP_FT_METHODS,
    RATIO_TO_RANDOM,
    REFERENCE,
    SUMMARY_METRICS,
    SUMMARY_PREFIX,
    ReportError,
    ReportTable,
    discrepancy_table,
    hardware_counts,
    log_summaries,
    seed_summaries,
    table2,
)
from benchmark.report.win_matrix import win_matrix, win_matrix_figure
from benchmark.tracking import MlflowClient

__all__ = [
    "WORSE",
    "UNTESTED",
    "TIE",
    "BETTER",
    "COLUMNS",
    "CONFIDENCE",
    "DEFAULT_PUBLISHED",
    "DEFINITIONS_NOTE",
    "DISCREPANCY_FIELDS",
    "DISCREPANCY_NOTE",
    "DOLLARS_NOTE",
    "DPI",
    "FIRST_BUDGET_NOTE",
    "EXPERIMENT",
    "GROUP_COLUMNS",
    "LP_FT_METHODS",
    "METRIC_UNITS",
    "MODEL_SCALE_COLUMNS",
    "NOT_STATED",
    "PAIRED_COLUMNS",
    "PAIRED_NOTE",
    "PAPER",
    "PAPER_BACKBONE",
    "PIPELINE_FAMILIES",
    "PRICE_METRIC",
    "RATIO_METRICS",
    "RATIO_PAIRS",
    "RATIO_TO_RANDOM",
    "REFERENCE",
    "REFERENCE_FAMILIES",
    "SOURCE_PRICES_PREFIX",
    "STATISTICS_NOTE",
    "SUMMARY_METRICS",
    "SUMMARY_PREFIX",
    "UNKNOWN_HARDWARE",
    "CellCurve",
    "FigureStyle",
    "PairedTest",
    "PublishedError",
    "PublishedLog",
    "ReportError",
    "ReportTable",
    "accuracy_figure",
    "backbone_parameters",
    "caption",
    "compare_published",
    "confidence_interval",
    "cost_figure",
    "discrepancy_figure",
    "discrepancy_table",
    "figure_style",
    "hardware_counts",
    "hardware_note",
    "latex_escape",
    "load_published",
    "log_published",
    "log_summaries",
    "make_report",
    "markdown_table",
    "marker",
    "model_scale_figure",
    "model_scale_table",
    "no_counterpart_note",
    "paired_test",
    "paired_tests",
    "published_counterparts",
    "published_metric_name",
    "read_curves",
    "scale_entries",
    "seed_summaries",
    "selection_points",
    "selection_time_figure",
    "significance_note",
    "source_short",
    "style_from_curves",
    "table2",
    "table2_latex",
    "win_counts",
    "win_matrix",
    "win_matrix_figure",
    "within_noise",
    "write_comparison",
    "write_figures",
    "write_model_scale",
    "write_report",
]

DEFAULT_PUBLISHED = Path(__file__).resolve().parents[2] / "results/published/asvp-tmlr2024.csv"
"""The published values the report compares with when none are given (shipped in the repo)."""


def make_report(
    client: MlflowClient, grid: Grid, out_dir: Path, published_path: Path | None = None
) -> int:
    """``asvp-bench report``: everything from the grid's finished runs, printed and written to
    ``out_dir``; returns the exit status (0; 1 with no finished run; 2 on unreportable runs or
    a malformed published-values file).

    Writes ``table2.{csv,md,tex}``, ``discrepancy.{csv,md}`` (proxy cells), ``paired.csv``
    (every paired test), ``figures/*.png``, ``model_scale_<dataset>.{csv,md}`` (a dataset run
    under several backbones, :mod:`~benchmark.report.model_scale`),
    ``published_comparison.{csv,md}`` (only for a grid with a published counterpart,
    :func:`published_counterparts`; one line says so otherwise); logs the per-seed metrics
    into each run and the published values (``published_path``, default
    ``results/published/asvp-tmlr2024.csv``, skipped with a note when an installation lacks
    it) into the MLflow experiment ``published``. The published file is read first, so a
    malformed one stops the report before anything is written.
    """
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
    paired = paired_tests(curves)
    table = table2(summaries, paired)
    proxy_hardware = hardware_counts(c.hardware for c in curves if c.discrepancy)
    print(write_report(grid, table, out_dir, discrepancy, paired, proxy_hardware))
    figures = write_figures(curves, summaries, discrepancy, out_dir / "figures", paired)
    figures += write_model_scale(curves, summaries, out_dir)
    print(f"logged {log_summaries(client, summaries)} new per-seed metric values into the runs")
    if published is not None:
        print(log_published(client, published, path.name).describe())
        datasets = {c.config.dataset for c in cells}
        backbones = {c.config.backbone for c in cells}
        counterparts = published_counterparts(published, datasets, backbones)
        if counterparts.empty:
            print(no_counterpart_note(datasets, backbones))
        else:
            comparison = compare_published(counterparts, summaries)
            print(write_comparison(comparison, out_dir, table.hardware))
    _print_written(out_dir, figures)
    return 0


def _published_values(given: Path | None) -> tuple[pd.DataFrame | None, Path]:
    """The published values to compare with and their file: ``given``, or the shipped file
    (None, with a note, when this installation lacks it)."""
    path = given or DEFAULT_PUBLISHED
    if given is None and not path.exists():
        print(f"note: no published values at {path} (not in this installation): no comparison")
        return None, path
    return load_published(path), path


def _print_written(out_dir: Path, figures: Iterable[Path]) -> None:
    tables = sorted(str(p) for p in out_dir.glob("*.*") if p.suffix in (".csv", ".md", ".tex"))
    print(f"written: {', '.join(tables)}")
    print(f"figures: {', '.join(str(p) for p in figures)}")
