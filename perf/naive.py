"""Naive references, written plainly, that the benchmark's speed-ups are measured against.

They do what the official ASVP code and the common AL libraries do (``docs/official-code.md``
section 3; scikit-activeml, LabelBench and ALFM compute the same matrices), with the same BLAS
(torch, same thread count) as the real strategies, so that a speed-up measures the algorithm,
not the library:

* :func:`naive_badge`: materialise the ``N x (C * D)`` gradient embeddings
  ``g_i = (p_i - onehot(argmax p_i)) (x) h_i``, build the full ``N x N`` squared-distance matrix
  ``||g_i||^2 + ||g_j||^2 - 2 <g_i, g_j>``, then k-means++ seeding: the first centre uniform, each
  next one drawn with probability proportional to the squared distance to the nearest centre
  (D^2 sampling) from a numpy ``Generator``, the distance vector updated with one matrix row per
  pick. (The official code recomputed each row's minimum over all centres at every pick,
  O(k^2 N); the running minimum used here is the cheaper, kinder baseline.)
* :func:`naive_k_center`: greedy k-center by the book, *not* the official code: at every pick
  rebuild the unlabelled rows (``pool[remaining]``, an O(N D) copy) and the squared-distance
  matrix ``x^2 + y^2 - 2xy`` between all centres so far (labelled rows and earlier picks, the
  centres grown with ``torch.cat``) and the unlabelled rows, take each column's minimum and pick
  the argmax (ties to the first, i.e. the lowest remaining index): O(k (|L| + k) N D). The matrix
  is one ``addmm`` (``x^2 - 2xy``; the column's ``y^2`` is added to its minimum).
* :func:`running_min_k_center`: greedy k-center in the manner of the official
  ``acquire_new_sample`` (``docs/official-code.md`` section 3): the ``|L| x |U|`` matrix once,
  reduced to a running minimum over the unlabelled rows; at every pick the argmax (ties to the
  first), the picked row cut out of the unlabelled rows and of the minimum (``torch.cat``, an
  O(N D) copy, as the official code does), and the minimum lowered by the distances to the new
  centre: O((|L| + k) N D). Same picks as :func:`naive_k_center`, far less work: the fair
  "official code" baseline.

These are references for timing and for tests, not strategies: they are quadratic in time or
memory on purpose.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "gradient_embeddings",
    "naive_badge",
    "naive_badge_min_sq_distances",
    "naive_k_center",
    "pairwise_sq_distances",
    "running_min_k_center",
]


def gradient_embeddings(probs: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """The materialised ``N x (C * D)`` BADGE embeddings ``(p - onehot(argmax p)) (x) h``."""
    q = probs.clone()
    q[torch.arange(q.shape[0], device=q.device), q.argmax(dim=1)] -= 1.0
    return (q[:, :, None] * embeddings[:, None, :]).reshape(q.shape[0], -1)


def pairwise_sq_distances(rows: torch.Tensor) -> torch.Tensor:
    """The full ``N x N`` matrix ``||x_i||^2 + ||x_j||^2 - 2 <x_i, x_j>``, clamped at 0."""
    sq = (rows * rows).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2.0 * (rows @ rows.T)).clamp_(min=0.0)


def naive_badge_min_sq_distances(
    probs: torch.Tensor, embeddings: torch.Tensor, centres: np.ndarray | list[int]
) -> np.ndarray:
    """Each row's squared distance to its nearest centre, read off the full matrix."""
    dist = pairwise_sq_distances(gradient_embeddings(probs, embeddings))
    index = torch.as_tensor(np.asarray(centres, dtype=np.int64), device=dist.device)
    return dist[:, index].amin(dim=1).double().cpu().numpy()


def naive_badge(
    probs: torch.Tensor, embeddings: torch.Tensor, budget: int, rng: np.random.Generator
) -> np.ndarray:
    """BADGE by the book: materialised embeddings, full distance matrix, k-means++ seeding.

    Returns ``min(budget, N)`` row positions in pick order.
    """
    with torch.no_grad():
        grads = gradient_embeddings(probs, embeddings)
        dist = pairwise_sq_distances(grads)
        n = dist.shape[0]
        first = int(rng.integers(n))
        picks = [first]
        d2 = dist[first].double().cpu().numpy()
        d2[first] = 0.0
        while len(picks) < min(budget, n):
            total = d2.sum()
            if total > 0:
                pick = int(rng.choice(n, p=d2 / total))
            else:  # every remaining row duplicates a centre
                pick = int(rng.choice(np.setdiff1d(np.arange(n), picks)))
            picks.append(pick)
            np.minimum(d2, dist[pick].double().cpu().numpy(), out=d2)
            d2[picks] = 0.0
        return np.asarray(picks, dtype=np.int64)


def _nearest_sq(centres: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Each row's squared distance ``x^2 + y^2 - 2xy`` to its nearest centre: ``x^2 - 2xy`` in
    one GEMM with the centres' norms as bias, its column minimum, then ``+ y^2``."""
    dist = torch.addmm((centres * centres).sum(dim=1)[:, None], centres, rows.T, alpha=-2.0)
    return dist.amin(dim=0) + (rows * rows).sum(dim=1)


def _without(rows: torch.Tensor, index: int) -> torch.Tensor:
    """``rows`` less its entry ``index``, rebuilt with ``torch.cat`` (an O(N D) copy)."""
    return torch.cat([rows[:index], rows[index + 1 :]])


def naive_k_center(pool: torch.Tensor, labeled: torch.Tensor, budget: int) -> np.ndarray:
    """Greedy k-center with the ``|L| x |U|`` matrix rebuilt at every pick (the official code).

    Args:
        pool: ``N x D`` candidate rows.
        labeled: ``|L| x D`` labelled rows (the initial centres).
        budget: number of picks.

    Returns:
        ``min(budget, N)`` positions into ``pool`` in pick order.
    """
    with torch.no_grad():
        centres = labeled
        remaining = torch.arange(pool.shape[0], device=pool.device)
        picks: list[int] = []
        for _ in range(min(budget, pool.shape[0])):
            column = int(torch.argmax(_nearest_sq(centres, pool[remaining])))
            pick = int(remaining[column])
            picks.append(pick)
            centres = torch.cat([centres, pool[pick : pick + 1]])
            remaining = _without(remaining, column)
        return np.asarray(picks, dtype=np.int64)


def running_min_k_center(pool: torch.Tensor, labeled: torch.Tensor, budget: int) -> np.ndarray:
    """Greedy k-center with a running minimum over the unlabelled rows (the official manner).

    Args and return as :func:`naive_k_center`, with the same picks.
    """
    with torch.no_grad():
        remaining = torch.arange(pool.shape[0], device=pool.device)
        unlabelled = pool
        nearest = _nearest_sq(labeled, unlabelled)  # the |L| x |U| matrix, once
        picks: list[int] = []
        for _ in range(min(budget, pool.shape[0])):
            column = int(torch.argmax(nearest))
            pick = int(remaining[column])
            picks.append(pick)
            remaining, unlabelled = _without(remaining, column), _without(unlabelled, column)
            nearest = torch.minimum(
                _without(nearest, column), _nearest_sq(pool[pick : pick + 1], unlabelled)
            )
        return np.asarray(picks, dtype=np.int64)
