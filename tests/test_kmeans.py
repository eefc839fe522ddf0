"""Seeded torch k-means: correctness against brute force, reproducibility, chunk independence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asvp.strategies.kmeans import kmeans, l2_normalized_rows


def _blobs(n_per: int = 60, k: int = 4, dim: int = 8, seed: int = 0, spread: float = 20.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * spread
    truth = np.repeat(np.arange(k), n_per)
    rng.shuffle(truth)
    x = centres[truth] + rng.normal(size=(truth.size, dim))
    return x, truth


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labelings define the same partition (labels up to a permutation)."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_recovers_well_separated_clusters(init):
    x, truth = _blobs()
    result = kmeans(x, 4, rng=np.random.default_rng(1), init=init, max_iter=50)
    assert _same_partition(result.labels.numpy(), truth)
    assert result.converged
    # converged centres are the means of their clusters
    for c in range(4):
        members = x[result.labels.numpy() == c]
        np.testing.assert_allclose(result.centers[c].numpy(), members.mean(axis=0), atol=1e-9)


def test_labels_are_nearest_centres_and_inertia_is_exact():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 5))  # no structure: several Lloyd steps, then the cap
    result = kmeans(x, 7, rng=np.random.default_rng(4), max_iter=3)
    centres = result.centers.numpy()
    d2 = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(result.labels.numpy(), d2.argmin(axis=1))
    assert result.inertia == pytest.approx(d2.min(axis=1).sum(), rel=1e-10)
    assert result.n_iter <= 3


@pytest.mark.parametrize("init_trials", [None, 1, 5])
def test_kmeans_plus_plus_seeding_matches_plain_greedy_d2_sampling(init_trials):
    """max_iter=0 returns the seeding: greedy k-means++ drawn from the given rng, i.e. the
    best (lowest potential) of 2 + int(ln k) D^2 draws per centre (1 draw: plain k-means++)."""
    rng_data = np.random.default_rng(5)
    x = rng_data.normal(size=(50, 3))
    result = kmeans(x, 6, rng=np.random.default_rng(9), max_iter=0, init_trials=init_trials)

    def d2(a, b):
        return float(((a - b) ** 2).sum())

    rng = np.random.default_rng(9)
    trials = 2 + int(math.log(6)) if init_trials is None else init_trials
    chosen = [int(rng.integers(50))]
    closest = [d2(row, x[chosen[0]]) for row in x]
    for _ in range(5):
        draws = rng.random(trials) * sum(closest)
        candidates = []
        for u in draws:
            running, pick = 0.0, 49
            for i, w in enumerate(closest):
                running += w
                if running > u:
                    pick = i
                    break
            candidates.append(pick)
        potentials = [sum(min(closest[r], d2(x[r], x[c])) for r in range(50)) for c in candidates]
        best = candidates[potentials.index(min(potentials))]
        chosen.append(best)
        closest = [min(closest[r], d2(x[r], x[best])) for r in range(50)]
    np.testing.assert_allclose(result.centers.numpy(), x[chosen])
    assert result.n_iter == 0 and not result.converged


def test_reproducible_for_a_seed_and_seed_dependent():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    a = kmeans(x, 10, rng=np.random.default_rng(11), max_iter=5)
    b = kmeans(x, 10, rng=np.random.default_rng(11), max_iter=5)
    c = kmeans(x, 10, rng=np.random.default_rng(12), max_iter=0)
    d = kmeans(x, 10, rng=np.random.default_rng(11), max_iter=0)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centers, b.centers)
    assert not torch.equal(c.centers, d.centers)


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
@pytest.mark.parametrize(("dtype", "atol"), [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_chunk_size_does_not_change_the_result(chunk, dtype, atol):
    x, _ = _blobs(n_per=40, k=5, spread=4.0, seed=6)
    x = x.astype(dtype)
    ref = kmeans(x, 5, rng=np.random.default_rng(0), max_iter=20)
    got = kmeans(x, 5, rng=np.random.default_rng(0), max_iter=20, chunk_rows=chunk)
    assert torch.equal(ref.labels, got.labels)
    torch.testing.assert_close(ref.centers, got.centers, rtol=0, atol=atol)


def test_init_sample_is_reproducible_and_seeds_from_the_sample():
    x, truth = _blobs(n_per=100, k=3, seed=8)
    a = kmeans(x, 3, rng=np.random.default_rng(1), init_sample=30, max_iter=0)
    b = kmeans(x, 3, rng=np.random.default_rng(1), init_sample=30, max_iter=0)
    assert torch.equal(a.centers, b.centers)
    rows = {tuple(r) for r in x.tolist()}
    assert all(tuple(c) in rows for c in a.centers.tolist())  # seeds are data rows
    full = kmeans(x, 3, rng=np.random.default_rng(1), init_sample=30, max_iter=50)
    assert _same_partition(full.labels.numpy(), truth)


def test_numpy_and_torch_inputs_agree_and_dtype_is_kept():
    x, _ = _blobs(seed=10)
    a = kmeans(x.astype(np.float32), 4, rng=np.random.default_rng(0))
    b = kmeans(torch.from_numpy(x.astype(np.float32)), 4, rng=np.random.default_rng(0))
    assert torch.equal(a.labels, b.labels)
    assert a.centers.dtype == torch.float32
    assert kmeans(x, 4, rng=np.random.default_rng(0)).centers.dtype == torch.float64


def test_duplicates_fewer_distinct_rows_than_k():
    x = np.repeat(np.eye(3), 5, axis=0)  # 3 distinct rows, k = 5
    result = kmeans(x, 5, rng=np.random.default_rng(0))
    assert result.inertia == 0.0
    groups = result.labels.numpy().reshape(3, 5)  # the copies of a row share a cluster
    assert (groups == groups[:, :1]).all() and len(set(groups[:, 0].tolist())) == 3
    assert result.centers.shape == (5, 3) and torch.isfinite(result.centers).all()


def test_argument_validation():
    x = np.zeros((4, 2))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="k must be"):
        kmeans(x, 5, rng=rng)
    with pytest.raises(ValueError, match="k must be"):
        kmeans(x, 0, rng=rng)
    with pytest.raises(ValueError, match="unknown init"):
        kmeans(x, 2, rng=rng, init="kmeans++")
    with pytest.raises(ValueError, match="init_sample"):
        kmeans(x, 3, rng=rng, init_sample=2)
    with pytest.raises(ValueError, match="init_trials"):
        kmeans(x, 3, rng=rng, init_trials=0)
    with pytest.raises(ValueError, match="rng"):
        kmeans(x, 2, rng=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D"):
        kmeans(np.zeros(4), 1, rng=rng)


def test_l2_normalized_rows_stacks_blocks_and_keeps_zero_rows():
    a = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    b = torch.tensor([[0.0, -2.0]])
    out = l2_normalized_rows([a, b], chunk_rows=1)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="same number of columns"):
        l2_normalized_rows([a, np.zeros((1, 3))])
