"""Which differences a table can stand behind (issue 14, item 3): 95% intervals over seeds,
paired per-budget tests between pipelines of the same strategy and seeds, their markers in
Table 2 (Markdown, LaTeX, CSV), the within-noise notes and the pairwise win-matrix figure."""

import math

import numpy as np
import pytest
from report_data import COSTS, make_cell, synthetic_curves
from scipy import stats

from benchmark.grid import load_grid
from benchmark.report import (
    BETTER,
    TIE,
    UNTESTED,
    WORSE,
    CellCurve,
    confidence_interval,
    marker,
    paired_test,
    paired_tests,
    seed_summaries,
    table2,
    win_counts,
    win_matrix,
    write_figures,
    write_report,
)

BUDGETS = (10, 20, 30, 40)


def _curve(family, method, strategy, seed, acc):
    budgets = np.array(BUDGETS, dtype=float)
    return CellCurve(
        cell=make_cell("mnist5k", family, method, strategy, seed, budgets=BUDGETS),
        budgets=budgets,
        acc=np.asarray(acc, dtype=float),
        sampling_seconds=np.array([1.0, 1.0, 1.0, 0.0]),
        evaluation_seconds=np.full(4, 10.0),
        device="cuda",
        updates_at="",
        discrepancy={},
    )


def _grid_of_three_seeds():
    """A random baseline; standard-ft clearly above svpp-lpft after the first budget (a
    seed-dependent offset that the pairing removes); asvp-auto = svpp-lpft + noise."""
    offsets = {0: -0.03, 1: 0.0, 2: 0.04}
    noise = {0: (0.004, -0.002, 0.001), 1: (-0.003, 0.002, 0.0), 2: (0.0, 0.001, -0.004)}
    curves = []
    for seed, offset in offsets.items():
        base = np.array([0.5, 0.6, 0.7, 0.75]) + offset
        curves.append(_curve("random", "ft", "random", seed, base))
        svpp = base + np.array([0.0, 0.02, 0.02, 0.01])
        curves.append(_curve("svpp", "lpft", "margin", seed, svpp))
        curves.append(_curve("standard", "ft", "margin", seed, svpp + [0.0, 0.05, 0.06, 0.05]))
        curves.append(_curve("asvp", "auto", "margin", seed, svpp + [0.0, *noise[seed]]))
    return curves


def test_the_interval_is_student_t_over_the_finite_values():
    low, high = confidence_interval([1.0, 2.0, 3.0, math.nan])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 df) x std 1 / sqrt(3)
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half))
    assert confidence_interval([0.4, math.nan]) is None
    low2, high2 = confidence_interval([1.0, 3.0])
    assert high2 - low2 == pytest.approx(2 * 12.706204736174698 * math.sqrt(2) / math.sqrt(2))


def test_a_paired_test_matches_scipy_and_handles_no_spread():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.7, 0.02, 5), rng.normal(0.68, 0.02, 5)
    test = paired_test(a - b, budget=40)
    assert test.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert test.mean_difference == pytest.approx(float(np.mean(a - b)))
    assert paired_test([0.0, 0.0, 0.0], 40).verdict == TIE
    assert paired_test([0.01, 0.01], 40).verdict == BETTER  # no spread, not zero: decisive
    assert paired_test([-0.01, -0.01], 40).verdict == WORSE
    assert paired_test([0.05], 40).verdict == UNTESTED


def test_pairs_are_same_strategy_and_seed_and_skip_the_first_budget():
    paired = paired_tests(_grid_of_three_seeds())
    assert set(paired["budget"]) == {20, 30, 40}  # 10 is the shared random draw
    assert set(paired["strategy"]) == {"margin"}  # the random baseline pairs with nothing
    assert set(paired["seeds"]) == {3}
    standard = paired[(paired["pipeline"] == "standard-ft") & (paired["against"] == "svpp-lpft")]
    assert list(standard["verdict"]) == [BETTER] * 3
    reverse = paired[(paired["pipeline"] == "svpp-lpft") & (paired["against"] == "standard-ft")]
    assert list(reverse["verdict"]) == [WORSE] * 3
    asvp = paired[(paired["pipeline"] == "asvp-auto") & (paired["against"] == "svpp-lpft")]
    assert list(asvp["verdict"]) == [TIE] * 3
    counts = win_counts(paired)
    row = counts[(counts["pipeline"] == "standard-ft") & (counts["against"] == "asvp-auto")]
    assert (int(row["better"].iloc[0]), int(row["budgets"].iloc[0])) == (3, 3)


def test_a_seed_missing_from_one_pipeline_leaves_the_others_paired():
    curves = [
        c
        for c in _grid_of_three_seeds()
        if not (c.cell.config.pipeline == "asvp" and c.cell.config.seed == 2)
    ]
    paired = paired_tests(curves)
    asvp = paired[(paired["pipeline"] == "asvp-auto") | (paired["against"] == "asvp-auto")]
    assert set(asvp["seeds"]) == {2}
    others = paired[(paired["pipeline"] != "asvp-auto") & (paired["against"] != "asvp-auto")]
    assert set(others["seeds"]) == {3}


def test_markers_say_higher_lower_both_or_within_noise():
    assert marker(better=2, worse=0, budgets=4, seeds=3) == "▲ 2/4"
    assert marker(better=0, worse=1, budgets=4, seeds=3) == "▼ 1/4"
    assert marker(better=1, worse=2, budgets=4, seeds=3) == "▲ 1/4 ▼ 2/4"
    assert marker(better=0, worse=0, budgets=4, seeds=3) == "≈ 0/4"
    assert marker(better=0, worse=0, budgets=4, seeds=1) == "n/a (1 seed)"


def test_table2_has_intervals_markers_and_the_within_noise_notes(tmp_path):
    curves = _grid_of_three_seeds()
    summaries = seed_summaries(curves, COSTS)
    table = table2(summaries, paired_tests(curves))
    rows = table.rows.set_index(["pipeline", "strategy"])
    assert list(table.rows.columns[-2:]) == ["vs svpp-lpft", "vs standard-ft"]
    assert rows.loc[("standard-ft", "margin"), "vs svpp-lpft"] == "▲ 3/3"
    assert rows.loc[("svpp-lpft", "margin"), "vs standard-ft"] == "▼ 3/3"
    assert rows.loc[("asvp-auto", "margin"), "vs svpp-lpft"] == "≈ 0/3"
    assert rows.loc[("svpp-lpft", "margin"), "vs svpp-lpft"] == ""
    assert rows.loc[("random-ft", "random"), "vs svpp-lpft"] == ""
    final = summaries.groupby(["pipeline", "strategy"])["final_acc"]
    low, high = confidence_interval(final.get_group(("standard-ft", "margin")))
    assert rows.loc[("standard-ft", "margin"), "final acc"].endswith(f"[{low:.3f}, {high:.3f}]")
    assert table.within_noise == ["mnist5k margin: svpp-lpft vs asvp-auto"]

    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(
        "name: g\ndatasets: [{name: mnist5k, budgets: [10, 20, 30, 40]}]\n"
        "backbone: efficientnet_lite0\nseeds: [0, 1, 2]\nstrategies: [random, margin]\n"
        "pipelines: [{pipeline: svpp, train_method: lpft}]\n"
        "costs: {label_price: 0.8, device_hour: {cuda: 3.0}}\n"
    )
    out = tmp_path / "out"
    markdown = write_report(load_grid(grid_file), table, out, paired=paired_tests(curves))
    assert "| ▲ 3/3 |" in markdown
    assert "Within noise (no budget's paired difference is significant): mnist5k margin: " in (
        markdown
    )
    assert "95% confidence interval" in markdown
    latex = (out / "table2.tex").read_text()
    assert r"$\blacktriangle$ 3/3" in latex and r"$\blacktriangledown$ 3/3" in latex
    assert "amssymb" in latex
    assert (out / "paired.csv").read_text().startswith("dataset,strategy,pipeline,against,")


def test_the_win_matrix_counts_wins_over_strategies_and_is_drawn(tmp_path):
    curves = synthetic_curves(seeds=(0, 1, 2, 3, 4), strategies=("margin", "badge"), full=False)
    paired = paired_tests(curves)
    wins, compared = win_matrix(paired, "cifar10")
    assert list(wins.index) == list(wins.columns)
    assert math.isnan(wins.loc["svpp-lpft", "svpp-lpft"])
    assert compared.loc["standard-ft", "svpp-lpft"] == 18  # 2 strategies x 9 budgets
    counted = paired[(paired["pipeline"] == "standard-ft") & (paired["against"] == "svpp-lpft")]
    assert wins.loc["standard-ft", "svpp-lpft"] == (counted["verdict"] == BETTER).sum() > 0
    summaries = seed_summaries(curves, COSTS)
    written = write_figures(curves, summaries, paired.iloc[0:0], tmp_path, paired)
    assert tmp_path / "pairwise_cifar10.png" in written
    assert (tmp_path / "pairwise_cifar10.png").stat().st_size > 10_000


def test_no_interval_when_a_seed_never_reached():
    """A seed that never reached a* has no SSR: an interval of the others would flatter the
    row, so the cell shows mean ± std and the count only."""
    summaries = seed_summaries(_grid_of_three_seeds(), COSTS)
    standard = (summaries["pipeline"] == "standard-ft").to_numpy()
    before = table2(summaries).rows.set_index(["pipeline", "strategy"])
    assert "[" in before.loc[("standard-ft", "margin"), "SSR"]  # every seed reached
    summaries.loc[standard & (summaries["seed"] == 2).to_numpy(), "ssr"] = math.nan
    rows = table2(summaries).rows.set_index(["pipeline", "strategy"])
    cell = rows.loc[("standard-ft", "margin"), "SSR"]
    assert cell.endswith("(over the 2 of 3 seeds that reached a*)")
    assert "[" not in cell and "±" in cell
