"""Published values against our seed means: the comparison table and its CSV / Markdown.

:func:`compare_published` sets the published values (:mod:`benchmark.report.published`)
against the seed means of :func:`benchmark.report.seed_summaries`: value by value where the
published context matches a cell of the grid, and as ratios between pipelines (ASVP/standard,
SVPp/standard, ASVP/SVPp) where it does not, because dollar amounts measured under unstated
prices and targets cannot be compared. :func:`write_comparison` writes the result, only for
a grid that has a published counterpart (:func:`published_counterparts`): a comparison of a
CPU demo with the paper's ImageNet-scale dollars would be rows of ``unknown`` or, worse,
ratios that look like a replication.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report.published import (
    GROUP_CONTEXT,
    NOT_STATED,
    PAPER,
    PRICE_METRIC,
    source_short,
)
from benchmark.report.render import hardware_note, markdown_table
from benchmark.report.summary import SUMMARY_METRICS

PAPER_BACKBONE = "resnet50_byol_eman"
"""The backbone of every official script of the paper (experiments/table2.yaml, ``[code]``): a
published value that states neither its dataset nor its backbone is in the paper's setting, so
only a grid on this backbone is its counterpart."""

RATIO_PAIRS = (("asvp", "standard"), ("svpp", "standard"), ("asvp", "svpp"))
RATIO_METRICS = ("total_cost_usd", "training_cost_usd")

DOLLARS_NOTE = (
    "Dollar amounts are compared only where a source states its dataset and strategy. The "
    "revised Figure 2 states neither, nor its accuracy target or prices (`not stated` in the "
    "published-values file): its dollars are not comparable with this grid's, so the ratios "
    "between pipelines are compared instead. They still depend on the unstated prices and "
    "target: read them as a sanity check, not a replication. `unknown`: no value is available "
    "(the source's context is not stated or matches no cell, our cells never reached the "
    "target, or the grid lacks a pipeline)."
)


def published_counterparts(
    published: pd.DataFrame, datasets: Iterable[str], backbones: Iterable[str]
) -> pd.DataFrame:
    """The published values that a grid on ``datasets`` (registry names, as the published file
    writes them) and ``backbones`` can be compared with: those whose stated dataset and
    backbone are among the grid's, and those that state neither when the grid runs on
    :data:`PAPER_BACKBONE`. Empty: the grid has no published counterpart."""
    datasets, backbones = set(datasets), set(backbones)
    dataset_stated = published["dataset"] != NOT_STATED
    backbone_stated = published["backbone"] != NOT_STATED
    dataset_ok = ~dataset_stated | published["dataset"].isin(datasets)
    backbone_ok = ~backbone_stated | published["backbone"].isin(backbones)
    stated = dataset_stated | backbone_stated
    return published[(stated | (PAPER_BACKBONE in backbones)) & dataset_ok & backbone_ok]


def no_counterpart_note(datasets: Iterable[str], backbones: Iterable[str]) -> str:
    """The one line the report prints instead of the comparison for a grid without a published
    counterpart."""
    return (
        f"Ours vs published: no published counterpart for this grid (datasets "
        f"{', '.join(sorted(datasets))}; backbones {', '.join(sorted(backbones))}): no "
        f"published value states them, and those that state neither are in the paper's "
        f"setting ({PAPER_BACKBONE}); no comparison written."
    )


def compare_published(published: pd.DataFrame, summaries: pd.DataFrame) -> pd.DataFrame:
    """Published values against our seed means (``summaries``:
    :func:`benchmark.report.seed_summaries`), one row per comparison.

    ``comparison = "ratio"`` rows: for each published setting (source, dataset, backbone,
    strategy) that has both pipelines of a :data:`RATIO_PAIRS` pair for a :data:`RATIO_METRICS`
    metric, the published ratio against ours for every dataset x strategy of the grid that has
    all three families (standard, svpp, asvp) and matches the setting's stated dataset and
    strategy, for every pair of our labels of the two families (ratio of seed means over the
    seeds that reached the target). ``comparison = "value"`` rows: each published value against
    our cells of the same dataset, strategy and family, only where the source states the dataset
    and strategy; a price against the one device-hour price our runs used. NaN (``unknown``)
    where either side has no value; ``note`` says why.
    """
    means = _our_means(summaries)
    rows = _ratio_rows(published, means) + [
        row
        for record in published.to_dict("records")
        for row in _value_rows(record, means, summaries)
    ]
    return pd.DataFrame(rows, columns=_COMPARISON_COLUMNS)


_COMPARISON_COLUMNS = [
    "comparison",
    "metric",
    "quantity",
    "source",
    "published_dataset",
    "published_strategy",
    "published",
    "published_detail",
    "dataset",
    "strategy",
    "pipeline",
    "ours",
    "ours_detail",
    "difference",
    "note",
]


def _our_means(summaries: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x strategy x pipeline label: family, seeds, and the mean of each metric over
    the seeds where it is defined (NaN if none)."""
    keys = ["dataset", "strategy", "pipeline", "family"]
    grouped = summaries.groupby(keys, sort=False)
    means = grouped[list(SUMMARY_METRICS)].mean()  # pandas skips NaN
    means["seeds"] = grouped.size()
    return means.reset_index()


def _matches(stated: str, ours: str) -> bool:
    return stated in (NOT_STATED, ours)


def _ratio_rows(published: pd.DataFrame, means: pd.DataFrame) -> list[dict]:
    rows = []
    setting_columns = ["source", "dataset", "backbone", "strategy"]
    for setting, values in published.groupby(setting_columns, sort=False):
        source, dataset, _, strategy = setting
        by_family = {(r["pipeline"], r["metric"]): r["value"] for r in values.to_dict("records")}
        complete = _complete_settings(means, dataset, strategy)
        for metric in RATIO_METRICS:
            for num, den in RATIO_PAIRS:
                if (num, metric) not in by_family or (den, metric) not in by_family:
                    continue
                base = {
                    "comparison": "ratio",
                    "metric": metric,
                    "quantity": f"{num}/{den}",
                    "source": source,
                    "published_dataset": dataset,
                    "published_strategy": strategy,
                    "published": by_family[(num, metric)] / by_family[(den, metric)],
                    "published_detail": f"{by_family[(num, metric)]:g} / "
                    f"{by_family[(den, metric)]:g}",
                }
                rows += _our_ratios(base, complete, metric, num, den)
    return rows


def _complete_settings(means: pd.DataFrame, dataset: str, strategy: str) -> pd.DataFrame:
    """Our rows of the dataset x strategy pairs (matching the stated ones) that have all three
    families standard, svpp and asvp."""
    if means.empty:
        return means
    families = means.groupby(["dataset", "strategy"])["family"].agg(set)
    complete = [
        key
        for key, present in families.items()
        if {"standard", "svpp", "asvp"} <= present
        and _matches(dataset, key[0])
        and _matches(strategy, key[1])
    ]
    keys = pd.MultiIndex.from_frame(means[["dataset", "strategy"]])
    return means[keys.isin(complete)]


def _our_ratios(base: dict, complete: pd.DataFrame, metric: str, num: str, den: str) -> list[dict]:
    if complete.empty:
        note = "no dataset x strategy of this grid has all three pipelines (standard, svpp, asvp)"
        return [_with_ours(base, "", "", "", math.nan, "", note)]
    rows = []
    for (dataset, strategy), ours in complete.groupby(["dataset", "strategy"], sort=False):
        for n in ours[ours["family"] == num].to_dict("records"):
            for d in ours[ours["family"] == den].to_dict("records"):
                top, bottom = n[metric], d[metric]
                defined = math.isfinite(top) and math.isfinite(bottom) and bottom != 0
                ratio = top / bottom if defined else math.nan
                missing = [r["pipeline"] for r in (n, d) if not math.isfinite(r[metric])]
                note = (
                    f"our value undefined: {', '.join(missing)} never reached the target"
                    if missing
                    else ("" if defined else "our denominator is 0")
                )
                label = f"{n['pipeline']}/{d['pipeline']}"
                detail = f"{top:.6g} / {bottom:.6g}"
                rows.append(_with_ours(base, dataset, strategy, label, ratio, detail, note))
    return rows


def _with_ours(
    base: dict, dataset: str, strategy: str, pipeline: str, ours: float, detail: str, note: str
) -> dict:
    published = base["published"]
    return {
        **base,
        "dataset": dataset,
        "strategy": strategy,
        "pipeline": pipeline,
        "ours": ours,
        "ours_detail": detail,
        "difference": ours - published if math.isfinite(ours) else math.nan,
        "note": note,
    }


def _value_rows(record: dict, means: pd.DataFrame, summaries: pd.DataFrame) -> list[dict]:
    base = {
        "comparison": "value",
        "metric": record["metric"],
        "quantity": record["pipeline"],
        "source": record["source"],
        "published_dataset": record["dataset"],
        "published_strategy": record["strategy"],
        "published": record["value"],
        "published_detail": f"{record['value']:g} {record['unit']}",
    }
    if record["metric"] == PRICE_METRIC:
        prices = sorted(set(summaries["device_hour_price"])) if not summaries.empty else []
        if len(prices) == 1:
            devices = ", ".join(sorted(set(summaries["device"])))
            return [_with_ours(base, "", "", "", prices[0], f"grid price ({devices})", "")]
        note = f"our runs used {len(prices)} device-hour prices: {prices}"
        return [_with_ours(base, "", "", "", math.nan, "", note)]
    unstated = [c for c in ("dataset", "strategy") if record[c] == NOT_STATED]
    if unstated:
        note = (
            f"not comparable in dollars: the source does not state its {' or '.join(unstated)}; "
            "see the ratios"
        )
        return [_with_ours(base, "", "", "", math.nan, "", note)]
    mine = means[
        (means["dataset"] == record["dataset"])
        & (means["strategy"] == record["strategy"])
        & (means["family"] == record["pipeline"])
    ]
    if mine.empty:
        note = (
            f"no cell of this grid has dataset {record['dataset']}, strategy "
            f"{record['strategy']}, pipeline family {record['pipeline']}"
        )
        return [_with_ours(base, "", "", "", math.nan, "", note)]
    context = [c for c in GROUP_CONTEXT if record[c] == NOT_STATED]
    caveat = f"the source does not state its {', '.join(context)}" if context else ""
    rows = []
    for ours in mine.to_dict("records"):
        value = ours[record["metric"]]
        note = caveat if np.isfinite(value) else "our value undefined (target never reached)"
        detail = f"seed mean over {ours['seeds']} seed(s)"
        rows.append(
            _with_ours(
                base, ours["dataset"], ours["strategy"], ours["pipeline"], value, detail, note
            )
        )
    return rows


def write_comparison(
    comparison: pd.DataFrame, out_dir: Path, hardware: dict[str, int] | None = None
) -> str:
    """Write ``published_comparison.csv`` and ``published_comparison.md`` (``unknown`` for a
    missing value, and the hardware our runs came from, ``hardware``, under the tables) into
    ``out_dir``; return the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = comparison.copy()
    for column in ("published", "ours", "difference"):
        digits = shown["comparison"].map({"ratio": ".4f", "value": ".6g"})
        shown[column] = [
            format(v, d) if math.isfinite(v) else "unknown"
            for v, d in zip(shown[column], digits, strict=True)
        ]
    shown.to_csv(out_dir / "published_comparison.csv", index=False)
    sources = sorted(set(shown["source"]))
    shown["source"] = shown["source"].map(source_short)  # the full names are listed above
    ratios = shown[shown["comparison"] == "ratio"].drop(columns="comparison")
    values = shown[shown["comparison"] == "value"].drop(columns="comparison")
    markdown = "\n\n".join(
        [
            f"# Ours vs published: {PAPER}",
            DOLLARS_NOTE,
            "Sources: " + "; ".join(f"`{source_short(s)}` = {s}" for s in sources) + ".",
            "## Ratios between pipelines",
            markdown_table(ratios) if not ratios.empty else "(no published ratio)",
            "## Published values",
            markdown_table(values) if not values.empty else "(no published value)",
            *([f"Ours: {hardware_note(hardware)}"] if hardware else []),
        ]
    )
    (out_dir / "published_comparison.md").write_text(markdown + "\n")
    return markdown
