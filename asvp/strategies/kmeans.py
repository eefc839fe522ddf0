"""Seeded k-means in torch, for the clustering-based strategies.

TypiClust clusters the features into ``min(|L| + budget, 500)`` clusters and ProbCover picks
its ball radius from the purity of ``num_classes`` k-means pseudo-labels. The authors' code
used scikit-learn (``KMeans`` for k <= 50, ``MiniBatchKMeans`` above; the ASVP history
``MiniBatchKMeans(batch_size=4096)``), seeded from nothing reproducible. :func:`kmeans` here:

* takes all its randomness from a numpy ``Generator`` (the cell's ``request.rng``), so the same
  generator state gives the same clustering and a resumed run repeats an uninterrupted one
  (a seed not reaching k-means is scikit-activeml#503);
* runs on the device of its input (CPU or CUDA tensors; numpy arrays are wrapped, without a
  copy when already float32/float64) and computes distances ``chunk_rows`` rows at a time:
  memory is the input plus ``chunk_rows x k`` and ``k x D``, never ``N x k`` or ``N x N``;
* seeds with greedy k-means++ (Arthur & Vassilvitskii, SODA 2007: first centre uniform, each
  next one drawn with probability proportional to the squared distance to the nearest chosen
  centre; scikit-learn's greedy variant keeps the best of ``2 + int(ln k)`` such draws),
  optionally on a random subsample of ``init_sample`` rows (``MiniBatchKMeans`` likewise seeds
  on ``init_size = 3 x batch_size`` rows), or with ``k`` distinct uniform rows (``"random"``);
* then runs Lloyd iterations (assign every row to its nearest centre, ties to the lowest
  centre index; move every centre to the mean of its rows; an empty cluster keeps its centre)
  until the assignment no longer changes, the centres move less than ``tol`` (scikit-learn's
  rule: total squared shift <= ``tol`` x the mean per-feature variance) or ``max_iter`` updates.

Centre sums are accumulated per chunk in the input dtype (:func:`scatter_add_rows`: a serial
accumulating ``index_put_`` on CPU; a one-hot GEMM on CUDA, where scatters use atomics) and
across chunks in float64, so runs are deterministic and ``chunk_rows`` only changes rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# The row helpers were first written here; their names stay importable from this module.
from .rows import (
    CHUNK_ROWS,
    as_float_rows,
    chunk_size,
    l2_normalized_rows,
    squared_norms,
    whole_pool_or_nothing,
)

__all__ = [
    "CHUNK_ROWS",
    "KMEANS_INITS",
    "KMeansResult",
    "as_float_rows",
    "kmeans",
    "l2_normalized_rows",
    "scatter_add_rows",
    "squared_norms",
    "whole_pool_or_nothing",
]

#: Initialisations accepted by :func:`kmeans`.
KMEANS_INITS = ("k-means++", "random")


@dataclass(frozen=True)
class KMeansResult:
    """The outcome of :func:`kmeans`.

    Attributes:
        centers: ``k x D`` centres, dtype and device of the input.
        labels: ``N`` int64 cluster indices (device of the input); every row's nearest centre
            among ``centers`` (ties to the lowest index).
        inertia: sum over rows of the squared distance to their centre.
        n_iter: Lloyd updates performed (0 when ``max_iter`` is 0).
        converged: whether it stopped before ``max_iter`` (stable labels or shift <= tol).
    """

    centers: torch.Tensor
    labels: torch.Tensor
    inertia: float
    n_iter: int
    converged: bool


def scatter_add_rows(out: torch.Tensor, index: torch.Tensor, rows: torch.Tensor) -> None:
    """``out[index[i]] += rows[i]`` for every ``i``, deterministically.

    On CPU ``index_put_(..., accumulate=True)``, which runs serially in row order (and is
    several times faster there than ``index_add_``, which dispatches one slice add per index);
    on CUDA, where both use atomics whose order varies from run to run, a one-hot GEMM instead
    (``len(out) x len(index)`` at a time: callers pass chunks). ``rows`` may be 1-D.
    """
    if out.device.type == "cpu":
        out.index_put_((index,), rows.to(out.dtype), accumulate=True)
        return
    onehot = torch.zeros(out.shape[0], index.shape[0], dtype=rows.dtype, device=rows.device)
    onehot[index, torch.arange(index.shape[0], device=rows.device)] = 1.0
    out += (onehot @ rows).to(out.dtype)


def kmeans(
    x: torch.Tensor | np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    init: str = "k-means++",
    max_iter: int = 100,
    tol: float = 1e-4,
    init_sample: int | None = None,
    init_trials: int | None = None,
    chunk_rows: int | None = None,
) -> KMeansResult:
    """Cluster the rows of ``x`` into ``k`` clusters with Lloyd's algorithm.

    Args:
        x: ``N x D`` rows (torch tensor on any device, or numpy array).
        k: number of clusters, ``1 <= k <= N``.
        rng: the only source of randomness (the seeding draws).
        init: ``"k-means++"`` (D^2 seeding) or ``"random"`` (``k`` distinct uniform rows).
        max_iter: cap on the Lloyd updates (0 returns the seeding's clustering).
        tol: relative tolerance on the total squared centre shift (scikit-learn's rule).
        init_sample: seed k-means++ on a uniform random subsample of this many rows (all rows
            when ``None`` or at least ``N``); seeding costs one pass over the sample per centre,
            so large pools seed on a sample, as ``MiniBatchKMeans`` does.
        init_trials: D^2 draws per k-means++ centre, the best kept (default scikit-learn's
            ``2 + int(ln k)``; 1 is plain k-means++). Each costs a pass over the sample.
        chunk_rows: rows per distance block (default :data:`CHUNK_ROWS`).

    Returns:
        a :class:`KMeansResult` whose labels are the nearest centres of the returned centres.
    """
    x = as_float_rows(x, "x")
    n = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, {n}] (the number of rows), got {k!r}")
    if init not in KMEANS_INITS:
        raise ValueError(f"unknown init {init!r}; allowed: {', '.join(KMEANS_INITS)}")
    if int(max_iter) < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if init_sample is not None and int(init_sample) < k:
        raise ValueError(f"init_sample must be >= k ({k}), got {init_sample!r}")
    if init_trials is not None and int(init_trials) < 1:
        raise ValueError(f"init_trials must be >= 1, got {init_trials!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    k = int(k)
    chunk = chunk_size(chunk_rows, CHUNK_ROWS)
    with torch.no_grad():
        sq = squared_norms(x, chunk_rows=chunk)
        if init == "random":
            rows = torch.from_numpy(rng.choice(n, size=k, replace=False)).to(x.device)
            centers = x[rows].clone()
        else:
            trials = 2 + int(math.log(k)) if init_trials is None else int(init_trials)
            centers = _kmeans_plus_plus(x, sq, k, rng, init_sample, trials)
        labels, min_d2 = _assign(x, sq, centers, chunk)
        tolerance = float(tol) * _mean_variance(x, sq, chunk)
        n_iter, converged = 0, False
        for n_iter in range(1, int(max_iter) + 1):  # noqa: B007  (n_iter is reported)
            updated = _update(x, labels, centers, chunk)
            shift = float(((updated - centers).double() ** 2).sum())
            centers = updated
            new_labels, min_d2 = _assign(x, sq, centers, chunk)
            stable = torch.equal(new_labels, labels)
            labels = new_labels
            if stable or shift <= tolerance:
                converged = True
                break
    return KMeansResult(
        centers=centers,
        labels=labels,
        inertia=float(min_d2.double().sum()),
        n_iter=n_iter,
        converged=converged,
    )


def _kmeans_plus_plus(
    x: torch.Tensor,
    sq: torch.Tensor,
    k: int,
    rng: np.random.Generator,
    init_sample: int | None,
    trials: int,
) -> torch.Tensor:
    """Greedy k-means++ seeding, on a random subsample when ``init_sample`` < N.

    The first centre is a uniform row; each next one is the best (lowest resulting potential,
    ties to the first drawn) of ``trials`` candidates drawn by D^2 sampling, as scikit-learn
    does with ``2 + int(ln k)``: plain k-means++ (``trials=1``) now and then seeds two centres
    in one well-separated cluster, which Lloyd iterations cannot undo.
    """
    n = x.shape[0]
    if init_sample is not None and int(init_sample) < n:
        rows = np.sort(rng.choice(n, size=int(init_sample), replace=False))
        index = torch.from_numpy(rows).to(x.device)
        xs, sqs = x[index], sq[index]
    else:
        xs, sqs = x, sq
    m = xs.shape[0]
    chosen = [int(rng.integers(m))]
    closest = _distances_to(xs, sqs, xs[chosen[0]].unsqueeze(1)).squeeze(1)
    for _ in range(1, k):
        total = float(closest.sum())
        if total > 0.0:
            cumulative = torch.cumsum(closest, dim=0)
            targets = torch.from_numpy(rng.random(trials) * total).to(x.device)
            candidates = torch.searchsorted(cumulative, targets, right=True).clamp_max_(m - 1)
            d2 = torch.minimum(closest.unsqueeze(1), _distances_to(xs, sqs, xs[candidates].T))
            best = int(d2.sum(dim=0).argmin())  # the first of equal potentials
            nxt, closest = int(candidates[best]), d2[:, best].contiguous()
        else:  # every row coincides with a chosen centre: any unchosen row will do
            nxt = int(rng.choice(np.setdiff1d(np.arange(m), chosen)))
        chosen.append(nxt)
    return xs[torch.tensor(chosen, device=x.device)].clone()


def _distances_to(x: torch.Tensor, sq: torch.Tensor, centers_t: torch.Tensor) -> torch.Tensor:
    """Squared distances (float64) of the rows of ``x`` to the columns of ``centers_t``
    (``D x c``), without an ``N x D`` temporary."""
    d2 = torch.addmm((centers_t * centers_t).sum(dim=0).unsqueeze(0), x, centers_t, alpha=-2.0)
    d2 += sq.unsqueeze(1)
    return d2.clamp_min_(0.0).double()


def _assign(
    x: torch.Tensor, sq: torch.Tensor, centers: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of every row (ties to the lowest index) and the squared distance."""
    n = x.shape[0]
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    min_d2 = torch.empty(n, dtype=x.dtype, device=x.device)
    center_sq = (centers * centers).sum(dim=1)
    for start in range(0, n, chunk):
        block = x[start : start + chunk]
        d2 = torch.addmm(center_sq.unsqueeze(0), block, centers.T, beta=1.0, alpha=-2.0)
        d2 += sq[start : start + block.shape[0]].unsqueeze(1)
        values, index = d2.min(dim=1)
        labels[start : start + block.shape[0]] = index
        min_d2[start : start + block.shape[0]] = values.clamp_min_(0.0)
    return labels, min_d2


def _update(
    x: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor, chunk: int
) -> torch.Tensor:
    """Means of the clusters; an empty cluster keeps its centre.

    Each chunk's rows are summed per cluster in the input dtype (in row order), and the chunk
    sums are accumulated in float64: float32 rounding only ever spans one chunk's rows of a
    cluster, and there is no float64 copy of the rows.
    """
    k, d = centers.shape
    sums = torch.zeros(k, d, dtype=torch.float64, device=x.device)
    partial = torch.empty(k, d, dtype=x.dtype, device=x.device)
    counts = torch.bincount(labels, minlength=k)
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk]
        partial.zero_()
        scatter_add_rows(partial, labels[start : start + block.shape[0]], block)
        sums += partial
    filled = counts > 0
    means = sums / counts.clamp_min(1).unsqueeze(1).double()
    return torch.where(filled.unsqueeze(1), means.to(x.dtype), centers)


def _mean_variance(x: torch.Tensor, sq: torch.Tensor, chunk: int) -> float:
    """Mean over the features of the per-feature variance of the rows of ``x``."""
    n, d = x.shape
    column_sum = torch.zeros(d, dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk):
        column_sum += x[start : start + chunk].sum(dim=0)
    mean = column_sum / n
    return max(float(sq.double().sum()) / (n * d) - float((mean * mean).sum()) / d, 0.0)
