"""TypiClust: typicality and the pick rule against brute force, the contract, the options."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import asvp.strategies.typiclust  # noqa: F401  (registers "typiclust")
from asvp.strategies import (
    Representation,
    SelectionRequest,
    check_strategy_options,
    select,
    strategy_inputs,
)
from asvp.strategies.typiclust import mean_knn_distance, typiclust_pick

# --------------------------------------------------------------------------- brute force


def _plain_mean_knn(rows: np.ndarray, k: int) -> list[float]:
    """Mean distance to the k nearest *other* rows (by position), written plainly."""
    out = []
    for i, row in enumerate(rows):
        dists = sorted(
            float(np.sqrt(((row - other) ** 2).sum())) for j, other in enumerate(rows) if j != i
        )
        out.append(sum(dists[:k]) / k if k else 0.0)
    return out


def _plain_pick(x, clusters, labeled_mask, budget, min_size, neighbors):
    """TypiClust-RP's rule, written plainly: fewest labelled (picks included), then largest,
    then lowest cluster id; the most typical free row of it, ties to the lowest position."""
    labeled = set(np.flatnonzero(labeled_mask).tolist())
    picked: list[int] = []
    for _ in range(budget):
        best_key, best_cluster = None, None
        for c in sorted(set(clusters.tolist())):
            rows = [i for i in range(len(x)) if clusters[i] == c]
            free = [i for i in rows if i not in labeled and i not in picked]
            if len(rows) < min_size or not free:
                continue
            count = sum(1 for i in rows if i in labeled or i in picked)
            key = (count, -len(rows), c)
            if best_key is None or key < best_key:
                best_key, best_cluster = key, c
        if best_cluster is None:
            break
        rows = [i for i in range(len(x)) if clusters[i] == best_cluster]
        spread = _plain_mean_knn(x[rows], min(neighbors, len(rows) - 1))
        free = [(spread[p], i) for p, i in enumerate(rows) if i not in labeled and i not in picked]
        picked.append(min(free)[1])
    return picked


# --------------------------------------------------------------------------- typicality


@pytest.mark.parametrize(("k", "chunk"), [(1, None), (3, 2), (7, 5), (9, 100)])
def test_mean_knn_distance_matches_brute_force(k, chunk):
    rows = np.random.default_rng(0).normal(size=(10, 4))
    got = mean_knn_distance(torch.from_numpy(rows), k, chunk_rows=chunk)
    np.testing.assert_allclose(got, _plain_mean_knn(rows, k), rtol=1e-9, atol=1e-12)


def test_mean_knn_distance_excludes_self_by_position_not_duplicates():
    rows = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    got = mean_knn_distance(torch.from_numpy(rows), 1)
    np.testing.assert_allclose(got, [0.0, 0.0, 5.0], atol=1e-12)
    with pytest.raises(ValueError, match="neighbors"):
        mean_knn_distance(torch.from_numpy(rows), 3)


# --------------------------------------------------------------------------- pick rule


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("budget", "min_size", "neighbors"), [(12, 5, 20), (25, 3, 2), (6, 1, 4)])
def test_pick_rule_matches_brute_force_for_fixed_clusters(seed, budget, min_size, neighbors):
    rng = np.random.default_rng(seed)
    n = 60
    x = rng.normal(size=(n, 3))
    clusters = rng.choice(6, size=n, p=[0.3, 0.25, 0.2, 0.15, 0.06, 0.04])  # some tiny ones
    labeled_mask = rng.random(n) < 0.2
    got = typiclust_pick(
        torch.from_numpy(x),
        clusters,
        labeled_mask,
        budget,
        min_cluster_size=min_size,
        neighbors=neighbors,
        chunk_rows=4,
    )
    assert got.tolist() == _plain_pick(x, clusters, labeled_mask, budget, min_size, neighbors)


def test_pick_rule_ties_go_to_the_largest_cluster_then_lowest_id():
    x = torch.zeros(12, 2)
    clusters = np.array([2] * 5 + [0] * 3 + [1] * 3 + [3])
    picks = typiclust_pick(x, clusters, np.zeros(12, dtype=bool), 3, min_cluster_size=1)
    # cluster 2 (largest, 5 rows) first, then clusters 0 and 1 (3 rows each) by id
    assert clusters[picks].tolist() == [2, 0, 1]
    assert picks.tolist() == [0, 5, 8]  # all-equal typicality: the lowest position


def test_pick_rule_comes_up_short_when_no_cluster_is_eligible():
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    clusters = np.array([0] * 6 + [1] * 4)
    labeled = np.zeros(10, dtype=bool)
    labeled[:2] = True
    picks = typiclust_pick(x, clusters, labeled, 9, min_cluster_size=5)
    assert sorted(picks.tolist()) == [2, 3, 4, 5]  # only cluster 0 is large enough


# --------------------------------------------------------------------------- strategy


def _request(n=60, m=8, budget=6, seed=0, dim=5, torch_rows=False, centres=None):
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1000, 1000 + 2 * (n + m) + 2))
    pool_ids, labeled = ids[:n].astype(np.int64), ids[n : n + m].astype(np.int64)
    if centres is None:
        x = rng.normal(size=(n + m, dim)).astype(np.float32)
    else:
        x = centres[rng.integers(len(centres), size=n + m)] + 0.05 * rng.normal(size=(n + m, dim))
        x = x.astype(np.float32)
    pool_x, lab_x = x[:n], x[n:]
    if torch_rows:
        pool_x, lab_x = torch.from_numpy(pool_x), torch.from_numpy(lab_x)
    return SelectionRequest(
        pool_ids,
        labeled,
        budget,
        np.random.default_rng(seed + 7),
        features=Representation(pool_x, lab_x),
    )


def test_declared_inputs():
    assert strategy_inputs("typiclust") == {"features"}


def test_single_cluster_picks_the_most_typical_rows_in_order():
    """max_clusters=1: one cluster of all rows, picks by typicality over normalised features."""
    req = _request(n=40, m=5, budget=5, seed=3)
    out = select("typiclust", req, {"max_clusters": 1, "min_cluster_size": 1})
    x = np.vstack([req.features.pool, req.features.labeled]).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    spread = _plain_mean_knn(x, 20)
    order = sorted(range(40), key=lambda i: (spread[i], i))  # pool rows only
    np.testing.assert_array_equal(out, req.pool_ids[order[:5]])


def test_covers_every_well_separated_cluster_first():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 8))
    req = _request(n=300, m=0, budget=6, dim=8, centres=centres * 5)
    out = select("typiclust", req)
    pool_x = np.asarray(req.features.pool)
    nearest = [
        int(np.argmin(((centres * 5 - pool_x[list(req.pool_ids).index(i)]) ** 2).sum(1)))
        for i in out
    ]
    assert sorted(nearest) == list(range(6))


def test_shortfall_is_filled_at_random_from_the_rng():
    req = _request(n=30, m=0, budget=8, seed=2)
    # clusters of at most 30 / 8 rows: none reaches min_cluster_size 30
    out = select("typiclust", req, {"min_cluster_size": 30})
    again = select(
        "typiclust", replace(req, rng=np.random.default_rng(10)), {"min_cluster_size": 30}
    )
    assert out.size == 8 and np.unique(out).size == 8
    assert out.tolist() != again.tolist()


def test_reproducible_for_a_seed_and_torch_equals_numpy():
    a = select("typiclust", _request(n=120, m=10, budget=12, seed=4))
    b = select("typiclust", _request(n=120, m=10, budget=12, seed=4))
    c = select("typiclust", _request(n=120, m=10, budget=12, seed=4, torch_rows=True))
    assert a.tolist() == b.tolist() == c.tolist()


def test_options_are_checked_by_signature_and_values():
    ok = check_strategy_options(
        "typiclust",
        {"max_clusters": 50, "min_cluster_size": 6, "neighbors": 10, "kmeans_iterations": 5},
    )
    assert ok["min_cluster_size"] == 6
    with pytest.raises(ValueError, match="max_clusters: got 1.5; expected an integer >= 1"):
        check_strategy_options("typiclust", {"max_clusters": 1.5})
    with pytest.raises(ValueError, match="k: got 3; expected a known option"):
        check_strategy_options("typiclust", {"k": 3})
    for key in ("max_clusters", "min_cluster_size", "neighbors", "kmeans_iterations"):
        with pytest.raises(ValueError, match=f"'typiclust': {key}: got -1; expected an integer >="):
            select("typiclust", _request(), {key: -1})


# --------------------------------------------------------------------------- distance option


def test_squared_distance_ranks_as_the_released_code():
    """distance: squared is the mean squared distance to the K nearest neighbours (faiss
    IndexFlatL2 in the authors' release); on this pool the two rankings differ."""
    # row 0: neighbours at 1 and 1 (mean 1, mean square 1);
    # row 1: neighbours at 0.2 and 1.7 (mean 0.95, mean square 1.465)
    x = np.array([[0.0, 0.0], [10.0, 0.0], [10.2, 0.0], [8.3, 0.0], [0.0, 1.0], [0.0, -1.0]])
    rows = torch.from_numpy(x)
    plain = np.array(_plain_mean_knn(x, 2))
    squares = np.array(
        [np.mean(sorted(((x[i] - np.delete(x, i, 0)) ** 2).sum(1))[:2]) for i in range(6)]
    )
    np.testing.assert_allclose(mean_knn_distance(rows, 2), plain, rtol=1e-12)
    np.testing.assert_allclose(mean_knn_distance(rows, 2, squared=True), squares, rtol=1e-12)
    clusters, free = np.zeros(6, dtype=int), np.zeros(6, dtype=bool)
    free[[2, 3, 4, 5]] = True  # only rows 0 and 1 can be picked
    euclidean = typiclust_pick(rows, clusters, free, 1, neighbors=2)
    squared = typiclust_pick(rows, clusters, free, 1, neighbors=2, squared=True)
    assert euclidean.tolist() == [1] and squared.tolist() == [0]


def test_distance_option_default_keeps_the_picks_and_squared_changes_them():
    req = _request(n=60, m=4, budget=6, seed=5)
    options = {"max_clusters": 1, "min_cluster_size": 1, "neighbors": 5}
    default = select("typiclust", req, options)
    assert (
        default.tolist() == select("typiclust", req, options | {"distance": "euclidean"}).tolist()
    )
    x = np.vstack([req.features.pool, req.features.labeled]).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rows = torch.from_numpy(x)
    for squared in (False, True):
        spread = mean_knn_distance(rows, 5, squared=squared)[:60]
        expected = req.pool_ids[np.argsort(spread, kind="stable")[:6]]
        got = select("typiclust", req, options | {"distance": "squared"} if squared else options)
        np.testing.assert_array_equal(got, expected)
    assert select("typiclust", req, options | {"distance": "squared"}).tolist() != default.tolist()


def test_distance_option_refuses_other_values():
    with pytest.raises(ValueError, match="distance: got 'l1'; expected one of: euclidean, squared"):
        check_strategy_options("typiclust", {"distance": "l1"})
    with pytest.raises(ValueError, match="'typiclust': distance: got 'cosine'"):
        select("typiclust", _request(), {"distance": "cosine"})
