"""Greedy k-center: equality with a plain float64 greedy, ties, seeding, laziness, strategies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import asvp.strategies.kcenter as kc
from asvp.strategies import Representation, SelectionRequest, select
from asvp.strategies.kcenter import k_center_greedy, k_center_positions

# --------------------------------------------------------------------------- plain reference


def reference_greedy(features: np.ndarray, labeled: list[int], budget: int) -> list[int]:
    """Greedy k-center written plainly: exact float64 distances of every row to every centre,
    recomputed from scratch for each pick; the first maximum (lowest index) wins."""
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    labeled = sorted(set(labeled))
    centres = list(labeled)
    picks: list[int] = []
    for _ in range(min(budget, n - len(labeled))):
        best, best_value = -1, -1.0
        for i in range(n):
            if i in labeled or i in picks:
                continue
            if centres:
                value = min(float(((x[i] - x[c]) ** 2).sum()) for c in centres)
            else:
                value = float("inf")
            if value > best_value:
                best, best_value = i, value
        picks.append(best)
        centres.append(best)
    return picks


def _gaussian(seed: int, n: int = 120, d: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _with_duplicates(seed: int, n: int = 120, distinct: int = 30, d: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(distinct, d)).astype(np.float32)
    return rows[rng.integers(0, distinct, size=n)]


def _integer_grid(seed: int, n: int = 120, d: int = 3) -> np.ndarray:
    """Small integers: every distance is exact in float32, so distinct rows tie exactly."""
    return np.random.default_rng(seed).integers(0, 3, size=(n, d)).astype(np.float32)


DATASETS = {"gaussian": _gaussian, "duplicates": _with_duplicates, "integer_grid": _integer_grid}


# --------------------------------------------------------------------------- equality


@pytest.mark.parametrize("kind", sorted(DATASETS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_plain_greedy(kind, seed):
    x = DATASETS[kind](seed)
    labeled = np.random.default_rng(100 + seed).choice(len(x), size=7, replace=False)
    expected = reference_greedy(x, labeled.tolist(), 40)
    got = k_center_greedy(x, labeled, 40)
    assert got.dtype == np.int64
    assert got.tolist() == expected


@pytest.mark.parametrize("kind", sorted(DATASETS))
def test_shortlist_and_chunk_sizes_never_change_the_picks(kind, monkeypatch):
    """The lazy machinery (shortlist of 1, 2, 5 rows: a refresh every pick or few; chunks that
    do not divide N; centre blocks of 3) gives the plain greedy's picks."""
    x = DATASETS[kind](7, n=97)
    labeled = [3, 50, 96]
    expected = reference_greedy(x, labeled, 60)
    monkeypatch.setattr(kc, "_BLOCK_ELEMENTS", 3 * 13)  # 3 centres per block with 13 rows
    refreshes = []
    original = kc._LazyGreedy._refresh

    def counting(self):
        refreshes.append(1)
        original(self)

    monkeypatch.setattr(kc._LazyGreedy, "_refresh", counting)
    for shortlist in (1, 2, 5, 10_000):
        for chunk_rows in (13, 40, None):
            refreshes.clear()
            got = k_center_greedy(x, labeled, 60, chunk_rows=chunk_rows, shortlist=shortlist)
            assert got.tolist() == expected, (shortlist, chunk_rows)
            if shortlist <= 2:
                assert len(refreshes) >= 10  # the lazy path really ran many refresh periods


def test_exact_ties_go_to_the_lowest_index():
    # Rows 2, 5 and 9 are identical and farthest from the labelled row 0; row 7 duplicates 0.
    x = np.zeros((10, 2), dtype=np.float32)
    x[[2, 5, 9]] = [3.0, 4.0]
    x[[1, 3]] = [1.0, 0.0]
    x[[4, 6]] = [0.0, -2.0]
    x[8] = [-1.0, 1.0]
    got = k_center_greedy(x, [0], 9).tolist()
    assert got == reference_greedy(x, [0], 9)
    # 2: the lowest of three identical farthest rows; 4 before 6 (identical); then 8, 1; the
    # rest are at distance 0 (duplicates of centres) and come in index order.
    assert got == [2, 4, 8, 1, 3, 5, 6, 7, 9]


def test_duplicates_survive_position_dependent_rounding(monkeypatch):
    """BLAS kernels may round identical rows differently by their place in a block. Simulate
    that (distances inflated by up to 1e-6 relative, growing with the row's place), and check
    that exact duplicates still resolve to the lowest index, whether the swap is found by the
    shortlist update (large shortlist, no refresh) or by a refresh (shortlist of 3); the same run
    without the duplicate swap gives other picks, so the check can fail."""
    x = _with_duplicates(3, n=150, distinct=25, d=4)
    labeled = [0, 1]
    budget = 15  # fewer than the distinct rows: no pick at distance 0
    expected = reference_greedy(x, labeled, budget)
    original = kc._MinDistances.__call__

    def noisy(self, *args):
        best, zr, zc = original(self, *args)
        ramp = 1.0 + 1e-6 * torch.arange(best.numel(), dtype=best.dtype) / max(best.numel(), 1)
        return best * ramp, zr, zc  # exact zeros stay zero

    monkeypatch.setattr(kc._MinDistances, "__call__", noisy)
    for shortlist in (3, 4096):
        got = k_center_greedy(x, labeled, budget, shortlist=shortlist)
        assert got.tolist() == expected
    monkeypatch.setattr(kc._LazyGreedy, "_swap", lambda self, pick, duplicate: None)
    for shortlist in (3, 4096):
        assert k_center_greedy(x, labeled, budget, shortlist=shortlist).tolist() != expected


def test_seeded_by_the_whole_labelled_set():
    # Row 3 is far from row 0 but is itself labelled: only a greedy seeded by every labelled
    # row (not just the first) avoids picking the rows next to it.
    x = np.array([[0.0], [1.0], [2.0], [10.0], [10.5], [9.0], [5.0]], dtype=np.float32)
    got = k_center_greedy(x, [0, 3], 2).tolist()
    assert got == reference_greedy(x, [0, 3], 2) == [6, 2]


def test_budget_larger_than_unlabelled_rows_returns_all_of_them():
    x = _with_duplicates(4, n=40, distinct=8)
    labeled = [0, 5, 6]
    got = k_center_greedy(x, labeled, 1000)
    assert got.tolist() == reference_greedy(x, labeled, 1000)
    assert sorted(got.tolist()) == sorted(set(range(40)) - set(labeled))
    assert k_center_greedy(x, labeled, 0).size == 0


def test_empty_labelled_set_starts_at_row_zero():
    x = _gaussian(5, n=50)
    got = k_center_greedy(x, [], 10)
    assert got[0] == 0
    assert got.tolist() == reference_greedy(x, [], 10)
    # Excluded rows are skipped: the first free row then comes first.
    assert k_center_positions(x, None, 3, exclude=[0, 1])[0] == 2


def test_numpy_torch_float64_and_half_inputs_agree():
    x = _gaussian(6, n=80)
    labeled = np.array([4, 9, 33])
    expected = k_center_greedy(x, labeled, 25)
    assert expected.tolist() == reference_greedy(x, labeled.tolist(), 25)
    np.testing.assert_array_equal(k_center_greedy(torch.from_numpy(x), labeled, 25), expected)
    np.testing.assert_array_equal(k_center_greedy(x.astype(np.float64), labeled, 25), expected)
    half = x.astype(np.float16)  # upcast per block: same picks as its float32 values
    np.testing.assert_array_equal(
        k_center_greedy(half, labeled, 25), k_center_greedy(half.astype(np.float32), labeled, 25)
    )
    # Read-only and reversed numpy views are accepted and never written to.
    frozen = x[::-1].copy()[::-1]
    frozen.setflags(write=False)
    np.testing.assert_array_equal(k_center_greedy(frozen, labeled, 25), expected)


def test_separate_seed_matrix_equals_concatenation():
    pool = _gaussian(8, n=70)
    seeds = _gaussian(9, n=6)
    both = np.concatenate([pool, seeds])
    expected = reference_greedy(both, list(range(70, 76)), 20)
    assert k_center_positions(pool, seeds, 20).tolist() == expected


def test_a_row_suspect_only_through_the_largest_seed_norm():
    """Regression (an svpp coreset cell crashed with "torch.cat(): expected a non-empty list"):
    a row is re-examined when its distance is within the rounding bound of the block's largest
    centre norm, but a pair is recomputed only within its own, smaller bound. Row 0 is 1e-3
    from the small seed while the other seed has norm 100: it was re-examined with no pair to
    recompute. The seeds come as a separate matrix (as in the strategies), so no labelled row
    meets itself in the pass and supplies a pair."""
    pool = np.array([[0.0, 0.0], [3.0, 4.0], [-2.0, 1.0], [0.5, -6.0]], dtype=np.float32)
    seeds = np.array([[1e-3, 0.0], [100.0, 0.0]], dtype=np.float32)
    expected = reference_greedy(np.concatenate([pool, seeds]), [4, 5], 4)
    assert expected[-1] == 0  # the row next to a seed comes last
    assert k_center_positions(pool, seeds, 4).tolist() == expected
    pool_ids = np.arange(10, 14, dtype=np.int64)
    request = SelectionRequest(pool_ids, np.array([20, 21]), 4, np.random.default_rng(0))
    rep = Representation(pool=torch.from_numpy(pool), labeled=seeds)
    request = SelectionRequest(**{**request.__dict__, "embeddings": rep})
    np.testing.assert_array_equal(select("coreset", request), pool_ids[expected])


def test_memory_blocks_never_hold_labelled_times_unlabelled(monkeypatch):
    x = _gaussian(10, n=200)
    labeled = list(range(0, 200, 4))  # 50 labelled, 150 unlabelled
    shapes = []
    original = kc._MinDistances.__call__

    def recording(self, rows, row_sq, centres, *args):
        shapes.append((rows.shape[0], centres.shape[0]))
        return original(self, rows, row_sq, centres, *args)

    monkeypatch.setattr(kc._MinDistances, "__call__", recording)
    monkeypatch.setattr(kc, "_BLOCK_ELEMENTS", 16 * 8)
    got = k_center_greedy(x, labeled, 30, chunk_rows=16, shortlist=8)
    assert got.tolist() == reference_greedy(x, labeled, 30)
    assert max(r * c for r, c in shapes) <= 16 * 8


def test_rejects_bad_inputs():
    x = _gaussian(11, n=10)
    with pytest.raises(ValueError, match="2-D"):
        k_center_greedy(x[0], [], 2)
    with pytest.raises(ValueError, match="outside"):
        k_center_greedy(x, [10], 2)
    with pytest.raises(ValueError, match="budget"):
        k_center_greedy(x, [], -1)
    with pytest.raises(ValueError, match="chunk_rows"):
        k_center_greedy(x, [], 2, chunk_rows=0)
    bad = x.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        k_center_greedy(bad, [0], 2)
    with pytest.raises(ValueError, match="floating"):
        k_center_greedy(np.ones((3, 2), dtype=np.int64), [], 1)


# --------------------------------------------------------------------------- strategies


def _request(field: str, budget: int = 12, seed: int = 0) -> tuple[SelectionRequest, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = _with_duplicates(seed, n=90, distinct=40, d=5)
    ids = rng.permutation(np.arange(500, 590))  # pool ids: not positions, not sorted
    pool_ids, labeled = ids[:80].astype(np.int64), ids[80:].astype(np.int64)
    rep = Representation(pool=torch.from_numpy(x[:80]), labeled=x[80:])
    request = SelectionRequest(pool_ids, labeled, budget, np.random.default_rng(seed))
    request = SelectionRequest(**{**request.__dict__, field: rep})
    return request, x


@pytest.mark.parametrize(
    ("name", "field"), [("coreset", "embeddings"), ("coreset_self", "features")]
)
def test_strategies_return_pool_ids_in_pick_order(name, field):
    request, x = _request(field)
    got = select(name, request)
    positions = reference_greedy(x, list(range(80, 90)), 12)  # pool rows, then labelled rows
    np.testing.assert_array_equal(got, request.pool_ids[positions])
    assert got.size == 12 and np.intersect1d(got, request.labeled).size == 0
    # Deterministic: the rng is not used.
    np.testing.assert_array_equal(select(name, request), got)


def test_strategy_budget_beyond_the_pool_and_candidates_option():
    request, _ = _request("embeddings", budget=500)
    got = select("coreset", request)
    assert sorted(got.tolist()) == sorted(request.pool_ids.tolist())
    request, _ = _request("features", budget=5)
    got = select("coreset_self", request, {"candidates": 20})
    assert got.size == 5 and set(got) <= set(request.pool_ids.tolist())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    x = _with_duplicates(12, n=300, distinct=120, d=16)
    labeled = [1, 2, 3]
    expected = reference_greedy(x, labeled, 50)
    assert k_center_greedy(torch.from_numpy(x).cuda(), labeled, 50).tolist() == expected
    half = torch.from_numpy(x).cuda().half()
    cpu = k_center_greedy(half.float().cpu(), labeled, 50)
    np.testing.assert_array_equal(k_center_greedy(half, labeled, 50), cpu)
