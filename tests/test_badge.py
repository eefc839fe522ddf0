"""BADGE: factorised distances, equality with a materialised k-means++, D^2 law, fixed bugs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import chi2

import asvp.strategies.badge as bd
from asvp.strategies import Representation, SelectionRequest, select
from asvp.strategies.badge import badge_min_sq_distances, badge_select

# --------------------------------------------------------------------------- materialised


def gradient_embeddings(probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """``g_i = (p_i - e_{argmax p_i}) (x) h_i`` materialised (N x C*D), float64."""
    p = np.asarray(probs, dtype=np.float64)
    q = p.copy()
    q[np.arange(len(p)), p.argmax(axis=1)] -= 1.0
    h = np.asarray(embeddings, dtype=np.float64)
    return np.stack([np.kron(q[i], h[i]) for i in range(len(p))])


def reference_badge(probs, embeddings, budget, rng, refresh_every, max_rejections) -> list[int]:
    """k-means++ over materialised gradient embeddings, with the random-number consumption that
    :func:`badge_select` documents, written plainly."""
    g = gradient_embeddings(probs, embeddings)
    n = len(g)
    budget = min(budget, n)
    picks = [int(rng.integers(n))]
    picked = np.zeros(n, dtype=bool)
    picked[picks[0]] = True
    pending = list(picks)
    d2 = np.full(n, np.inf)
    while len(picks) < budget:
        for c in pending:
            d2 = np.minimum(d2, ((g - g[c]) ** 2).sum(axis=1))
        pending = []
        ref = d2.copy()
        ref[picked] = 0.0
        cumulative = np.cumsum(ref)
        total = cumulative[-1]
        if not total > 0:
            rest = np.flatnonzero(~picked)
            picks += rng.choice(rest, size=budget - len(picks), replace=False).tolist()
            break
        last = np.flatnonzero(ref > 0)[-1]
        rejections = 0
        while len(picks) < budget and len(pending) < refresh_every and rejections < max_rejections:
            u = rng.random(2)
            x = min(int(np.searchsorted(cumulative, u[0] * total, side="right")), last)
            now = (
                0.0 if picked[x] else min([ref[x]] + [((g[x] - g[c]) ** 2).sum() for c in pending])
            )
            if u[1] * ref[x] < now:
                picks.append(x)
                picked[x] = True
                pending.append(x)
            else:
                rejections += 1
    return picks


def _data(seed: int, n: int = 40, c: int = 4, d: int = 3, scale: float = 2.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=scale, size=(n, c))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, rng.normal(size=(n, d))


# --------------------------------------------------------------------------- distances


def test_factorised_distances_equal_materialised():
    probs, emb = _data(0, n=30)
    probs[7], emb[7] = probs[2], emb[2]  # a duplicate of a centre: distance exactly 0
    g = gradient_embeddings(probs, emb)
    centres = [2, 11, 25]
    expected = ((g[:, None, :] - g[centres][None]) ** 2).sum(axis=2).min(axis=1)
    for chunk_rows in (None, 1, 7):
        got = badge_min_sq_distances(probs, emb, centres, chunk_rows=chunk_rows)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=0)
    assert got[7] == 0.0 and got[2] == 0.0
    # float32 inputs: float32 GEMMs, still close (and exact zeros stay exact).
    got32 = badge_min_sq_distances(probs.astype(np.float32), emb.astype(np.float32), centres)
    np.testing.assert_allclose(got32, expected, rtol=1e-4, atol=1e-6 * expected.max())
    assert got32[7] == 0.0
    assert np.all(np.isinf(badge_min_sq_distances(probs, emb, [])))


def test_inputs_are_never_written():
    probs, emb = _data(1)
    p0, e0 = probs.copy(), emb.copy()
    badge_select(probs, emb, 10, np.random.default_rng(0))
    badge_min_sq_distances(torch.from_numpy(probs), torch.from_numpy(emb), [0, 1])
    np.testing.assert_array_equal(probs, p0)
    np.testing.assert_array_equal(emb, e0)


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(("refresh_every", "max_rejections"), [(32, 64), (1, 64), (3, 2), (5, 1)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_picks_equal_materialised_reference(seed, refresh_every, max_rejections):
    probs, emb = _data(10 + seed, n=40)
    got = badge_select(
        probs,
        emb,
        25,
        np.random.default_rng(seed),
        refresh_every=refresh_every,
        max_rejections=max_rejections,
    )
    expected = reference_badge(
        probs, emb, 25, np.random.default_rng(seed), refresh_every, max_rejections
    )
    assert got.dtype == np.int64
    assert got.tolist() == expected


def _kmeanspp_law(g: np.ndarray) -> dict[tuple[int, int, int], float]:
    """Exact probabilities of the first three k-means++ picks."""
    n = len(g)
    d = ((g[:, None, :] - g[None]) ** 2).sum(axis=2)
    law = {}
    for f in range(n):
        for s in range(n):
            for t in range(n):
                if len({f, s, t}) < 3:
                    continue
                p_s = d[f, s] / d[f].sum()
                m = np.minimum(d[f], d[s])
                law[f, s, t] = p_s * m[t] / m.sum() / n
    return law


def test_first_three_picks_follow_the_d2_law():
    """Chi-square over a fixed list of seeds: the (first, second, third) picks match exact
    k-means++ probabilities. With ``refresh_every=3`` the third pick comes from rejection
    sampling against the stale vector of the first refresh; the statistic against the law that
    ignores the second centre (what accepting every proposal would give) is far larger."""
    probs, emb = _data(3, n=5, c=3, d=2, scale=1.0)
    g = gradient_embeddings(probs, emb)
    law = _kmeanspp_law(g)
    counts = dict.fromkeys(law, 0)
    trials = 3000
    for seed in range(trials):
        f, s, t = badge_select(probs, emb, 3, np.random.default_rng(seed), refresh_every=3)
        counts[f, s, t] += 1
    observed = np.array([counts[k] for k in law], dtype=float)
    expected = trials * np.array([law[k] for k in law])
    stat = ((observed - expected) ** 2 / expected).sum()
    assert chi2.sf(stat, df=len(law) - 1) > 1e-3

    d = ((g[:, None, :] - g[None]) ** 2).sum(axis=2)
    total = d.sum(axis=1)
    stale = {  # the third pick drawn by D^2 to the first centre only
        (f, s, t): d[f, s] / total[f] * d[f, t] / (total[f] - d[f, s]) / len(g) for (f, s, t) in law
    }
    wrong = trials * np.array([stale[k] for k in law])
    assert ((observed - wrong) ** 2 / wrong).sum() > 3 * stat


def test_reproducible_for_a_seed_and_dependent_on_it():
    probs, emb = _data(4, n=60)
    a = badge_select(probs, emb, 20, np.random.default_rng(5))
    np.testing.assert_array_equal(a, badge_select(probs, emb, 20, np.random.default_rng(5)))
    others = [badge_select(probs, emb, 20, np.random.default_rng(s)) for s in (6, 7, 8)]
    assert any(not np.array_equal(a, o) for o in others)


# --------------------------------------------------------------------------- fixed bugs


@pytest.mark.parametrize("budget", range(0, 11))
def test_small_budgets(budget):
    """The official ``i % int(budget / 10)`` raised ZeroDivisionError for 2 <= budget < 10."""
    probs, emb = _data(5, n=12)
    got = badge_select(probs, emb, budget, np.random.default_rng(budget))
    assert got.size == budget and np.unique(got).size == budget


def test_independent_of_chunk_size():
    """No batch or chunk scales the embedding (the official mean-reduced loss inflated the last,
    smaller batch): picks do not depend on the chunk size, down to a last chunk of one row."""
    probs, emb = _data(6, n=43)
    expected = badge_select(probs, emb, 30, np.random.default_rng(1))
    for chunk_rows in (1, 6, 7, 42, 1000):
        got = badge_select(probs, emb, 30, np.random.default_rng(1), chunk_rows=chunk_rows)
        np.testing.assert_array_equal(got, expected)
    for chunk_rows in (1, 6):
        np.testing.assert_allclose(
            badge_min_sq_distances(probs, emb, expected[:5], chunk_rows=chunk_rows),
            badge_min_sq_distances(probs, emb, expected[:5]),
            rtol=1e-12,
        )


def test_duplicates_and_zero_distances_give_no_nan_and_the_full_budget():
    """The official k-means++ divided 0 by 0 (NaN) once all remaining distances were zero."""
    probs, emb = _data(7, n=4)
    rows = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 1, 2])  # four distinct rows, repeated
    p, e = probs[rows], emb[rows]
    for budget in (4, 9, 12):
        got = badge_select(p, e, budget, np.random.default_rng(budget))
        assert got.size == budget and np.unique(got).size == budget
        # The first four picks cover the four distinct rows (duplicates of a pick are at 0).
        assert len({rows[i] for i in got[:4]}) == 4
    # Every row identical, and every row confident (one-hot probs: all g_i = 0).
    same = badge_select(
        np.tile(probs[:1], (9, 1)), np.tile(emb[:1], (9, 1)), 9, np.random.default_rng(0)
    )
    assert sorted(same.tolist()) == list(range(9))
    onehot = np.eye(3)[np.arange(10) % 3]
    got = badge_select(
        onehot, np.random.default_rng(1).normal(size=(10, 4)), 6, np.random.default_rng(2)
    )
    assert got.size == 6 and np.unique(got).size == 6


def test_rejects_bad_inputs():
    probs, emb = _data(8, n=10)
    with pytest.raises(ValueError, match="aligned"):
        badge_select(probs[:9], emb, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="budget"):
        badge_select(probs, emb, -1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="Generator"):
        badge_select(probs, emb, 3, 0)
    bad = emb.copy()
    bad[3, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        badge_select(probs, bad, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="outside"):
        badge_min_sq_distances(probs, emb, [10])


def test_memory_blocks_stay_bounded(monkeypatch):
    """Passes work on row blocks: no ``N x N`` matrix and no second ``N x C`` copy."""
    probs, emb = _data(9, n=64, c=5)
    shapes = []
    original = bd._Factorised.min_sq

    def recording(self, start, stop, q, centres):
        shapes.append((q.shape[0], centres[1].shape[0]))
        return original(self, start, stop, q, centres)

    monkeypatch.setattr(bd._Factorised, "min_sq", recording)
    expected = badge_select(probs, emb, 40, np.random.default_rng(3))
    shapes.clear()
    got = badge_select(probs, emb, 40, np.random.default_rng(3), chunk_rows=8)
    np.testing.assert_array_equal(got, expected)
    assert max(rows for rows, _ in shapes) == 8
    assert max(cols for _, cols in shapes) <= bd.REFRESH_EVERY


# --------------------------------------------------------------------------- strategy


def _request(budget: int = 10, seed: int = 0) -> SelectionRequest:
    probs, emb = _data(seed, n=50)
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(100, 160))
    rep = Representation(pool=torch.from_numpy(emb), labeled=rng.normal(size=(10, 3)))
    request = SelectionRequest(
        ids[:50].astype(np.int64), ids[50:].astype(np.int64), budget, np.random.default_rng(seed)
    )
    return replace(request, probs=torch.from_numpy(probs), embeddings=rep)


def test_strategy_returns_pool_ids():
    request = _request()
    got = select("badge", request)
    positions = badge_select(request.probs, request.embeddings.pool, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(got, request.pool_ids[positions])
    assert np.intersect1d(got, request.labeled).size == 0
    big = select("badge", _request(budget=80))
    assert sorted(big.tolist()) == sorted(_request().pool_ids.tolist())
    sub = select("badge", _request(budget=5), {"candidates": 20})
    assert sub.size == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    probs, emb = _data(11, n=200, c=10, d=16)
    expected = badge_select(probs, emb, 50, np.random.default_rng(4))
    got = badge_select(
        torch.from_numpy(probs).cuda(), torch.from_numpy(emb).cuda(), 50, np.random.default_rng(4)
    )
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(
        badge_min_sq_distances(
            torch.from_numpy(probs).cuda(), torch.from_numpy(emb).cuda(), [0, 5]
        ),
        badge_min_sq_distances(probs, emb, [0, 5]),
        rtol=1e-9,
    )


# --------------------------------------------------------------------------- first_pick option


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_largest_norm_first_pick_is_the_row_of_largest_embedding_norm(seed):
    """first_pick: largest_norm is Ash et al.'s init_centers: argmax of ||g_i|| first."""
    probs, emb = _data(seed, n=60)
    largest = int(np.argmax(np.linalg.norm(gradient_embeddings(probs, emb), axis=1)))
    got = badge_select(probs, emb, 12, np.random.default_rng(seed), first_pick="largest_norm")
    assert got[0] == largest and np.unique(got).size == 12
    again = badge_select(probs, emb, 12, np.random.default_rng(seed), first_pick="largest_norm")
    np.testing.assert_array_equal(got, again)
    request = _request(seed=seed)
    picks = select("badge", request, {"first_pick": "largest_norm"})
    g = gradient_embeddings(request.probs.numpy(), request.embeddings.pool.numpy())
    assert picks[0] == request.pool_ids[int(np.argmax(np.linalg.norm(g, axis=1)))]


def test_first_pick_default_is_uniform_and_bad_values_are_refused():
    request = _request(seed=4)
    default = select("badge", request)
    uniform = select(
        "badge", replace(request, rng=np.random.default_rng(4)), {"first_pick": "uniform"}
    )
    np.testing.assert_array_equal(default, uniform)
    assert default[0] == request.pool_ids[int(np.random.default_rng(4).integers(50))]
    with pytest.raises(
        ValueError, match="'badge': first_pick: got 'max'; expected one of: largest_norm, uniform"
    ):
        select("badge", _request(), {"first_pick": "max"})
    with pytest.raises(ValueError, match="first_pick must be"):
        badge_select(*_data(0), 3, np.random.default_rng(0), first_pick="max")
