"""Budget-curve metrics on hand-computed curves."""

from __future__ import annotations

import math

import pytest

from asvp.metrics import (
    accuracy_at,
    area_under_budget_curve,
    budget_to_reach,
    interpolate_cumulative,
    mean_std,
    sample_saving_ratio,
)

# The random baseline used throughout: 0.50 at 100, 0.60 at 200, 0.70 at 400.
RB = [100, 200, 400]
RA = [0.50, 0.60, 0.70]


def test_accuracy_at_nodes_and_inside_segments():
    assert accuracy_at(RB, RA, 100) == pytest.approx(0.50)
    assert accuracy_at(RB, RA, 400) == pytest.approx(0.70)
    # 150 is halfway from 100 to 200: 0.50 + 0.5 * 0.10 = 0.55
    assert accuracy_at(RB, RA, 150) == pytest.approx(0.55)
    # 300 is halfway from 200 to 400: 0.60 + 0.5 * 0.10 = 0.65
    assert accuracy_at(RB, RA, 300) == pytest.approx(0.65)
    # 250: 0.60 + (50 / 200) * 0.10 = 0.625
    assert accuracy_at(RB, RA, 250) == pytest.approx(0.625)


@pytest.mark.parametrize("budget", [99, 401, math.nan])
def test_accuracy_at_refuses_extrapolation(budget):
    with pytest.raises(ValueError, match="outside"):
        accuracy_at(RB, RA, budget)


def test_budget_to_reach_mid_segment():
    # 0.50 at 100, 0.58 at 200, 0.74 at 400; target 0.66 is first reached between 200 and 400:
    # 200 + (0.66 - 0.58) / (0.74 - 0.58) * 200 = 200 + 0.5 * 200 = 300
    assert budget_to_reach(RB, [0.50, 0.58, 0.74], 0.66) == pytest.approx(300.0)


def test_budget_to_reach_first_crossing_not_later_one():
    # rises above 0.6 at 200 (0.65), dips below at 300 (0.55), rises again at 400 (0.70);
    # first crossing of 0.6 is in [100, 200]: 100 + (0.6 - 0.5) / (0.65 - 0.5) * 100 = 166.67
    got = budget_to_reach([100, 200, 300, 400], [0.50, 0.65, 0.55, 0.70], 0.60)
    assert got == pytest.approx(100 + 100 * 0.1 / 0.15)


def test_budget_to_reach_at_node_and_first_budget_and_never():
    # exactly at a node: 0.60 is reached at 200
    assert budget_to_reach(RB, RA, 0.60) == pytest.approx(200.0)
    # already reached at the first budget: no extrapolation below 100
    assert budget_to_reach(RB, [0.80, 0.85, 0.90], 0.70) == 100.0
    assert budget_to_reach(RB, RA, 0.50) == 100.0
    # exactly at the target at the first budget, then a dip: still the first budget
    assert budget_to_reach(RB, [0.70, 0.65, 0.72], 0.70) == 100.0
    # never reached
    assert math.isnan(budget_to_reach(RB, RA, 0.71))


def test_sample_saving_ratio_default_reference_is_methods_last_budget():
    # a* = random at 400 = 0.70; method 0.55, 0.70, 0.75 reaches 0.70 at 200: SSR = 1 - 200/400
    assert sample_saving_ratio(RB, [0.55, 0.70, 0.75], RB, RA) == pytest.approx(0.5)


def test_sample_saving_ratio_interpolated():
    # B = 400, a* = 0.70. Method: 0.50 at 100, 0.62 at 200, 0.78 at 400.
    # n = 200 + (0.70 - 0.62) / (0.78 - 0.62) * 200 = 200 + 0.5 * 200 = 300; SSR = 1 - 300/400
    assert sample_saving_ratio(RB, [0.50, 0.62, 0.78], RB, RA) == pytest.approx(0.25)


def test_sample_saving_ratio_explicit_reference_budget():
    # B = 300: a* = random at 300 = 0.65. Method reaches 0.65 between 100 (0.60) and 200 (0.70):
    # n = 100 + (0.05 / 0.10) * 100 = 150; SSR = 1 - 150/300 = 0.5
    got = sample_saving_ratio(RB, [0.60, 0.70, 0.72], RB, RA, reference_budget=300)
    assert got == pytest.approx(0.5)


def test_sample_saving_ratio_first_budget_never_and_random_itself():
    # at or above a* = 0.70 from the start: n = 100, SSR = 1 - 100/400 = 0.75
    assert sample_saving_ratio(RB, [0.71, 0.72, 0.73], RB, RA) == pytest.approx(0.75)
    # never reaches 0.70: NaN, not extrapolated
    assert math.isnan(sample_saving_ratio(RB, [0.50, 0.60, 0.69], RB, RA))
    # random against itself: n = B, SSR = 0
    assert sample_saving_ratio(RB, RA, RB, RA) == pytest.approx(0.0)


def test_sample_saving_ratio_random_curve_on_other_budgets():
    # random measured at 100, 500: at 400 it is 0.50 + (300/400) * 0.20 = 0.65.
    # method 0.55, 0.65, 0.70 reaches 0.65 at 200: SSR = 1 - 200/400 = 0.5
    got = sample_saving_ratio(RB, [0.55, 0.65, 0.70], [100, 500], [0.50, 0.70])
    assert got == pytest.approx(0.5)


def test_sample_saving_ratio_errors():
    with pytest.raises(ValueError, match="strictly increasing.*200.*200"):
        sample_saving_ratio([100, 200, 200], [0.5, 0.6, 0.7], RB, RA)
    with pytest.raises(ValueError, match="strictly increasing.*400.*200"):
        sample_saving_ratio(RB, RA, [100, 400, 200], RA)
    with pytest.raises(ValueError, match="3 entries but acc has 2"):
        sample_saving_ratio(RB, [0.5, 0.6], RB, RA)
    with pytest.raises(ValueError, match="NaN at position 1"):
        sample_saving_ratio(RB, [0.5, math.nan, 0.7], RB, RA)
    with pytest.raises(ValueError, match="NaN at position 2"):
        sample_saving_ratio(RB, RA, RB, [0.5, 0.6, math.nan])
    with pytest.raises(ValueError, match="reference_budget 500"):
        sample_saving_ratio(RB, RA, RB, RA, reference_budget=500)
    # the method's last budget is beyond the random curve
    with pytest.raises(ValueError, match="reference_budget 800"):
        sample_saving_ratio([100, 800], [0.5, 0.8], RB, RA)


def test_area_under_budget_curve():
    # trapezoids: 100 * (0.50 + 0.60) / 2 = 55, 200 * (0.60 + 0.70) / 2 = 130; 185 / 300
    assert area_under_budget_curve(RB, RA) == pytest.approx(185 / 300)
    assert area_under_budget_curve([100], [0.42]) == pytest.approx(0.42)
    # a constant curve has its constant as normalised area
    assert area_under_budget_curve(RB, [0.3, 0.3, 0.3]) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="strictly increasing"):
        area_under_budget_curve([200, 100], [0.5, 0.6])


def test_interpolate_cumulative():
    hours = [0.0, 2.0, 6.0]
    # 300 is halfway from 200 to 400: 2 + 0.5 * 4 = 4
    assert interpolate_cumulative(RB, hours, 300) == pytest.approx(4.0)
    assert interpolate_cumulative(RB, hours, 100) == pytest.approx(0.0)
    assert interpolate_cumulative(RB, hours, 400) == pytest.approx(6.0)
    assert math.isnan(interpolate_cumulative(RB, hours, math.nan))
    assert math.isnan(interpolate_cumulative(RB, [0.0, math.nan, 6.0], 300))
    # a NaN outside the segment used does not spoil the value
    assert interpolate_cumulative(RB, [0.0, 2.0, math.nan], 150) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        interpolate_cumulative(RB, hours, 50)


def test_mean_std():
    # mean of 1, 2, 3, 6 = 3; squared deviations 4 + 1 + 0 + 9 = 14; ddof=1: sqrt(14 / 3)
    mean, std, count = mean_std([1.0, 2.0, math.nan, 3.0, 6.0])
    assert (mean, count) == (pytest.approx(3.0), 4)
    assert std == pytest.approx(math.sqrt(14 / 3))
    assert mean_std([0.25, math.nan]) == (0.25, 0.0, 1)
    mean, std, count = mean_std([math.nan, math.nan])
    assert math.isnan(mean) and math.isnan(std) and count == 0
    mean, std, count = mean_std([])
    assert math.isnan(mean) and count == 0
