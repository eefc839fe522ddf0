"""TypiClust (Hacohen, Dekel & Weinshall, ICML 2022): the ``typiclust`` strategy (TypiClust-RP).

"Active Learning on a Budget" argues that with few labels one should query *typical* points,
spread over the data: cluster the representation, then take the most typical point of the
clusters that hold the fewest labels (the paper's Alg. 1). As in the authors' code
(avihu111/TypiClust, ``pycls/al/typiclust.py``) and the ASVP history version
(``docs/official-code.md`` section 3):

1. Rows: the pool and the labelled set, L2-normalised (the authors' ``load_features`` default).
2. k-means with ``k = min(|L| + budget, max_clusters)`` (500 as in both codes; capped at the
   row count) on all rows, the labelled ones included, with :func:`.kmeans.kmeans`: plain
   k-means++ seeded from ``request.rng`` on at most :data:`KMEANS_INIT_SAMPLE` rows (one D^2
   draw per centre: the greedy variant's ``2 + ln k`` draws cost 5-10x more for hundreds of
   centres and ended within 0.05% of its inertia after the Lloyd updates on 20,000 x 512
   features), then at most ``kmeans_iterations`` Lloyd updates. The authors used scikit-learn
   ``KMeans`` (k <= 50) or ``MiniBatchKMeans`` (batch 5,000, so k-means++ on 15,000 rows;
   ASVP 4,096); full Lloyd updates with a cap bound the cost (one update is ``N x k x D``
   multiply-adds; synthetic 200,000 x 2,048 features converge in about 10).
3. ``budget`` times: among the clusters with at least ``min_cluster_size`` rows (labelled ones
   included) and an unlabelled unpicked row left, take the one holding the fewest labelled
   points, picks of this round included; ties to the largest cluster, then the lowest cluster
   index. Pick its most typical unlabelled unpicked row (``typiclust_pick``).
4. If no cluster is eligible any more, the rest is drawn uniformly from the unpicked pool rows
   with ``request.rng``.

Typicality (the paper's definition): ``1 / mean distance to the K nearest neighbours`` with
Euclidean distance, ``K = min(neighbors, size - 1)`` within the point's cluster (all its rows,
labelled included: the density of the data does not change when a point is labelled). The
point itself is not its own neighbour: its own entry is excluded by position, so a duplicate of
it still counts as a neighbour at distance 0 (the authors' faiss search asked for ``K + 1``
neighbours and dropped the first column, which with duplicates could drop the other copy
instead). A cluster's typicality is computed once, ``chunk_rows`` rows at a time with a top-K
(memory ``chunk_rows x size``, never ``size x size``); its time is quadratic in the cluster size.
Ranking uses the mean distance (smallest first, ties to the lowest position), the same order as
``1 / mean`` without dividing by zero for duplicates.

The distance is an option, ``distance``: ``"euclidean"`` (the default: the paper's definition,
and the ASVP history version's) or ``"squared"``, the mean *squared* Euclidean distance to the K
nearest neighbours, which is what the authors' released code computes (``get_nn`` searches a
faiss ``IndexFlatL2``, whose distances are squared L2, and ``get_mean_nn_dist`` averages them;
its ``1 / (mean + 1e-5)`` ranks as the mean does). The nearest neighbours are the same under
both; only the mean, and so the ranking, differs: an average of squares weighs a far neighbour
more. The default keeps existing selections and run keys (which hold only the options given).

Differences from the authors' code, on purpose:

* they sorted the clusters once by (labelled count, -size) and then cycled through that list
  (``iloc[i % len]``) without counting their own picks, and recomputed the typicality among
  the remaining unlabelled rows only with ``K = min(20, remaining // 2)``; here the counts
  include this round's picks (the paper's rule: the cluster with the fewest labels) and the
  typicality is that of the whole cluster;
* their eligibility was ``size > 5`` (strictly); here ``size >= min_cluster_size`` (set 6 for
  theirs); a cluster whose unlabelled rows are all picked is skipped instead of failing;
* their selection could come up short and stop at an ``assert``; here the shortfall is random;
* their k-means was seeded from scikit-learn's global state; here only ``request.rng``.
"""

from __future__ import annotations

from typing import Annotated, Literal

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
    "KMEANS_INIT_SAMPLE",
    "mean_knn_distance",
    "typiclust",
    "typiclust_pick",
]

#: Rows per block of the within-cluster distance computations (fewer for clusters so large that
#: a block would exceed :data:`BLOCK_ENTRIES` distances).
CHUNK_ROWS = 2048

#: Most distances held at once by one block (64 MiB of float32).
BLOCK_ENTRIES = 1 << 24

#: k-means++ seeds on at most this many rows (MiniBatchKMeans seeds on 3 x its batch of 5,000).
KMEANS_INIT_SAMPLE = 15000


def mean_knn_distance(
    x: torch.Tensor, neighbors: int, *, chunk_rows: int | None = None, squared: bool = False
) -> np.ndarray:
    """Mean Euclidean distance of every row of ``x`` to its ``neighbors`` nearest other rows
    (with ``squared``, the mean squared Euclidean distance, as the TypiClust release computes).

    A row is never its own neighbour (its entry is excluded by position; a duplicate row still
    counts, at distance 0). ``neighbors`` must be ``< len(x)``; 0 gives zeros. Computed
    ``chunk_rows`` rows at a time (default: :data:`CHUNK_ROWS`, fewer when a block would hold
    more than :data:`BLOCK_ENTRIES` distances) with a top-k, in the dtype of ``x``; float64
    result.
    """
    s = x.shape[0]
    if not 0 <= neighbors < max(s, 1):
        raise ValueError(f"neighbors must be in [0, {s - 1}] for {s} rows, got {neighbors}")
    out = np.zeros(s, dtype=np.float64)
    if neighbors == 0 or s == 0:
        return out
    chunk = chunk_size(chunk_rows, rows_per_block(BLOCK_ENTRIES, s, cap=CHUNK_ROWS))
    sq = squared_norms(x)
    with torch.no_grad():
        for start in range(0, s, chunk):
            block = x[start : start + chunk]
            rows = torch.arange(block.shape[0], device=x.device)
            d2 = torch.addmm(sq.unsqueeze(0), block, x.T, beta=1.0, alpha=-2.0)
            d2 += sq[start : start + block.shape[0]].unsqueeze(1)
            d2.clamp_min_(0.0)
            d2[rows, rows + start] = torch.inf  # not its own neighbour
            nearest = d2.topk(neighbors, dim=1, largest=False).values
            if not squared:
                nearest.sqrt_()
            mean = nearest.double().mean(dim=1)
            out[start : start + block.shape[0]] = mean.cpu().numpy()
    return out


def typiclust_pick(
    x: torch.Tensor,
    clusters: np.ndarray,
    labeled_mask: np.ndarray,
    budget: int,
    *,
    min_cluster_size: int = 5,
    neighbors: int = 20,
    squared: bool = False,
    chunk_rows: int | None = None,
) -> np.ndarray:
    """TypiClust's pick rule (step 3 of the module docstring) for given clusters.

    Args:
        x: ``N x D`` rows (labelled and unlabelled), already in the space to measure.
        clusters: ``N`` non-negative cluster indices.
        labeled_mask: ``N`` booleans, True for the labelled rows.
        budget: picks wanted.
        min_cluster_size: clusters with fewer rows are never picked from.
        neighbors: the ``K`` of the typicality, capped at ``size - 1`` per cluster.
        squared: rank by the mean squared distance (the authors' release) instead of the mean
            distance (the paper).

    Returns:
        at most ``budget`` distinct positions of unlabelled rows, in pick order (fewer when no
        eligible cluster has an unlabelled row left; the caller fills the shortfall).
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    labeled_mask = np.asarray(labeled_mask, dtype=bool)
    n_rows = x.shape[0]
    if clusters.shape != (n_rows,) or labeled_mask.shape != (n_rows,):
        raise ValueError(
            f"clusters and labeled_mask must have one entry per row ({n_rows}), got "
            f"{clusters.shape} and {labeled_mask.shape}"
        )
    if n_rows and clusters.min() < 0:
        raise ValueError("cluster indices must be >= 0")
    if int(neighbors) < 1:
        raise ValueError(f"neighbors must be >= 1, got {neighbors!r}")
    if int(min_cluster_size) < 1:
        raise ValueError(f"min_cluster_size must be >= 1, got {min_cluster_size!r}")
    k = int(clusters.max()) + 1 if n_rows else 0
    sizes = np.bincount(clusters, minlength=k)
    labeled_count = np.bincount(clusters[labeled_mask], minlength=k)
    free_count = sizes - labeled_count
    eligible = sizes >= int(min_cluster_size)
    members = np.split(np.argsort(clusters, kind="stable"), np.cumsum(sizes)[:-1])
    queues: dict[int, list[int]] = {}  # cluster -> its unlabelled rows, most typical last

    picks: list[int] = []
    for _ in range(int(budget)):
        open_clusters = np.flatnonzero(eligible & (free_count > 0))
        if open_clusters.size == 0:
            break
        # fewest labelled first, then the largest, then the lowest index
        order = np.lexsort((open_clusters, -sizes[open_clusters], labeled_count[open_clusters]))
        c = int(open_clusters[order[0]])
        if c not in queues:
            rows = members[c]
            index = torch.from_numpy(rows).to(x.device)
            spread = mean_knn_distance(
                x[index],
                min(int(neighbors), rows.size - 1),
                chunk_rows=chunk_rows,
                squared=squared,
            )
            free = ~labeled_mask[rows]
            ranked = rows[free][np.argsort(spread[free], kind="stable")]
            queues[c] = ranked[::-1].tolist()
        picks.append(queues[c].pop())
        labeled_count[c] += 1
        free_count[c] -= 1
    return np.asarray(picks, dtype=np.int64)


@register_strategy("typiclust", needs=("features",))
def typiclust(
    request: SelectionRequest,
    *,
    max_clusters: Annotated[int, Range(ge=1)] = 500,
    min_cluster_size: Annotated[int, Range(ge=1)] = 5,
    neighbors: Annotated[int, Range(ge=1)] = 20,
    kmeans_iterations: Annotated[int, Range(ge=0)] = 20,
    distance: Literal["euclidean", "squared"] = "euclidean",
) -> np.ndarray:
    """TypiClust-RP on the cell's features; see the module docstring.

    Options (ranges checked by :func:`.registry.select`): ``max_clusters`` caps k (500),
    ``min_cluster_size`` (5) excludes small clusters, ``neighbors`` is the typicality's K (20),
    ``kmeans_iterations`` caps the Lloyd updates (20), ``distance`` is the typicality's
    (``"euclidean"``, the paper's; ``"squared"``, the authors' released code's).
    """
    chosen = nothing_to_choose(request)
    if chosen is not None:
        return chosen
    n, size = len(request.pool_ids), int(request.budget)  # 0 < budget < pool size
    x = l2_normalized_rows([request.features.pool, request.features.labeled])
    m = x.shape[0] - n
    k = min(m + size, int(max_clusters), x.shape[0])
    result = kmeans(
        x,
        k,
        rng=request.rng,
        max_iter=int(kmeans_iterations),
        init_sample=KMEANS_INIT_SAMPLE if x.shape[0] > KMEANS_INIT_SAMPLE else None,
        init_trials=1,
    )
    labeled_mask = np.zeros(x.shape[0], dtype=bool)
    labeled_mask[n:] = True
    picks = typiclust_pick(
        x,
        result.labels.cpu().numpy(),
        labeled_mask,
        size,
        min_cluster_size=min_cluster_size,
        neighbors=neighbors,
        squared=distance == "squared",
    )
    return pool_ids_at(request, fill_at_random(picks, n, size, request.rng))
