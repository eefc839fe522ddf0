"""The model-scale view (the paper's Figure 1): how sampling time and final accuracy of each
pipeline change as the pre-trained backbone grows, on one dataset.

It is drawn for a grid whose dataset entries put one registry dataset under several backbones
(each entry its own label and ``backbone:``, as ``experiments/model_scale.yaml`` does with
EfficientNet-Lite0, -Lite1 and -Lite2 on MNIST-5k). Each entry is one point on the x axis: its
backbone, ordered by parameter count (of the feature extractor as the cells use it, counted by
loading it, without its pre-training classifier). Per pipeline x strategy the points are the
seed means of the per-seed ``sampling_hours`` (the whole run's measured selection compute,
:data:`~benchmark.metric_names.SAMPLING_SECONDS` summed over rounds: the number the cost
columns use) and ``final_acc`` of :func:`benchmark.report.summary.seed_summaries`, with ±1 std
over seeds as error bars. ``sampling_growth`` divides a row's mean sampling time by that of the
same pipeline and strategy on the smallest backbone, the number that says whether standard AL's
selection cost grows faster with model size than SVPp's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from asvp.models.backbones import backbone_parameter_count
from benchmark.grid import FULL_DATA, RANDOM
from benchmark.report.curves import CellCurve
from benchmark.report.figure_style import (
    FigureStyle,
    cell_stats,
    footnote,
    pipeline_handles,
    sectioned_legend,
    strategy_handles,
    style_from_summaries,
    themed,
)
from benchmark.report.figures import DPI
from benchmark.report.render import markdown_table
from benchmark.report.summary import hardware_counts

MODEL_SCALE_COLUMNS = (
    "dataset",
    "label",
    "backbone",
    "parameters",
    "pipeline",
    "strategy",
    "family",
    "seeds",
    "sampling_hours_mean",
    "sampling_hours_std",
    "final_acc_mean",
    "final_acc_std",
    "sampling_growth",
)
"""The columns of :func:`model_scale_table` (and of ``model_scale.csv``)."""

_DODGE = 0.06  # horizontal offset between the series at one backbone, in x-axis units


def backbone_parameters(name: str, options: dict) -> int:
    """Parameters of the backbone ``name`` with ``options`` as a cell uses it, counted on its
    architecture without its weights (:func:`asvp.models.backbones.backbone_parameter_count`):
    a grid of foundation models is reported where their checkpoints are not."""
    return backbone_parameter_count(name, options)


def scale_entries(curves: Sequence[CellCurve]) -> dict[str, dict[str, CellCurve]]:
    """Per registry dataset run under several backbones: its dataset labels, each with one of
    its curves (which says the label's backbone); datasets with one backbone are left out."""
    entries: dict[str, dict[str, CellCurve]] = {}
    for curve in curves:
        entries.setdefault(curve.cell.config.dataset, {}).setdefault(
            curve.cell.dataset_label, curve
        )
    return {
        dataset: labels
        for dataset, labels in entries.items()
        if len({c.cell.config.backbone for c in labels.values()}) > 1
    }


def model_scale_table(
    curves: Sequence[CellCurve], summaries: pd.DataFrame, dataset: str
) -> pd.DataFrame:
    """Per dataset label of ``dataset`` (one backbone each) x pipeline x strategy, smallest
    backbone first: the backbone, its parameter count, seeds, mean and std of sampling hours
    and final accuracy, and the sampling growth over the smallest backbone
    (:data:`MODEL_SCALE_COLUMNS`). The random baseline is a row (no sampling time: its growth
    is undefined); full-data cells are not."""
    labels = scale_entries(curves)[dataset]
    sizes = {
        label: backbone_parameters(c.cell.config.backbone, c.cell.config.backbone_options)
        for label, c in labels.items()
    }
    rows = []
    for label in sorted(labels, key=lambda label: (sizes[label], label)):
        mine = summaries[(summaries["dataset"] == label) & (summaries["family"] != FULL_DATA)]
        stats = cell_stats(mine, ["sampling_hours", "final_acc"])
        stats.insert(0, "parameters", sizes[label])
        stats.insert(0, "backbone", labels[label].cell.config.backbone)
        stats.insert(0, "label", label)
        stats.insert(0, "dataset", dataset)
        rows.append(stats)
    table = pd.concat(rows, ignore_index=True)
    first = table.groupby(["pipeline", "strategy"], sort=False)["sampling_hours_mean"]
    smallest = first.transform("first")
    table["sampling_growth"] = (table["sampling_hours_mean"] / smallest).where(smallest > 0)
    return table[list(MODEL_SCALE_COLUMNS)]


def _tick(row: pd.Series) -> str:
    return f"{row['backbone']}\n{row['parameters'] / 1e6:.2f}M params"


@themed
def model_scale_figure(table: pd.DataFrame, style: FigureStyle, hardware: str) -> Figure:
    """Two panels over the backbones of one :func:`model_scale_table`: sampling hours per run
    (log axis) and final test accuracy, a line per selecting pipeline x strategy through seed
    means with ±1 std error bars; the random baseline's accuracy as a dotted black line."""
    figure = Figure(figsize=(11.5, 4.6), layout="constrained")
    time_ax, acc_ax = figure.subplots(1, 2)
    backbones = table.drop_duplicates("label")
    positions = {label: i for i, label in enumerate(backbones["label"])}
    series = table.groupby(["pipeline", "strategy"], sort=False)
    for i, ((pipeline, strategy), rows) in enumerate(series):
        random = rows["family"].iloc[0] == RANDOM
        shift = (i - (len(series) - 1) / 2) * _DODGE
        x = [positions[label] + shift for label in rows["label"]]
        look = {
            "color": style.colours[pipeline],
            "marker": "" if random else style.strategy_markers[strategy],
            "linestyle": ":" if random else "-",
            "capsize": 3,
            "markersize": 7,
        }
        acc_ax.errorbar(x, rows["final_acc_mean"], yerr=rows["final_acc_std"], **look)
        if not random:
            time_ax.errorbar(
                x, rows["sampling_hours_mean"], yerr=rows["sampling_hours_std"], **look
            )
    time_ax.set_yscale("log")
    for ax in (time_ax, acc_ax):
        ax.set_xticks(range(len(positions)), [_tick(row) for _, row in backbones.iterrows()])
        ax.set_xlabel("pre-trained backbone (parameters without its classifier)")
    time_ax.set_ylabel("sampling time per run (hours of device time, log)")
    acc_ax.set_ylabel("final test accuracy")
    dataset = table["dataset"].iloc[0]
    figure.suptitle(f"{dataset}: sampling time and accuracy as the backbone grows")
    selecting = table[table["family"] != RANDOM]
    randoms = table.loc[table["family"] == RANDOM, "pipeline"].unique()
    baseline = [
        Line2D([], [], color=style.colours[p], linestyle=":", label=f"{p} (accuracy)")
        for p in randoms
    ]
    sectioned_legend(
        figure,
        [
            ("pipeline", pipeline_handles(selecting["pipeline"], style)),
            ("strategy", strategy_handles(selecting["strategy"], style)),
            ("baseline", baseline),
        ],
        "outside right upper",
    )
    seeds = ", ".join(str(s) for s in sorted(table["seeds"].unique()))
    footnote(
        figure,
        [
            f"Points: mean over {seeds} seeds, error bars ±1 std. Sampling time: measured wall "
            "time of the compute that made the selections (feature extraction, proxy training, "
            "standard AL's per-round fine-tunes, scoring), summed over the run's rounds; "
            f"computed on {hardware}."
        ],
    )
    return figure


def write_model_scale(
    curves: Sequence[CellCurve], summaries: pd.DataFrame, out_dir: Path
) -> list[Path]:
    """For each dataset run under several backbones: ``model_scale_<dataset>.{csv,md}`` in
    ``out_dir`` and ``figures/model_scale_<dataset>.png``; return the figures' paths (none for
    a grid with one backbone per dataset)."""
    written = []
    style = style_from_summaries(summaries)
    hardware = ", ".join(hardware_counts(summaries["hardware"]))
    for dataset in sorted(scale_entries(curves)):
        table = model_scale_table(curves, summaries, dataset)
        csv = out_dir / f"model_scale_{dataset}.csv"
        table.to_csv(csv, index=False)
        md = out_dir / f"model_scale_{dataset}.md"
        md.write_text(_markdown(table) + "\n")
        png = out_dir / "figures" / f"model_scale_{dataset}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        model_scale_figure(table, style, hardware).savefig(png, dpi=DPI, bbox_inches="tight")
        written.append(png)
    return written


def _plus_minus(table: pd.DataFrame, column: str, spec: str) -> list[str]:
    """``mean ± std`` of ``column`` per row, each formatted with ``spec``."""
    pairs = zip(table[f"{column}_mean"], table[f"{column}_std"], strict=True)
    return [f"{mean:{spec}} ± {std:{spec}}" for mean, std in pairs]


def _markdown(table: pd.DataFrame) -> str:
    """The table as Markdown: mean ± std, hours to 3 significant digits (a CPU run's are
    thousandths), accuracy with 3 decimals."""
    growth = table["sampling_growth"]
    shown = pd.DataFrame(
        {
            "backbone": table["backbone"],
            "parameters": [f"{p / 1e6:.2f}M" for p in table["parameters"]],
            "pipeline": table["pipeline"],
            "strategy": table["strategy"],
            "seeds": table["seeds"],
            "sampling h": _plus_minus(table, "sampling_hours", ".3g"),
            "sampling x smallest": [f"{g:.2f}" if math.isfinite(g) else "" for g in growth],
            "final acc": _plus_minus(table, "final_acc", ".3f"),
        }
    )
    return markdown_table(shown)
