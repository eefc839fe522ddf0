"""Published numbers, kept importable from their old path: loading and logging are in
:mod:`benchmark.report.published`, the comparison with ours in
:mod:`benchmark.report.comparison`."""

from benchmark.report.comparison import (
    DOLLARS_NOTE,
    RATIO_METRICS,
    RATIO_PAIRS,
    compare_published,
    write_comparison,
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
    PublishedError,
    PublishedLog,
    load_published,
    log_published,
    source_short,
)

__all__ = [
    "COLUMNS",
    "DOLLARS_NOTE",
    "EXPERIMENT",
    "GROUP_COLUMNS",
    "METRIC_UNITS",
    "NOT_STATED",
    "PAPER",
    "PIPELINE_FAMILIES",
    "PRICE_METRIC",
    "RATIO_METRICS",
    "RATIO_PAIRS",
    "PublishedError",
    "PublishedLog",
    "compare_published",
    "load_published",
    "log_published",
    "source_short",
    "write_comparison",
]
