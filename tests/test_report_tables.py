"""What Table 2 says and how: the random row is the reference (no ratio to itself), partial
reach in words that cannot read as zero variance, the saving in dollars, a warning for rows
that never reached a*, and the numbers beside the text in ``table2.csv``."""

import math

import numpy as np
import pandas as pd
import pytest
from report_data import COSTS, synthetic_curves
from test_report_formats import GRID  # a grid file for the captions

from asvp.costs import cumulative_sampling_hours, total_cost
from benchmark.grid import load_grid
from benchmark.report import REFERENCE, seed_summaries, table2, write_report


def _row(table, pipeline, strategy):
    rows = table.rows.set_index(["pipeline", "strategy"])
    return rows.loc[(pipeline, strategy)]


def _cost_at(curve, labels):
    hours = cumulative_sampling_hours(curve.sampling_seconds)
    price = COSTS.device_hour[curve.device]
    return total_cost(
        labels, curve.budgets, hours, COSTS.label_price, COSTS.reviews_per_label, price
    )


def test_the_random_row_is_the_reference_not_a_ratio_to_itself(curves, summaries):
    random = _row(table2(summaries), "random-ft", "random")
    for column in ("SSR", "cost saving vs random", "saving vs random (USD)"):
        assert random[column] == REFERENCE
    own = [_cost_at(c, c.budgets[-1]) for c in curves if c.cell.config.pipeline == "random"]
    assert random["total cost (USD)"].startswith(f"${np.mean(own):.2f}")  # its cost at B
    assert "reached" not in random["total cost (USD)"]
    assert _row(table2(summaries), "standard-ft", "margin")["SSR"] != REFERENCE


def test_the_saving_is_random_cost_at_b_minus_the_cost_to_reach_a_star(curves, summaries):
    randoms = [c for c in curves if c.cell.config.pipeline == "random"]
    random_cost = np.mean([_cost_at(c, c.budgets[-1]) for c in randoms])
    for row in summaries.to_dict("records"):
        assert row["reference_cost_usd"] == pytest.approx(random_cost)
        if math.isnan(row["total_cost_usd"]):
            assert math.isnan(row["saving_vs_random_usd"])  # never reached: no saving
        else:
            assert row["saving_vs_random_usd"] == pytest.approx(random_cost - row["total_cost_usd"])
    standard = summaries[
        (summaries["pipeline"] == "standard-ft") & (summaries["strategy"] == "margin")
    ]
    mean = (random_cost - standard["total_cost_usd"]).mean()
    cell = _row(table2(summaries), "standard-ft", "margin")["saving vs random (USD)"]
    assert cell.startswith(f"${mean:.2f} ± ")


def _partial(summaries, reached_seeds):
    """The standard-ft margin row with only ``reached_seeds`` reaching a*."""
    mine = (summaries["pipeline"] == "standard-ft") & (summaries["strategy"] == "margin")
    partial = summaries.copy()
    for column in ("ssr", "total_cost_usd", "cost_saving_vs_random", "saving_vs_random_usd"):
        partial.loc[mine & ~summaries["seed"].isin(reached_seeds), column] = math.nan
    return _row(table2(partial), "standard-ft", "margin")


def test_one_reaching_seed_is_a_single_value_with_no_spread(summaries):
    row = _partial(summaries, [1])
    ssr = summaries.loc[
        (summaries["pipeline"] == "standard-ft")
        & (summaries["strategy"] == "margin")
        & (summaries["seed"] == 1),
        "ssr",
    ].iloc[0]
    assert row["SSR"] == f"{ssr:.3f} (1 of 3 seeds reached a*; no spread)"
    assert "±" not in row["total cost (USD)"]


def test_several_reaching_seeds_say_what_the_spread_is_over(summaries):
    row = _partial(summaries, [0, 2])
    assert row["SSR"].endswith(" (over the 2 of 3 seeds that reached a*)")
    assert "±" in row["SSR"] and "[" not in row["SSR"]


def test_a_row_that_never_reached_is_warned_about_under_the_table(summaries, tmp_path):
    table = table2(summaries)
    assert _row(table, "svpp-lpft", "badge")["SSR"] == "never reached a* (0 of 3 seeds)"
    assert len(table.warnings) == 1
    warning = table.warnings[0]
    assert "cifar10 svpp-lpft badge" in warning and "LP-FT" in warning
    assert "margin" not in warning  # the rows that reached are not named
    path = tmp_path / "tables.yaml"
    path.write_text(GRID)
    markdown = write_report(load_grid(path), table, tmp_path / "out")
    assert warning in markdown.split("\n\n", 1)[1]  # right under the table
    reached = seed_summaries(synthetic_curves(), COSTS)
    assert table2(reached).warnings == []


def test_the_csv_keeps_the_text_columns_and_adds_the_numbers(summaries, tmp_path):
    table = table2(summaries)
    path = tmp_path / "tables.yaml"
    path.write_text(GRID)
    write_report(load_grid(path), table, tmp_path)
    csv = pd.read_csv(tmp_path / "table2.csv")
    assert list(csv.columns[: len(table.rows.columns)]) == list(table.rows.columns)
    assert csv.columns[-1] == "results_version"
    csv = csv.set_index(["pipeline", "strategy"])
    never = csv.loc[("svpp-lpft", "badge")]
    assert never["seeds_reached"] == 0 and math.isnan(never["ssr_mean"])
    margin = csv.loc[("standard-ft", "margin")]
    mine = summaries[(summaries["pipeline"] == "standard-ft") & (summaries["strategy"] == "margin")]
    assert margin["seeds_reached"] == 3
    assert margin["saving_vs_random_usd_mean"] == pytest.approx(mine["saving_vs_random_usd"].mean())
    assert margin["ssr_std"] == pytest.approx(mine["ssr"].std(ddof=1))
    random = csv.loc[("random-ft", "random")]
    assert math.isnan(random["ssr_mean"]) and random["total_cost_usd_mean"] > 0
