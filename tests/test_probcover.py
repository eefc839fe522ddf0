"""ProbCover: graph, greedy coverage and radius choice against brute force; contract; options."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import asvp.strategies.probcover  # noqa: F401  (registers "probcover")
from asvp.strategies import (
    Representation,
    SelectionRequest,
    check_strategy_options,
    select,
    strategy_inputs,
)
from asvp.strategies.kmeans import kmeans
from asvp.strategies.probcover import (
    PURITY_DELTAS,
    ball_purity,
    coverage_graph,
    covered_by,
    delta_by_purity,
    greedy_max_coverage,
    purity_radius,
)

# --------------------------------------------------------------------------- brute force


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum()))


def _plain_probcover(pool: np.ndarray, labeled: np.ndarray, budget: int, delta: float) -> list:
    """The authors' algorithm on plain sets: balls of radius delta (self included), points
    covered by labelled rows removed, then greedy (ties to the lowest row); stops when nothing
    new can be covered."""
    n = len(pool)
    balls = [{j for j in range(n) if j == i or _dist(pool[i], pool[j]) < delta} for i in range(n)]
    covered = {j for j in range(n) for lab in labeled if _dist(lab, pool[j]) < delta}
    picks = []
    for _ in range(budget):
        gains = [len(ball - covered) for ball in balls]
        best = max(range(n), key=lambda i: (gains[i], -i))
        if gains[best] == 0:
            break
        covered |= balls[best]
        picks.append(best)
    return picks


# --------------------------------------------------------------------------- graph and greedy


@pytest.mark.parametrize(("delta", "chunk"), [(0.5, None), (0.9, 7), (1.3, 1), (0.01, 4)])
def test_graph_matches_brute_force_including_the_last_partial_chunk(delta, chunk):
    """The authors' loop ran len // 500 batches: the last rows had no edges. Not here."""
    x = _unit(np.random.default_rng(0).normal(size=(30, 4)))
    covered = np.zeros(30, dtype=bool)
    covered[[2, 17]] = True
    indptr, indices = coverage_graph(torch.from_numpy(x), delta, covered=covered, chunk_rows=chunk)
    assert indptr.dtype == np.int64 and indices.dtype == np.int64
    for i in range(30):
        expected = [
            j for j in range(30) if not covered[j] and (i == j or _dist(x[i], x[j]) < delta)
        ]
        assert indices[indptr[i] : indptr[i + 1]].tolist() == expected


def test_greedy_matches_brute_force_on_a_hand_made_graph_with_ties():
    # 0 -> {0, 1, 2}; 1 -> {1, 3}; 2 -> {2, 4, 5}; 3 -> {3}; 4 -> {4, 5}; 5 -> {5}
    targets = [[0, 1, 2], [1, 3], [2, 4, 5], [3], [4, 5], [5]]
    indptr = np.cumsum([0] + [len(t) for t in targets])
    indices = np.concatenate([np.array(t) for t in targets])
    # step 1: rows 0 and 2 both cover 3 -> row 0; then 2 covers {4, 5} (2 new), 1 covers {3},
    # 4 covers {4, 5}: row 2 (lowest of the 2-gains); then row 1 covers {3}; then nothing.
    assert greedy_max_coverage(indptr, indices, 10).tolist() == [0, 2, 1]
    assert greedy_max_coverage(indptr, indices, 2).tolist() == [0, 2]
    assert greedy_max_coverage(np.zeros(1, dtype=np.int64), np.empty(0), 3).tolist() == []


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("delta", [0.6, 1.0])
def test_strategy_with_given_delta_matches_brute_force(seed, delta):
    rng = np.random.default_rng(seed)
    pool, labeled = rng.normal(size=(45, 3)), rng.normal(size=(4, 3))
    expected = _plain_probcover(_unit(pool), _unit(labeled), 60, delta)
    budget = len(expected) - 1  # strictly within the greedy phase
    pool_ids = np.arange(200, 245, dtype=np.int64)
    req = SelectionRequest(
        pool_ids,
        np.arange(4, dtype=np.int64),
        budget,
        np.random.default_rng(0),
        features=Representation(pool, labeled),
    )
    out = select("probcover", req, {"delta": delta})
    assert out.tolist() == pool_ids[expected[:budget]].tolist()


def test_after_full_coverage_the_rest_is_random_from_the_rng():
    rng = np.random.default_rng(1)
    pool, labeled = rng.normal(size=(40, 3)), rng.normal(size=(3, 3))
    greedy = _plain_probcover(_unit(pool), _unit(labeled), 40, 0.8)
    budget = len(greedy) + 5
    pool_ids = np.arange(40, dtype=np.int64) * 3
    req = SelectionRequest(
        pool_ids,
        np.array([500, 501, 502]),
        budget,
        np.random.default_rng(4),
        features=Representation(pool, labeled),
    )
    out = select("probcover", req, {"delta": 0.8})
    rest = np.setdiff1d(np.arange(40), greedy)
    tail = np.random.default_rng(4).choice(rest, size=5, replace=False)
    assert out.tolist() == pool_ids[greedy + tail.tolist()].tolist()
    other = select("probcover", replace(req, rng=np.random.default_rng(5)), {"delta": 0.8})
    assert other[: len(greedy)].tolist() == out[: len(greedy)].tolist()
    assert other.tolist() != out.tolist()


def test_covered_by_labelled_rows():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    centres = torch.tensor([[0.9, 0.1]])
    assert covered_by(x, centres, 0.5).tolist() == [True, False, False]
    assert covered_by(x, centres[:0], 0.5).tolist() == [False, False, False]


# --------------------------------------------------------------------------- radius by purity


def test_purity_radius_matches_brute_force():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(25, 3))
    labels = rng.integers(3, size=25)
    got = purity_radius(torch.from_numpy(x), labels, chunk_rows=4)
    expected = [
        min(_dist(x[i], x[j]) for j in range(25) if labels[j] != labels[i]) for i in range(25)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert np.isinf(purity_radius(torch.from_numpy(x), np.zeros(25))).all()


def _toy_sphere(seed=0, k=4, per=40, noise=0.15):
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(k, 6)))
    truth = np.repeat(np.arange(k), per)
    return _unit(centres[truth] + noise * rng.normal(size=(k * per, 6))), truth


def test_delta_by_purity_is_the_largest_grid_radius_reaching_the_threshold():
    x, _ = _toy_sphere()
    labels = kmeans(x, 4, rng=np.random.default_rng(0)).labels.numpy()
    delta = delta_by_purity(purity_radius(torch.from_numpy(x), labels), 0.95)

    def plain_purity(d):  # fraction of rows whose open d-ball holds only their label
        pure = [
            all(labels[j] == labels[i] for j in range(len(x)) if _dist(x[i], x[j]) < d)
            for i in range(len(x))
        ]
        return sum(pure) / len(x)

    assert delta in PURITY_DELTAS
    assert plain_purity(delta) >= 0.95
    larger = [d for d in PURITY_DELTAS if d > delta]
    assert larger and plain_purity(larger[0]) < 0.95
    assert 0.1 < delta < 1.9  # a real choice, not an end of the grid


def test_delta_by_purity_falls_back_to_the_smallest_radius_with_a_warning():
    radius = np.array([0.01, 0.02, 0.03])
    with pytest.warns(RuntimeWarning, match="purity"):
        assert delta_by_purity(radius, 0.95) == PURITY_DELTAS[0]
    assert ball_purity(radius, 0.02) == pytest.approx(2 / 3)
    assert delta_by_purity(np.full(3, np.inf), 0.95) == PURITY_DELTAS[-1]


def test_strategy_without_delta_uses_the_purity_radius_and_is_reproducible():
    x, _ = _toy_sphere(seed=1)
    pool_ids = np.arange(150, dtype=np.int64)
    req = SelectionRequest(
        pool_ids,
        np.arange(150, 160),
        3,  # within the greedy phase: after it the random tail depends on the rng's history
        np.random.default_rng(3),
        features=Representation(x[:150], x[150:]),
        num_classes=4,
    )
    out = select("probcover", req)
    again = select("probcover", replace(req, rng=np.random.default_rng(3)))
    assert out.tolist() == again.tolist()
    # equals the run with the radius the rule picks, computed by hand from the same rng
    labels = kmeans(x, 4, rng=np.random.default_rng(3)).labels.numpy()
    delta = delta_by_purity(purity_radius(torch.from_numpy(x), labels), 0.95)
    fixed = select("probcover", replace(req, rng=np.random.default_rng(3)), {"delta": delta})
    assert out.tolist() == fixed.tolist()
    assert len(_plain_probcover(x[:150], x[150:], 3, delta)) == 3  # greedy phase indeed


def test_missing_delta_and_num_classes_is_an_error_naming_the_option():
    req = SelectionRequest(
        np.arange(10),
        np.arange(10, 12),
        3,
        np.random.default_rng(0),
        features=Representation(np.ones((10, 3)), np.ones((2, 3))),
    )
    with pytest.raises(ValueError, match="'delta'.*num_classes"):
        select("probcover", req)


# --------------------------------------------------------------------------- contract, options


def _request(n=50, m=6, budget=5, seed=0, torch_rows=False):
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(300, 300 + 2 * (n + m) + 2))
    pool_x = rng.normal(size=(n, 4)).astype(np.float32)
    lab_x = rng.normal(size=(m, 4)).astype(np.float32)
    if torch_rows:
        pool_x, lab_x = torch.from_numpy(pool_x), torch.from_numpy(lab_x)
    return SelectionRequest(
        ids[:n].astype(np.int64),
        ids[n : n + m].astype(np.int64),
        budget,
        np.random.default_rng(seed + 1),
        features=Representation(pool_x, lab_x),
        num_classes=3,
    )


@pytest.mark.parametrize("options", [{}, {"delta": 0.7}])
@pytest.mark.parametrize(
    ("n", "m", "budget"), [(50, 6, 5), (50, 0, 12), (12, 3, 40), (0, 4, 3), (25, 5, 0), (9, 2, 9)]
)
def test_contract_sizes(n, m, budget, options):
    req = _request(n=n, m=m, budget=budget)
    out = select("probcover", req, options)
    assert out.size == min(budget, n)
    assert np.isin(out, req.pool_ids).all() and not np.isin(out, req.labeled).any()
    assert np.unique(out).size == out.size


def test_declared_inputs_and_torch_equals_numpy():
    assert strategy_inputs("probcover") == {"features"}
    a = select("probcover", _request(n=80, budget=10, seed=5))
    b = select("probcover", _request(n=80, budget=10, seed=5, torch_rows=True))
    assert a.tolist() == b.tolist()


def test_options_are_checked_by_signature_and_values():
    assert check_strategy_options("probcover", {"delta": None, "purity": 0.9}) == {
        "delta": None,
        "purity": 0.9,
    }
    assert check_strategy_options("probcover", {"delta": 1})["delta"] == 1  # int is a float
    with pytest.raises(ValueError, match="delta: got '0.5'; expected a finite number > 0 or null"):
        check_strategy_options("probcover", {"delta": "0.5"})
    with pytest.raises(ValueError, match="alpha: got 0.9; expected a known option"):
        check_strategy_options("probcover", {"alpha": 0.9})
    for options in ({"delta": -0.1}, {"delta": 0.0}, {"purity": 1.5}, {"purity": 0.0}):
        (key,) = options
        with pytest.raises(ValueError, match=f"'probcover': {key}: got {options[key]}; expected"):
            select("probcover", _request(), options)
