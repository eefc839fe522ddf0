"""The figures read right: bands within [0, 1], a legend entry only for what is plotted, error
bars inside the axes, no vertical equal-cost lines when training is negligible, overlap labels
clear of the panel titles, and the note on the shared first budget."""

import dataclasses

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from report_data import COSTS, synthetic_curves

from benchmark.grid import Costs
from benchmark.report import (
    accuracy_figure,
    cost_figure,
    discrepancy_figure,
    discrepancy_table,
    seed_summaries,
)
from benchmark.report.figures import FIRST_BUDGET_NOTE

# The CPU demo's prices: labelling dominates, training is ~1e-4 of it.
DEMO_COSTS = Costs(label_price=0.05, reviews_per_label=1, device_hour={"cuda": 0.10})


def _legend_texts(figure):
    return {text.get_text() for legend in figure.legends for text in legend.get_texts()}


def test_bands_stay_within_0_and_1_when_seeds_spread_near_the_top():
    curves = synthetic_curves(full=False, strategies=("margin",))
    spread = [
        dataclasses.replace(c, acc=np.clip(c.acc + 0.12 * (c.cell.config.seed - 1) + 0.1, 0, 1))
        for c in curves
    ]  # seeds 0.1 apart around an accuracy of ~1: mean + std > 1
    figure = accuracy_figure(spread, "cifar10")
    bands = [c for ax in figure.axes for c in ax.collections if isinstance(c, PolyCollection)]
    assert bands
    ys = np.concatenate([path.vertices[:, 1] for band in bands for path in band.get_paths()])
    assert ys.max() == pytest.approx(1.0) and ys.min() >= 0.0  # clipped, not dropped


def _plotted_colours(ax):
    return {tuple(np.round(c[0].get_color()[:3], 6)) for c in ax.containers}


def test_the_cost_legend_lists_only_plotted_cells():
    curves = synthetic_curves(strategies=("badge",), never_reaching="badge")  # svpp: none
    summaries = seed_summaries(curves, COSTS)
    figure = cost_figure(summaries, "cifar10")
    texts = _legend_texts(figure)
    assert "svpp-lpft" not in texts
    assert {"random-ft", "standard-ft", "standard-lpft", "asvp-auto"} <= texts
    legend = figure.legends[0]
    handles = [h for h in legend.legend_handles if h.get_visible()]
    pipelines = [h for h in handles if h.get_label() in texts and hasattr(h, "get_facecolor")]
    colours = {tuple(np.round(h.get_facecolor()[:3], 6)) for h in pipelines if h.get_label()}
    assert colours == _plotted_colours(figure.axes[0])  # one entry per plotted colour
    assert "never reached a* in any seed: svpp-lpft / badge" in figure.texts[0].get_text()


@pytest.mark.parametrize("costs", [COSTS, DEMO_COSTS], ids=["gpu-like", "demo-like"])
def test_every_error_bar_is_inside_the_axes(costs):
    summaries = seed_summaries(synthetic_curves(never_reaching="badge"), costs)
    ax = cost_figure(summaries, "cifar10").axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for container in ax.containers:
        for bars in container[2]:
            for segment in bars.get_segments():
                assert x0 < segment[:, 0].min() and segment[:, 0].max() < x1
                assert y0 < segment[:, 1].min() and segment[:, 1].max() < y1


def test_negligible_training_cost_drops_the_vertical_equal_cost_lines():
    curves = synthetic_curves(never_reaching="badge")
    demo = cost_figure(seed_summaries(curves, DEMO_COSTS), "cifar10")
    dashed = [line for line in demo.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert dashed == []
    assert "No equal-total-cost lines" in demo.texts[0].get_text()
    assert "dashed" not in demo.axes[0].get_title()
    gpu = cost_figure(seed_summaries(curves, COSTS), "cifar10")
    assert [line for line in gpu.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert "No equal-total-cost lines" not in gpu.texts[0].get_text()


def test_overlap_labels_do_not_touch_the_panel_titles():
    curves = synthetic_curves()
    figure = discrepancy_figure(discrepancy_table(curves), "cifar10")
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    for ax in figure.axes:
        title = ax.title.get_window_extent(renderer)
        frame = ax.get_window_extent(renderer)
        labels = [t for t in ax.texts if t.get_text().endswith("%")]
        assert labels
        for label in labels:
            box = label.get_window_extent(renderer)
            assert box.y1 < frame.y1 and not box.overlaps(title), label.get_text()


def test_the_first_budget_note_appears_when_lp_ft_and_ft_share_a_figure():
    curves = synthetic_curves(strategies=("margin",))
    mixed = accuracy_figure(curves, "cifar10")
    assert FIRST_BUDGET_NOTE[:40] in " ".join(t.get_text() for t in mixed.texts)
    ft_only = [c for c in curves if c.cell.config.train_method == "ft"]
    texts = " ".join(t.get_text() for t in accuracy_figure(ft_only, "cifar10").texts)
    assert FIRST_BUDGET_NOTE[:40] not in texts
