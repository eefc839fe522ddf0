"""Total cost on hand-computed rounds (asvp.costs)."""

import math

import numpy as np
import pytest

from asvp.costs import cumulative_sampling_hours, total_cost


def test_sampling_hours_before_each_budget():
    # rounds spend 3600 s, 7200 s, 99 s (the last round selects nothing it is charged for)
    hours = cumulative_sampling_hours([3600, 7200, 99])
    assert hours.tolist() == [0.0, 1.0, 3.0]
    assert cumulative_sampling_hours([3600, 7200, 99], devices=2).tolist() == [0.0, 2.0, 6.0]


def test_total_cost_interpolates_hours_between_budgets():
    budgets, hours = [100, 200, 300], [0.0, 1.0, 3.0]
    # n = 250: labels 250 x 0.1 x 3 = 75; hours 1 + (3 - 1) / 2 = 2 -> 2 x 3.06 = 6.12
    assert total_cost(250, budgets, hours, 0.1, 3, 3.06) == pytest.approx(75 + 6.12)
    assert total_cost(100, budgets, hours, 0.1, 1, 3.06) == pytest.approx(10.0)
    assert math.isnan(total_cost(float("nan"), budgets, hours, 0.1, 1, 3.06))
    assert np.isfinite(total_cost(300, budgets, hours, 0.0, 1, 0.0))
