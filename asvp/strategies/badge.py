"""BADGE (Ash et al., ICLR 2020): k-means++ seeding over gradient embeddings (``badge``).

The gradient embedding of an unlabelled row is the gradient of the cross-entropy at its predicted
label with respect to the last linear layer: ``g_i = (p_i - e_{yhat_i}) (x) h_i`` with ``p_i`` the
softmax row, ``yhat_i = argmax p_i`` (first maximum on ties) and ``h_i`` the penultimate embedding
(the last layer's input). BADGE picks ``budget`` rows by k-means++ seeding over the ``g_i``: the
first uniformly at random, each next one with probability proportional to its squared distance
to the nearest row already picked (D^2 sampling). The labelled set plays no part (as in BADGE).

``g_i`` has ``C x D`` dimensions (2M for ImageNet with a ResNet-50) and is never materialised:
with ``q_i = p_i - e_{yhat_i}``, ``<g_i, g_j> = <q_i, q_j> <h_i, h_j>`` and
``||g_i||^2 = ||q_i||^2 ||h_i||^2``, so a distance costs O(C + D). Memory is O(N) (one
min-squared-distance vector in float64) plus a ``chunk x C`` block: ``q`` is built chunk by chunk,
never as a second ``N x C`` copy of ``probs``.

Sampling is exactly k-means++ in distribution, and fast: after a full refresh of the distance
vector ``D2_ref`` (one pass of GEMMs ``(Q Qc^T) * (H Hc^T)`` against the rows picked since the
previous refresh), proposals ``x ~ D2_ref`` are drawn by inverse CDF and accepted with
probability ``D2_now(x) / D2_ref(x)``, where ``D2_now(x)`` also accounts for the rows picked since
the refresh (a few O(C + D) products). Distances only decrease, so the ratio is at most 1 and an
accepted row is distributed exactly as ``D2_now``; picked rows have ``D2_now = 0`` and are never
accepted. A refresh happens after ``refresh_every`` accepted picks or ``max_rejections``
rejections.

Random numbers come only from the ``rng`` given, in a documented order (see
:func:`badge_select`), so a selection is reproducible and does not depend on the chunk size
beyond floating-point rounding.

Differences from the official code (``docs/official-code.md`` section 3), on purpose:

* the official embedding was the autograd gradient of the *mean*-reduced cross-entropy,
  ``(softmax - onehot) / B``: the smaller last batch was inflated by ``B / B_last`` (up to
  4096x). Here no batch enters the embedding: results do not depend on any batch or chunk size;
* the official ``i % int(budget / 10)`` progress print raised ``ZeroDivisionError`` for
  ``2 <= budget < 10``; every budget works here;
* when every remaining distance was 0 (all remaining rows duplicate picked ones) the official
  probabilities were 0/0 = NaN. Here the remaining picks are then uniform without replacement
  among the unpicked rows, and pairs within rounding error of each other are recomputed exactly
  (float64, from differences), so duplicates of a picked row are at distance exactly 0;
* the official k-means++ held the full ``N x N`` squared-distance matrix in numpy (10 GB at
  N = 50k) and recomputed each row's minimum over all centres per pick (O(k^2 N)); here one
  O(N) vector is refreshed in passes, and no ``B x C x D`` block of embeddings exists (the
  official autograd embedding peaked at 4096 x 1000 x 2048, ~33 GB of GPU memory);
* the first pick is uniform at random, as in the ASVP code's ``kmeans_plus`` (and k-means++);
  Ash et al.'s released code (JordanAsh/badge, ``init_centers`` in
  ``query_strategies/badge_sampling.py``) takes the row with the largest gradient-embedding norm
  first (``np.argmax`` of the norms: the first such row on ties), then D^2 sampling as here. The
  option ``first_pick: largest_norm`` gives theirs (``uniform``, the default, keeps existing
  selections and run keys);
* the official embedding was average-pooled from ``C x D`` to 16 x 32 (from "Active learning at
  the ImageNet scale"), and ``badge_partition_subset`` ran k-means++ in 20 partitions of 16k
  among 320,000 random candidates (under-selecting when ``budget`` was not a multiple of 20).
  This is exact BADGE on the full embedding; the registry's generic ``candidates: N`` option
  gives the subsampling when parity with the official runs is wanted.
"""

from __future__ import annotations

from math import inf
from typing import Literal

import numpy as np
import torch

from .kcenter import block_rows, compute_dtype
from .registry import SelectionRequest, pool_ids_at, register_strategy
from .rows import Rows, as_rows, check_chunk_rows

__all__ = [
    "REFRESH_EVERY",
    "badge_min_sq_distances",
    "badge_select",
    "default_max_rejections",
]

#: Accepted picks between two refreshes of the distance vector.
REFRESH_EVERY = 128

#: Centres per block of a pass.
_BLOCK_CENTRES = 256

#: Pairs recomputed exactly in float64 at a time.
_EXACT_PAIRS = 1024


def default_max_rejections(n: int) -> int:
    """Rejected proposals after which the distance vector is refreshed: ``max(64, n // 200)``,
    about the cost of one refresh pass."""
    return max(64, n // 200)


def _subtract_one_hot(q: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``q[i, labels[i]] -= 1`` in place (a scatter: advanced-index assignment is slow on CPU)."""
    ones = torch.ones((labels.numel(), 1), dtype=q.dtype, device=q.device)
    return q.scatter_add_(1, labels[:, None], ones.neg_())


class _Factorised:
    """The gradient embeddings ``q_i (x) h_i`` of ``probs`` and ``embeddings``, never formed."""

    def __init__(self, probs: Rows, embeddings: Rows, chunk_rows: int | None) -> None:
        self.h = as_rows(embeddings, "embeddings")
        self.p = as_rows(probs, "probs").to(self.h.device)
        self.n = self.h.shape[0]
        if self.p.shape[0] != self.n:
            raise ValueError(
                f"probs has {self.p.shape[0]} rows but embeddings have {self.n}; "
                "rows must be aligned"
            )
        self.device = self.h.device
        self.dtype = compute_dtype(self.p, self.h)
        self.chunk_rows = chunk_rows
        classes, dim = self.p.shape[1], self.h.shape[1]
        self.tol = min(0.25, 2.0 * (classes + dim) * torch.finfo(self.dtype).eps)
        self.yhat = torch.empty(self.n, dtype=torch.int64, device=self.device)
        q2 = torch.empty(self.n, dtype=torch.float64, device=self.device)
        h2 = torch.empty(self.n, dtype=torch.float64, device=self.device)
        chunk = block_rows(chunk_rows, self.n, 2 * classes + dim)
        for start in range(0, self.n, chunk):
            stop = min(start + chunk, self.n)
            p = self.p[start:stop].to(torch.float64, copy=True)
            self.yhat[start:stop] = torch.argmax(p, dim=1)  # first maximum on ties
            q2[start:stop] = _subtract_one_hot(p, self.yhat[start:stop]).square_().sum(dim=1)
            h = self.h[start:stop]
            h2[start:stop] = h.square().sum(dim=1, dtype=torch.float64)
        self.g2 = q2 * h2  # ||g_i||^2
        bad = torch.nonzero(~torch.isfinite(self.g2)).flatten()
        if bad.numel():
            raise ValueError(
                f"probs or embeddings have a non-finite row at row {int(bad[0])} "
                f"({bad.numel()} row(s) in all)"
            )

    def q(self, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``q`` of the rows ``index`` (any order), in ``dtype``."""
        q = self.p.index_select(0, index).to(dtype)  # index_select copies
        return _subtract_one_hot(q, self.yhat.index_select(0, index))

    def q_range(self, start: int, stop: int) -> torch.Tensor:
        """``q`` of the rows ``start:stop`` in the compute dtype (a copy of that block only)."""
        q = self.p[start:stop].to(self.dtype, copy=True)
        return _subtract_one_hot(q, self.yhat[start:stop])

    def centres(self, rows: list[int] | np.ndarray, dtype: torch.dtype | None = None) -> tuple:
        """``(index, q, h, ||g||^2)`` of the centre rows, for :meth:`min_sq`."""
        dtype = self.dtype if dtype is None else dtype
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        h = self.h.index_select(0, index).to(dtype)
        return index, self.q(index, dtype), h, self.g2.index_select(0, index)

    def exact_sq(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Exact float64 ``||g_r - g_c||^2`` for the pairs ``(rows[k], cols[k])``, from
        differences: ``a (x) b - c (x) d = (a - c) (x) b + c (x) (b - d)``, so identical rows give
        exactly 0 without cancellation."""
        out = []
        for s in range(0, rows.numel(), _EXACT_PAIRS):
            r, c = rows[s : s + _EXACT_PAIRS], cols[s : s + _EXACT_PAIRS]
            a, cq = self.q(r, torch.float64), self.q(c, torch.float64)
            b = self.h.index_select(0, r).to(torch.float64)
            d = self.h.index_select(0, c).to(torch.float64)
            dq, dh = a - cq, b - d
            value = (
                dq.square().sum(1) * b.square().sum(1)
                + cq.square().sum(1) * dh.square().sum(1)
                + 2.0 * (dq * cq).sum(1) * (b * dh).sum(1)
            )
            out.append(value.clamp_(min=0.0))
        return torch.cat(out) if out else torch.empty(0, dtype=torch.float64, device=self.device)

    def min_sq(self, start: int, stop: int, q: torch.Tensor, centres: tuple) -> torch.Tensor:
        """Rows ``start:stop`` (their ``q`` given): float64 min squared distance to ``centres``.

        ``||g_i||^2 + min_c (||g_c||^2 - 2 <q_i, q_c> <h_i, h_c>)``: two GEMMs and one fused
        multiply-add in the compute dtype; rows whose minimum is within the rounding error bound
        get their near pairs recomputed exactly (:meth:`exact_sq`). A centre against itself is
        left out (its distance, 0, is set by :meth:`lower`)."""
        index, cq, ch, cg2 = centres
        part = torch.addcmul(
            cg2.to(self.dtype)[None, :],
            q @ cq.T,
            self.h[start:stop].to(self.dtype) @ ch.T,
            value=-2.0,
        )  # ||g_c||^2 - 2 <g_i, g_c>
        inside = torch.nonzero((index >= start) & (index < stop)).flatten()
        if inside.numel():
            part.index_put_((index.index_select(0, inside) - start, inside), part.new_tensor(inf))
        g2 = self.g2[start:stop]
        best = part.amin(dim=1).to(torch.float64).add_(g2)
        suspect = torch.nonzero(best <= (g2 + cg2.max()).mul_(self.tol)).flatten()
        if suspect.numel():
            sus_g2 = g2.index_select(0, suspect)[:, None]
            d2 = part.index_select(0, suspect).to(torch.float64).add_(sus_g2)
            near_r, near_c = torch.nonzero(
                d2 <= (sus_g2 + cg2[None, :]).mul_(self.tol), as_tuple=True
            )
            d2[near_r, near_c] = self.exact_sq(suspect[near_r] + start, index[near_c])
            best.index_copy_(0, suspect, d2.amin(dim=1))
        return best.clamp_(min=0.0)

    def lower(self, d2: torch.Tensor, rows: list[int] | np.ndarray) -> None:
        """``d2 = min(d2, squared distance to the centre rows)`` for every row, in passes."""
        per_block = max(1, min(len(rows), _BLOCK_CENTRES))
        convert = 0 if self.h.dtype == self.dtype else self.h.shape[1]
        chunk = block_rows(self.chunk_rows, self.n, self.p.shape[1] + per_block + convert)
        for c0 in range(0, len(rows), per_block):
            centres = self.centres(rows[c0 : c0 + per_block])
            for start in range(0, self.n, chunk):
                stop = min(start + chunk, self.n)
                best = self.min_sq(start, stop, self.q_range(start, stop), centres)
                torch.minimum(d2[start:stop], best, out=d2[start:stop])
            d2.index_fill_(0, centres[0], 0.0)

    def to_centres(self, row: int, centres: tuple) -> float:
        """Squared distance of ``row`` to its nearest centre (float64 ``centres``)."""
        index, cq, ch, cg2 = centres
        r = torch.tensor([row], dtype=torch.int64, device=self.device)
        qr, hr = self.q(r, torch.float64)[0], self.h[row].to(torch.float64)
        d2 = (cq @ qr).mul_(ch @ hr).mul_(-2.0).add_(cg2).add_(self.g2[row])
        near = torch.nonzero(d2 <= (cg2 + self.g2[row]).mul_(self.tol)).flatten()
        if near.numel():
            d2[near] = self.exact_sq(r.expand(near.numel()), index[near])
        return float(d2.clamp_(min=0.0).min())


class _Recent:
    """The picks since the last refresh as float64 centres, filled one row at a time (row
    copies stay below the size at which torch starts worker threads)."""

    def __init__(self, emb: _Factorised, capacity: int) -> None:
        self.emb = emb
        kw = {"dtype": torch.float64, "device": emb.device}
        self.index = torch.empty(capacity, dtype=torch.int64, device=emb.device)
        self.q = torch.empty((capacity, emb.p.shape[1]), **kw)
        self.h = torch.empty((capacity, emb.h.shape[1]), **kw)
        self.g2 = torch.empty(capacity, **kw)
        self.size = 0

    def clear(self) -> None:
        self.size = 0

    def add(self, row: int) -> None:
        k, emb = self.size, self.emb
        self.index[k] = row
        self.q[k].copy_(emb.p[row])
        self.q[k, int(emb.yhat[row])] -= 1.0
        self.h[k].copy_(emb.h[row])
        self.g2[k] = emb.g2[row]
        self.size += 1

    def centres(self) -> tuple:
        k = self.size
        return self.index[:k], self.q[:k], self.h[:k], self.g2[:k]


def badge_min_sq_distances(
    probs: Rows,
    embeddings: Rows,
    centres: np.ndarray | list[int],
    *,
    chunk_rows: int | None = None,
) -> np.ndarray:
    """Each row's squared distance to its nearest centre in gradient-embedding space.

    Args:
        probs: ``N x C`` softmax outputs (torch tensor on any device, or numpy array).
        embeddings: ``N x D`` penultimate embeddings, rows aligned with ``probs``.
        centres: row indices of the centres.
        chunk_rows: rows per block (default: automatic, about 64 MB of temporaries).

    ``min_c ||g_i - g_c||^2`` with ``g_i = (p_i - e_{argmax p_i}) (x) h_i``, by the factorised
    inner product (never forming ``g``); GEMMs in float64 when an input is float64 and in
    float32 otherwise, pairs within rounding error of 0 recomputed exactly in float64.

    Returns:
        float64 array of length N (``inf`` everywhere when ``centres`` is empty).
    """
    with torch.no_grad():
        emb = _Factorised(probs, embeddings, check_chunk_rows(chunk_rows))
        rows = np.asarray(centres, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= emb.n):
            raise ValueError(f"centres hold row indices outside 0..{emb.n - 1}")
        d2 = torch.full((emb.n,), float("inf"), dtype=torch.float64, device=emb.device)
        emb.lower(d2, rows)
        return d2.cpu().numpy()


def badge_select(
    probs: Rows,
    embeddings: Rows,
    budget: int,
    rng: np.random.Generator,
    *,
    chunk_rows: int | None = None,
    refresh_every: int = REFRESH_EVERY,
    max_rejections: int | None = None,
    first_pick: str = "uniform",
) -> np.ndarray:
    """k-means++ seeding over the gradient embeddings of the rows (BADGE's selection).

    Args:
        probs, embeddings: the rows, as for :func:`badge_min_sq_distances`.
        budget: number of rows to pick.
        rng: the only source of randomness.
        chunk_rows: rows per block of the passes (default: automatic); never changes
            the result beyond floating-point rounding.
        refresh_every: accepted picks between two refreshes (default :data:`REFRESH_EVERY`).
        max_rejections: rejected proposals since the last refresh that force a refresh
            (default :func:`default_max_rejections` of N).
        first_pick: ``"uniform"`` (k-means++, the ASVP code) or ``"largest_norm"`` (the row of
            largest ``||g_i||``, the first on ties: Ash et al.'s released code).

    Random numbers are drawn in this order: the first pick ``rng.integers(N)`` (none with
    ``largest_norm``); then per
    proposal ``u = rng.random(2)``: the proposal is the first row whose cumulative
    ``D2_ref`` exceeds ``u[0] * sum(D2_ref)`` (``D2_ref``: the distance vector of the last
    refresh, 0 for rows picked before it), accepted iff it is unpicked and
    ``u[1] * D2_ref[x] < D2_now[x]``. If after a refresh every unpicked row is at distance 0, the
    remaining picks are ``rng.choice(unpicked rows, remaining, replace=False)``.

    Returns:
        ``min(budget, N)`` distinct int64 row positions in pick order.
    """
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0:
        raise ValueError(f"budget must be a non-negative int, got {budget!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if int(refresh_every) < 1:
        raise ValueError(f"refresh_every must be >= 1, got {refresh_every!r}")
    if first_pick not in ("uniform", "largest_norm"):
        raise ValueError(f"first_pick must be 'uniform' or 'largest_norm', got {first_pick!r}")
    with torch.no_grad():
        emb = _Factorised(probs, embeddings, check_chunk_rows(chunk_rows))
        n = emb.n
        limit = default_max_rejections(n) if max_rejections is None else int(max_rejections)
        if limit < 1:
            raise ValueError(f"max_rejections must be >= 1, got {max_rejections!r}")
        target = min(int(budget), n)
        if target == 0:
            return np.empty(0, dtype=np.int64)
        picked = np.zeros(n, dtype=bool)
        if first_pick == "uniform":
            picks = [int(rng.integers(n))]
        else:
            picks = [int(np.argmax(emb.g2.cpu().numpy()))]  # first maximum on ties
        picked[picks[0]] = True
        pending = list(picks)  # picks since the last refresh
        recent = _Recent(emb, min(int(refresh_every), target))
        d2_device = torch.full((n,), float("inf"), dtype=torch.float64, device=emb.device)
        while len(picks) < target:
            # Refresh: D2_ref current for every row, its cumulative sum for inverse-CDF draws.
            emb.lower(d2_device, pending)
            pending = []
            recent.clear()
            d2_ref = d2_device.cpu().numpy().copy()
            d2_ref[picked] = 0.0
            cumulative = np.cumsum(d2_ref)
            total = float(cumulative[-1])
            if not total > 0.0:  # every unpicked row duplicates a picked one
                rest = np.flatnonzero(~picked)
                extra = rng.choice(rest, size=target - len(picks), replace=False)
                picks.extend(int(r) for r in extra)
                break
            last = int(np.flatnonzero(d2_ref > 0)[-1])
            rejections = 0
            while len(picks) < target and len(pending) < refresh_every and rejections < limit:
                u = rng.random(2)
                x = min(int(np.searchsorted(cumulative, u[0] * total, side="right")), last)
                now = 0.0 if picked[x] else d2_ref[x]
                if now > 0.0 and pending:
                    now = min(now, emb.to_centres(x, recent.centres()))
                if u[1] * d2_ref[x] < now:
                    picks.append(x)
                    picked[x] = True
                    pending.append(x)
                    recent.add(x)
                else:
                    rejections += 1
        return np.asarray(picks, dtype=np.int64)


@register_strategy("badge", needs=("probs", "embeddings"))
def badge(
    request: SelectionRequest,
    *,
    first_pick: Literal["uniform", "largest_norm"] = "uniform",
) -> np.ndarray:
    """BADGE: k-means++ seeding over the gradient embeddings of the unlabelled pool.

    Reads ``request.probs`` and the pool rows of ``request.embeddings`` (the selecting model's
    penultimate embeddings); draws from ``request.rng`` only (see :func:`badge_select`);
    returns pool indices in pick order. Option ``first_pick``: ``uniform`` (default, the ASVP
    code) or ``largest_norm`` (Ash et al.'s released code; see the module docstring).
    """
    positions = badge_select(
        request.probs,
        request.embeddings.pool,
        int(request.budget),
        request.rng,
        first_pick=first_pick,
    )
    return pool_ids_at(request, positions)
