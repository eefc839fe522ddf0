"""Strategy registry, uncertainty ordering and the selection contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asvp.strategies import (
    SelectionRequest,
    available_strategies,
    check_strategy_options,
    get_strategy,
    register_strategy,
    registry,
    select,
    strategy_needs_probs,
    strategy_options,
    uncertainty_order,
)
from asvp.strategies.registry import StrategyContractError

KINDS = ["margin", "least_confidence", "entropy"]
BUILTIN = ["entropy", "least_confidence", "margin", "random"]


# --------------------------------------------------------------------------- brute force


def _score(row: list[float], kind: str) -> float:
    """Smaller = more uncertain, written plainly."""
    if kind == "margin":
        top = sorted(row, reverse=True)
        return top[0] - top[1]
    if kind == "least_confidence":
        return max(row)
    h = 0.0
    for p in row:
        if p > 0:
            h -= p * math.log(p)
    return -h


def _reference_order(probs: np.ndarray, kind: str) -> list[int]:
    rows = probs.astype(np.float64).tolist()
    return sorted(range(len(rows)), key=lambda i: (_score(rows[i], kind), i))


def _random_probs(n: int, c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, c))
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def _request(n=50, c=4, budget=7, seed=0, with_probs=True) -> SelectionRequest:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1000, 1000 + 3 * n))
    pool_ids = ids[:n].astype(np.int64)  # not 0..n-1, not sorted
    labeled = ids[n : n + 10].astype(np.int64)
    probs = _random_probs(n, c, seed) if with_probs else None
    return SelectionRequest(pool_ids, labeled, budget, np.random.default_rng(seed), probs)


# --------------------------------------------------------------------------- registry


def test_builtin_strategies_registered_sorted_with_needs_probs():
    names = available_strategies()
    assert names == sorted(names)
    assert set(BUILTIN) <= set(names)
    assert not strategy_needs_probs("random")
    for kind in KINDS:
        assert strategy_needs_probs(kind)


def test_unknown_strategy_names_value_and_allowed():
    for lookup in (get_strategy, strategy_needs_probs):
        with pytest.raises(KeyError) as err:
            lookup("marginn")
        assert "'marginn'" in str(err.value)
        assert "margin" in str(err.value) and "random" in str(err.value)
        assert isinstance(err.value, ValueError)
    with pytest.raises(KeyError, match="marginn"):
        select("marginn", _request())


def test_register_duplicate_name_with_other_function_is_refused(scratch_registry):
    with pytest.raises(ValueError, match="already registered"):

        @register_strategy("random")
        def other(request):  # pragma: no cover - never called
            return request.pool_ids[:0]


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry, so that test-only strategies do not leak into other tests."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_select_catches_contract_breaking_strategy(scratch_registry):
    @register_strategy("_test_broken_duplicates")
    def broken(request):
        return np.repeat(request.pool_ids[:1], request.budget)

    @register_strategy("_test_broken_labelled")
    def labelled(request):
        return request.labeled[: request.budget]

    @register_strategy("_test_broken_short")
    def short(request):
        return request.pool_ids[: request.budget - 1]

    req = _request(budget=3)
    with pytest.raises(StrategyContractError, match="more than once"):
        select("_test_broken_duplicates", req)
    with pytest.raises(StrategyContractError, match="already labelled"):
        select("_test_broken_labelled", req)
    with pytest.raises(StrategyContractError, match="returned 2 indices, expected 3"):
        select("_test_broken_short", req)


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("seed", range(8))
def test_contract_on_random_data(name, seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 200))
    c = int(rng.integers(2, 12))
    budget = int(rng.integers(0, n + 20))  # sometimes larger than the pool
    req = _request(n=n, c=c, budget=budget, seed=seed)
    out = select(name, req)
    assert out.dtype == np.int64
    assert out.size == min(budget, n)
    assert np.unique(out).size == out.size
    assert np.isin(out, req.pool_ids).all()
    assert not np.isin(out, req.labeled).any()


@pytest.mark.parametrize("kind", KINDS)
def test_uncertainty_strategies_select_pool_ids_not_positions(kind):
    req = _request(n=30, budget=6, seed=3)
    expected = req.pool_ids[_reference_order(req.probs, kind)[:6]]
    np.testing.assert_array_equal(select(kind, req), expected)


# --------------------------------------------------------------------------- uncertainty_order


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(5))
def test_uncertainty_order_matches_bruteforce(kind, seed):
    probs = _random_probs(40, 5, seed)
    order = uncertainty_order(probs, kind)
    assert order.dtype == np.int64
    assert order.tolist() == _reference_order(probs, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_uncertainty_order_exact_ties_go_to_lowest_position(kind):
    a = [0.5, 0.3, 0.2]
    b = [0.7, 0.2, 0.1]
    u = [1 / 3, 1 / 3, 1 / 3]
    # duplicated rows tie exactly under every kind; permuted rows too (same multiset)
    probs = np.array([b, a, u, a[::-1], b, u, a, [0.2, 0.5, 0.3]])
    order = uncertainty_order(probs, kind)
    assert order.tolist() == _reference_order(probs, kind)
    assert order.tolist()[:2] == [2, 5]  # the uniform rows are most uncertain, in position order
    assert order.tolist()[-2:] == [0, 4]  # the peaked rows are least uncertain


def test_entropy_with_exact_zeros_is_finite_and_ordered():
    probs = np.array(
        [
            [1.0, 0.0, 0.0, 0.0],  # one-hot: entropy 0, least uncertain
            [0.5, 0.5, 0.0, 0.0],  # log 2
            [0.25, 0.25, 0.25, 0.25],  # log 4, most uncertain
            [0.0, 0.0, 0.9, 0.1],
            [0.0, 1.0, 0.0, 0.0],  # one-hot, ties with row 0
        ]
    )
    order = uncertainty_order(probs, "entropy")
    assert order.tolist() == [2, 1, 3, 0, 4]
    # float32 softmax that underflows to exact zeros (the official code's NaN case)
    underflow = torch.softmax(torch.tensor([[0.0, -200.0, -200.0], [0.0, 0.0, -200.0]]), dim=1)
    assert (underflow == 0).any()
    assert uncertainty_order(underflow, "entropy").tolist() == [1, 0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_streaming_equals_unchunked(kind, chunk):
    probs = _random_probs(50, 6, 11)
    probs[10] = probs[20]  # an exact tie across chunks
    full = uncertainty_order(probs, kind, chunk_rows=10_000)
    np.testing.assert_array_equal(uncertainty_order(probs, kind, chunk_rows=chunk), full)


@pytest.mark.parametrize("kind", KINDS)
def test_torch_input_equals_numpy_input(kind):
    probs = _random_probs(60, 7, 12).astype(np.float32)
    expected = uncertainty_order(probs, kind)
    np.testing.assert_array_equal(uncertainty_order(torch.from_numpy(probs), kind), expected)
    if torch.cuda.is_available():
        cuda = torch.from_numpy(probs).cuda()
        np.testing.assert_array_equal(uncertainty_order(cuda, kind), expected)


def test_uncertainty_order_rejects_bad_input():
    probs = _random_probs(5, 3, 0)
    with pytest.raises(ValueError, match="'variance'.*margin, least_confidence, entropy"):
        uncertainty_order(probs, "variance")
    with pytest.raises(ValueError, match="2-D"):
        uncertainty_order(probs[0], "margin")
    with pytest.raises(ValueError, match="at least 2 classes"):
        uncertainty_order(np.ones((4, 1)), "margin")
    with pytest.raises(ValueError, match="floating-point"):
        uncertainty_order(np.ones((4, 2), dtype=np.int64), "entropy")
    bad = probs.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        uncertainty_order(bad, "least_confidence")


# --------------------------------------------------------------------------- random


def test_random_reproducible_and_seed_dependent():
    def pick(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        req = SelectionRequest(np.arange(5000, 5500), np.arange(10), 20, rng)
        return select("random", req)

    np.testing.assert_array_equal(pick(1), pick(1))
    assert not np.array_equal(pick(1), pick(2))


def test_random_uses_rng_choice_in_pick_order():
    pool = np.arange(300, 400, dtype=np.int64)[::-1].copy()
    req = SelectionRequest(pool, np.array([], np.int64), 9, np.random.default_rng(5))
    got = select("random", req)
    expected = np.random.default_rng(5).choice(pool, size=9, replace=False)
    np.testing.assert_array_equal(got, expected)


def test_random_needs_no_probs_but_uncertainty_does():
    req = _request(with_probs=False)
    assert select("random", req).size == req.budget
    with pytest.raises(ValueError, match="needs probs"):
        select("margin", req)


# --------------------------------------------------------------------------- replay


def _replay(tmp_path, order, labeled, pool, budget) -> np.ndarray:
    path = tmp_path / "order.npy"
    np.save(path, np.asarray(order, dtype=np.int64))
    request = SelectionRequest(
        np.asarray(pool), np.asarray(labeled), budget, np.random.default_rng(0)
    )
    return select("replay", request, {"order": str(path)})


def test_replay_takes_the_next_entries_after_the_labelled_prefix(tmp_path):
    order = [7, 3, 9, 0, 5, 8, 1]
    got = _replay(tmp_path, order, labeled=[3, 7], pool=[0, 1, 5, 8, 9], budget=3)
    assert got.tolist() == [9, 0, 5]
    assert _replay(tmp_path, order, [3, 7], [0, 1, 5, 8, 9], 0).tolist() == []
    with pytest.raises(ValueError, match="not the first 2 entries"):
        _replay(tmp_path, order, labeled=[3, 9], pool=[0, 1, 5, 7, 8], budget=2)
    with pytest.raises(ValueError, match="7 indices, but the budgets need 8"):
        _replay(tmp_path, order, labeled=[3, 7, 9], pool=[0, 1, 5, 8, 2], budget=5)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("typiclust", {"max_clusters": 0}, "max_clusters: got 0; expected an integer >= 1"),
        ("probcover", {"purity": 7.0}, "purity: got 7.0; expected a finite number in (0, 1]"),
        ("badge", {"candidates": -1}, "candidates: got -1; expected an integer >= 1 or null"),
        ("replay", {}, "order: got '<missing>'; expected a file path (required)"),
        ("margin", {"candidate": 5}, "candidate: got 5; expected a known option; allowed: cand"),
    ],
)
def test_bad_options_name_the_strategy_option_value_and_range(name, options, message):
    with pytest.raises(ValueError) as error:
        check_strategy_options(name, options)
    assert str(error.value).startswith(f"strategy {name!r}: {message}")


def test_checked_options_are_returned_as_given():
    assert check_strategy_options("probcover", {"delta": 1}) == {"delta": 1}  # not 1.0
    assert strategy_options("typiclust")["max_clusters"] == 500


# --------------------------------------------------------------------------- request errors


def _replace(req: SelectionRequest, **kw) -> SelectionRequest:
    fields = dict(
        pool_ids=req.pool_ids, labeled=req.labeled, budget=req.budget, rng=req.rng, probs=req.probs
    )
    fields.update(kw)
    return SelectionRequest(**fields)


@pytest.mark.parametrize("name", BUILTIN)
def test_request_errors(name):
    req = _request(n=20, budget=5)
    with pytest.raises(ValueError, match="-1"):
        select(name, _replace(req, budget=-1))
    with pytest.raises(ValueError, match="19 rows.*20"):
        select(name, _replace(req, probs=req.probs[:19]))
    clash = np.concatenate([req.labeled, req.pool_ids[3:4]])
    with pytest.raises(ValueError, match=f"intersect.*{req.pool_ids[3]}"):
        select(name, _replace(req, labeled=clash))
    dup = req.pool_ids.copy()
    dup[1] = dup[0]
    with pytest.raises(ValueError, match=f"duplicates.*{dup[0]}"):
        select(name, _replace(req, pool_ids=dup))
    with pytest.raises(ValueError, match="integer"):
        select(name, _replace(req, pool_ids=req.pool_ids.astype(float)))
    with pytest.raises(ValueError, match="budget must be an int"):
        select(name, _replace(req, budget=2.5))
