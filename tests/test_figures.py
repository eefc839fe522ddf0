"""The report's figures, drawn from synthetic curves: what each Axes holds before saving, and
the PNGs written."""

import struct

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from report_data import BUDGETS, COSTS, synthetic_curves

from benchmark.figures import (
    accuracy_figure,
    cost_figure,
    discrepancy_figure,
    figure_style,
    selection_time_figure,
    write_figures,
)
from benchmark.report import discrepancy_table, seed_summaries

PIPELINES = ["random-ft", "standard-ft", "standard-lpft", "svpp-lpft", "asvp-auto"]


def _horizontal(ax, linestyle):
    return [
        line
        for line in ax.get_lines()
        if np.ptp(line.get_ydata()) == 0 and line.get_linestyle() == linestyle
    ]


def _legend_texts(figure):
    return [text.get_text() for legend in figure.legends for text in legend.get_texts()]


def test_accuracy_figure_has_a_band_per_line_and_the_full_data_bound(curves):
    figure = accuracy_figure(curves, "cifar10")
    assert [ax.get_title() for ax in figure.axes] == ["margin", "badge"]
    full = np.mean([c.acc[-1] for c in curves if c.cell.config.pipeline == "full"])
    for ax in figure.axes:
        assert len(ax.get_lines()) == len(PIPELINES) + 1  # a line per pipeline + the bound
        (bound,) = _horizontal(ax, "--")
        assert bound.get_ydata()[0] == pytest.approx(full)
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == len(PIPELINES)
        assert ax.get_xlabel() == "Labelled samples"
        assert ax.get_ylabel() == "Test accuracy (top-1)"
    random_line = figure.axes[0].get_lines()[0]
    random_acc = np.mean([c.acc for c in curves if c.cell.config.pipeline == "random"], axis=0)
    np.testing.assert_allclose(random_line.get_ydata(), random_acc)
    np.testing.assert_allclose(random_line.get_xdata(), BUDGETS)
    texts = _legend_texts(figure)
    assert texts[: len(PIPELINES)] == PIPELINES
    assert any(t.startswith("full-data upper bound") and "50,000 labels" in t for t in texts)
    assert "band: ± 1 std over seeds" in figure.legends[0].get_title().get_text()
    assert figure.get_suptitle() == "cifar10: test accuracy vs labels (3 seed(s) per cell)"


def test_accuracy_figure_without_full_data_or_second_seed():
    figure = accuracy_figure(synthetic_curves(seeds=(0,), full=False), "cifar10")
    for ax in figure.axes:
        assert not _horizontal(ax, "--")
        assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert not any("full-data" in t for t in _legend_texts(figure))
    assert "one seed: no band" in figure.legends[0].get_title().get_text()


def test_cost_figure_like_revised_figure_2(summaries):
    figure = cost_figure(summaries, "cifar10")
    ax = figure.axes[0]
    reached = summaries[summaries["total_cost_usd"].notna() & (summaries["family"] != "full")]
    cells = reached.groupby(["pipeline", "strategy"], sort=False)
    assert len(ax.containers) == cells.ngroups == 8  # svpp-lpft / badge never reaches a*
    points = sorted((c[0].get_xdata()[0], c[0].get_ydata()[0]) for c in ax.containers)
    at = {  # random: its cost at B (the reference); the others: their cost to reach a*
        True: ("labelling_at_reference_usd", "training_at_reference_usd"),
        False: ("labelling_cost_usd", "training_cost_usd"),
    }
    expected = sorted(
        (g[at[p == "random-ft"][0]].mean(), g[at[p == "random-ft"][1]].mean())
        for (p, _), g in cells
    )
    np.testing.assert_allclose(points, expected)
    iso = _iso_lines(ax)
    assert len(iso) >= 3
    totals = [line.get_xdata() + line.get_ydata() for line in iso]
    assert all(np.ptp(t) == pytest.approx(0, abs=1e-6) for t in totals)
    labels = [t.get_text() for t in ax.texts if t.get_text().startswith("Total Cost: $")]
    assert labels
    assert ax.get_xlabel() == "Labelling cost (USD)"
    assert "(USD)" in ax.get_ylabel()
    (right,) = ax.child_axes
    assert right.get_ylabel() == "Sampling time up to n (device-hours at $3/h)"
    (note,) = figure.texts
    assert "never reached a* in any seed: svpp-lpft / badge" in note.get_text()
    assert {"pipeline", "strategy", *PIPELINES, "margin", "badge"} <= set(_legend_texts(figure))


def _iso_lines(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() == "--"]


def test_cost_figure_without_a_single_price_has_no_time_axis(summaries):
    mixed = summaries.copy()
    mixed.loc[mixed["family"] == "asvp", "device_hour_price"] = 2.0
    figure = cost_figure(mixed, "cifar10")
    assert not figure.axes[0].child_axes
    assert "No sampling-time axis" in figure.texts[0].get_text()


def test_selection_time_figure_like_figure_1(summaries):
    figure = selection_time_figure(summaries, "cifar10")
    ax = figure.axes[0]
    selecting = summaries[~summaries["family"].isin(["random", "full"])]
    cells = selecting.groupby(["pipeline", "strategy"], sort=False)
    assert len(ax.containers) == cells.ngroups == 8
    accs = sorted(c[0].get_ydata()[0] for c in ax.containers)
    assert accs == pytest.approx(sorted(g["final_acc"].mean() for _, g in cells))
    (random_line,) = _horizontal(ax, ":")
    (full_line,) = _horizontal(ax, "--")
    random_acc = summaries.loc[summaries["family"] == "random", "final_acc"].mean()
    assert random_line.get_ydata()[0] == pytest.approx(random_acc)
    assert full_line.get_ydata()[0] > random_acc
    assert ax.get_xscale() == "log"  # svpp's minutes against standard AL's hours
    assert ax.get_xlabel() == "Selection (sampling) compute per run (hours of device time)"
    assert ax.get_ylabel() == "Final test accuracy (at 10,000 labels)"


def test_discrepancy_figure_stacks_both_regions_per_selection(curves):
    regions = discrepancy_table(curves)
    figure = discrepancy_figure(regions, "cifar10")
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [f"{p} / {s}" for p in ("svpp-lpft", "asvp-auto") for s in ("margin", "badge")]
    budgets = len(BUDGETS) - 1  # the proxy does not select at the last budget
    for ax in figure.axes:
        assert len(ax.patches) == budgets * 2 * 4  # two bars of four segments per budget
        assert ax.get_ylabel() == "Samples selected (seed mean)"
    first = regions[(regions["pipeline"] == "svpp-lpft") & (regions["strategy"] == "margin")]
    first = first.sort_values("labels").iloc[0]
    proxy_bar = [p for p in figure.axes[0].patches if p.get_x() < -0.2]  # left bar, budget 0
    assert sum(p.get_height() for p in proxy_bar) == pytest.approx(
        first["both"] + first["proxy_only"]
    )
    assert len(_legend_texts(figure)) == 6


def test_colours_are_distinct_and_shared_by_family():
    style = figure_style([(p, p.split("-")[0]) for p in PIPELINES], ["margin", "badge"])
    assert len(set(style.colours.values())) == len(PIPELINES)
    assert style.colours["random-ft"] == (0.15, 0.15, 0.15)
    assert set(style.strategy_markers) == {"margin", "badge"}


def _png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_write_figures_writes_readable_pngs(tmp_path, curves, summaries):
    two = curves + synthetic_curves(datasets=("pets",), strategies=("margin",), full=False)
    both = seed_summaries(two, COSTS)
    paths = write_figures(two, both, discrepancy_table(two), tmp_path)
    kinds = ("accuracy", "cost", "selection_time", "discrepancy")
    assert sorted(p.name for p in paths) == sorted(
        f"{kind}_{dataset}.png" for kind in kinds for dataset in ("cifar10", "pets")
    )
    for path in paths:
        width, height = _png_size(path)
        assert 800 <= width <= 4000 and 400 <= height <= 3000, path.name
        assert path.stat().st_size > 20_000


def test_a_dataset_without_selecting_cells_gets_no_selection_figures(tmp_path):
    only_random = [c for c in synthetic_curves(full=False) if c.cell.config.pipeline == "random"]
    summaries = seed_summaries(only_random, COSTS)
    paths = write_figures(only_random, summaries, discrepancy_table(only_random), tmp_path)
    assert sorted(p.name for p in paths) == ["accuracy_cifar10.png", "cost_cifar10.png"]
