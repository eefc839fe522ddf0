"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022): the ``probcover`` strategy.

"Active Learning Through a Covering Lens" picks, for low budgets, the points whose balls of
radius ``delta`` cover the most not-yet-covered data (greedy maximum coverage, a
``1 - 1/e`` approximation of the probability-coverage objective). As in the authors' code
(avihu111/TypiClust, ``pycls/al/prob_cover.py``):

1. Rows: the pool and the labelled set, L2-normalised.
2. The directed graph on the pool rows: ``i -> j`` when ``||x_i - x_j|| < delta`` (``i -> i``
   always); ``coverage_graph`` builds it ``chunk_rows`` source rows at a time and stores it
   sparsely (CSR: ``indptr``, ``indices``, int64).
3. Pool rows within ``delta`` of a labelled row are covered from the start (their incoming
   edges are never stored).
4. ``budget`` times: pick the row whose ball holds the most uncovered rows (ties to the lowest
   position) and mark its ball covered (``greedy_max_coverage``, degrees updated through the
   transposed graph, O(edges removed + n) per pick instead of recounting every edge).
5. Once everything is covered (no row covers anything new) the rest is drawn uniformly from the
   unpicked pool rows with ``request.rng``.

The radius: the option ``delta``, or when it is ``None`` the paper's rule: the largest
``delta`` whose ball purity is at least ``purity`` (alpha = 0.95), where a ball ``B(x, delta)``
is pure when all its rows share ``x``'s pseudo-label and the purity is the fraction of rows with
a pure ball; pseudo-labels are k-means clusters (:func:`.kmeans.kmeans`, ``k =
request.num_classes``, seeded from ``request.rng``) of the same normalised rows. Purity only
falls as ``delta`` grows, and ``B(x, delta)`` is pure exactly when ``delta`` is at most the
distance from ``x`` to the nearest row with another pseudo-label (``purity_radius``), so one
quadratic pass gives the purity of every ``delta``; the candidates are the grid
:data:`PURITY_DELTAS` = 0.05, 0.10, ..., 2.00 (unit vectors are at most 2 apart). If even
0.05 is too impure, 0.05 is used with a warning.

The graph and the purity pass are quadratic in the pool (``n^2 D`` multiply-adds) and the
edge count grows with ``delta`` up to ``n^2``: ProbCover is meant for pools of tens of
thousands of rows (benchmarked at 20,000), or behind the ``candidates`` option.

Differences from the authors' code, on purpose:

* their graph loop ran ``len // batch_size`` batches of 500 source rows, so the last
  ``len % 500`` rows had no outgoing edges and could never be picked: here every row is a source;
* after full coverage their ``argmax`` of all-zero degrees returned row 0 again and again
  (in the version read: the first labelled row, then duplicates); here the rest is random;
* they recounted the degrees of all remaining edges (pandas) at every pick; here degrees are
  updated incrementally, with the same picks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Annotated

import numpy as np
import torch

from ..options import Range
from .kmeans import kmeans
from .registry import SelectionRequest, nothing_to_choose, pool_ids_at, register_strategy
from .rows import (
    chunk_size,
    fill_at_random,
    l2_normalized_rows,
    rows_per_block,
    squared_norms,
)

__all__ = [
    "BLOCK_ENTRIES",
    "CHUNK_ROWS",
    "PURITY_DELTAS",
    "ball_purity",
    "coverage_graph",
    "covered_by",
    "delta_by_purity",
    "greedy_max_coverage",
    "probcover",
    "purity_radius",
]

#: Source rows per block of the distance computations (``CHUNK_ROWS x n`` temporaries; fewer
#: rows when a block would exceed :data:`BLOCK_ENTRIES` distances).
CHUNK_ROWS = 1024

#: Most distances held at once by one block (64 MiB of float32).
BLOCK_ENTRIES = 1 << 24

#: Candidate radii of the purity rule: 0.05, 0.10, ..., 2.00.
PURITY_DELTAS = tuple(round(0.05 * i, 2) for i in range(1, 41))


def _chunk(chunk_rows: int | None, columns: int) -> int:
    return chunk_size(chunk_rows, rows_per_block(BLOCK_ENTRIES, columns, cap=CHUNK_ROWS))


def _squared_distances(
    block: torch.Tensor, block_sq: torch.Tensor, x: torch.Tensor, sq: torch.Tensor
) -> torch.Tensor:
    d2 = torch.addmm(sq.unsqueeze(0), block, x.T, beta=1.0, alpha=-2.0)
    d2 += block_sq.unsqueeze(1)
    return d2.clamp_min_(0.0)


def purity_radius(
    x: torch.Tensor, labels: np.ndarray | torch.Tensor, *, chunk_rows: int | None = None
) -> np.ndarray:
    """For every row, the Euclidean distance to the nearest row with another label.

    ``inf`` when every row has the same label. The ball ``{y: ||x_i - y|| < delta}`` is pure
    exactly when ``delta <= radius[i]``. One pass, ``chunk_rows`` rows at a time (quadratic).
    """
    chunk = _chunk(chunk_rows, x.shape[0])
    lab = torch.as_tensor(np.asarray(labels, dtype=np.int64)).to(x.device)
    if lab.shape != (x.shape[0],):
        raise ValueError(f"labels must have one entry per row ({x.shape[0]}), got {lab.shape}")
    sq = squared_norms(x)
    out = np.empty(x.shape[0], dtype=np.float64)
    with torch.no_grad():
        for start in range(0, x.shape[0], chunk):
            block = x[start : start + chunk]
            stop = start + block.shape[0]
            d2 = _squared_distances(block, sq[start:stop], x, sq)
            d2.masked_fill_(lab[start:stop].unsqueeze(1) == lab.unsqueeze(0), torch.inf)
            out[start:stop] = d2.min(dim=1).values.sqrt_().double().cpu().numpy()
    return out


def ball_purity(radius: np.ndarray, delta: float) -> float:
    """The fraction of rows whose ``delta``-ball is pure, given :func:`purity_radius`."""
    radius = np.asarray(radius, dtype=np.float64)
    return float(np.mean(radius >= delta)) if radius.size else 1.0


def delta_by_purity(
    radius: np.ndarray, purity: float = 0.95, grid: Sequence[float] = PURITY_DELTAS
) -> float:
    """The largest ``delta`` of ``grid`` with :func:`ball_purity` at least ``purity``.

    When no grid value is pure enough the smallest one is returned, with a ``RuntimeWarning``.
    """
    values = sorted(float(d) for d in grid)
    if not values or values[0] <= 0:
        raise ValueError(f"grid must hold positive radii, got {list(grid)!r}")
    passing = [d for d in values if ball_purity(radius, d) >= purity]
    if passing:
        return passing[-1]
    warnings.warn(
        f"probcover: no radius on the grid reaches ball purity {purity} (purity at "
        f"{values[0]} is {ball_purity(radius, values[0]):.3f}); using delta={values[0]}",
        RuntimeWarning,
        stacklevel=2,
    )
    return values[0]


def covered_by(
    x: torch.Tensor, centers: torch.Tensor, delta: float, *, chunk_rows: int | None = None
) -> np.ndarray:
    """Booleans: which rows of ``x`` lie strictly within ``delta`` of some row of ``centers``."""
    chunk = _chunk(chunk_rows, x.shape[0])
    covered = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    if centers.shape[0] and x.shape[0]:
        sq = squared_norms(x)
        center_sq = squared_norms(centers)
        with torch.no_grad():
            for start in range(0, centers.shape[0], chunk):
                block = centers[start : start + chunk]
                d2 = _squared_distances(block, center_sq[start : start + block.shape[0]], x, sq)
                covered |= (d2 < delta * delta).any(dim=0)
    return covered.cpu().numpy()


def coverage_graph(
    x: torch.Tensor,
    delta: float,
    *,
    covered: np.ndarray | None = None,
    chunk_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The delta-ball graph of the rows of ``x`` in CSR form, without edges into ``covered``.

    Edge ``i -> j`` when ``||x_i - x_j|| < delta``, or ``i == j``, and ``j`` is not covered.
    Built ``chunk_rows`` source rows at a time (``chunk_rows x n`` distances at once).

    Returns:
        ``(indptr, indices)``, int64: the targets of row ``i`` are
        ``indices[indptr[i]:indptr[i + 1]]``, ascending.
    """
    chunk = _chunk(chunk_rows, x.shape[0])
    n = x.shape[0]
    blocked = np.zeros(n, dtype=bool) if covered is None else np.asarray(covered, dtype=bool)
    if blocked.shape != (n,):
        raise ValueError(f"covered must have one entry per row ({n}), got {blocked.shape}")
    blocked_t = torch.from_numpy(blocked).to(x.device)
    sq = squared_norms(x)
    counts = np.zeros(n, dtype=np.int64)
    parts: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, n, chunk):
            block = x[start : start + chunk]
            stop = start + block.shape[0]
            rows = torch.arange(block.shape[0], device=x.device)
            d2 = _squared_distances(block, sq[start:stop], x, sq)
            d2[rows, rows + start] = 0.0  # a row is always in its own ball
            edges = (d2 < delta * delta) & ~blocked_t.unsqueeze(0)
            counts[start:stop] = edges.sum(dim=1).cpu().numpy()
            parts.append(edges.nonzero()[:, 1].cpu().numpy().astype(np.int64))  # row-major
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return indptr, indices


def _gather_segments(indptr: np.ndarray, data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``concatenate([data[indptr[r]:indptr[r + 1]] for r in rows])``, vectorised."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=data.dtype)
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
    return data[offsets]


def greedy_max_coverage(indptr: np.ndarray, indices: np.ndarray, budget: int) -> np.ndarray:
    """Greedy maximum coverage on a CSR graph: up to ``budget`` rows, in pick order.

    Each step picks the row with the most uncovered targets (ties to the lowest row) and covers
    its targets; it stops early when no row covers anything new. Targets absent from the graph
    (covered beforehand) never count.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    n = indptr.size - 1
    degree = np.diff(indptr)
    # the transposed graph: the sources of every target
    in_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(indices, minlength=n), out=in_ptr[1:])
    sources = np.repeat(np.arange(n, dtype=np.int64), degree)[np.argsort(indices, kind="stable")]
    covered = np.zeros(n, dtype=bool)
    picks: list[int] = []
    for _ in range(int(budget)):
        if n == 0:
            break
        best = int(np.argmax(degree))  # the first maximum
        if degree[best] <= 0:
            break
        targets = indices[indptr[best] : indptr[best + 1]]
        fresh = targets[~covered[targets]]
        covered[fresh] = True
        degree -= np.bincount(_gather_segments(in_ptr, sources, fresh), minlength=n)
        picks.append(best)
    return np.asarray(picks, dtype=np.int64)


@register_strategy("probcover", needs=("features",))
def probcover(
    request: SelectionRequest,
    *,
    delta: Annotated[float | None, Range(gt=0)] = None,
    purity: Annotated[float, Range(gt=0, le=1)] = 0.95,
) -> np.ndarray:
    """ProbCover on the cell's features; see the module docstring.

    Options (ranges checked by :func:`.registry.select`): ``delta`` (the ball radius on
    L2-normalised features; ``None``: the largest grid radius whose k-means ball purity reaches
    ``purity``, which needs ``request.num_classes``) and ``purity`` (alpha, 0.95).
    """
    if delta is None and request.num_classes is None:
        raise ValueError(
            "probcover option 'delta' is null, so the radius is chosen by ball purity over "
            "k-means pseudo-labels with k = request.num_classes, which is None; set the "
            "option 'delta' or give the request its num_classes"
        )
    chosen = nothing_to_choose(request)
    if chosen is not None:
        return chosen
    n, size = len(request.pool_ids), int(request.budget)  # 0 < budget < pool size
    x = l2_normalized_rows([request.features.pool, request.features.labeled])
    if delta is None:
        k = min(int(request.num_classes), x.shape[0])
        if k < 1:
            raise ValueError(f"num_classes must be >= 1, got {request.num_classes!r}")
        labels = kmeans(x, k, rng=request.rng).labels.cpu().numpy()
        delta = delta_by_purity(purity_radius(x, labels), purity)
    pool_x, labeled_x = x[:n], x[n:]
    covered = covered_by(pool_x, labeled_x, float(delta))
    indptr, indices = coverage_graph(pool_x, float(delta), covered=covered)
    picks = greedy_max_coverage(indptr, indices, size)
    return pool_ids_at(request, fill_at_random(picks, n, size, request.rng))
