"""The region counts of the selection-discrepancy analysis, on hand-made selections."""

import math

import numpy as np

from asvp.discrepancy import selection_discrepancy


def test_regions_and_proxy_correctness_split():
    proxy = np.array([1, 2, 3, 4, 5])
    model = np.array([4, 5, 6, 7, 8])
    correct = np.array([2, 5, 6, 7, 9, 100])  # 9 and 100 were selected by neither
    d = selection_discrepancy(proxy, model, correct)
    assert (d.both, d.proxy_only, d.model_only) == (2, 3, 3)
    assert d.both_proxy_correct == 1  # 5
    assert d.proxy_only_proxy_correct == 1  # 2
    assert d.model_only_proxy_correct == 2  # 6, 7
    assert d.overlap == 0.4


def test_identical_and_disjoint_selections():
    same = selection_discrepancy(np.array([3, 1]), np.array([1, 3]), np.array([], np.int64))
    assert (same.both, same.proxy_only, same.model_only, same.overlap) == (2, 0, 0, 1.0)
    apart = selection_discrepancy(np.array([1]), np.array([2]), np.array([1, 2]))
    assert (apart.both, apart.proxy_only_proxy_correct, apart.model_only_proxy_correct) == (0, 1, 1)
    assert apart.overlap == 0.0
    empty = selection_discrepancy(np.array([], np.int64), np.array([], np.int64), np.array([1]))
    assert math.isnan(empty.overlap)
