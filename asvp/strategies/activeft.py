"""ActiveFT (Xie et al., CVPR 2023, "Active Finetuning"): ``activeft_self`` and ``activeft_al``.

ActiveFT optimises a set of continuous "sample" centroids on the unit sphere so that they match
the distribution of the (L2-normalised) pool features while staying apart from each other,
then labels the real rows nearest to the centroids. The ASVP code (``samplings/
ActiveFT_large.py``, adapted from yichen928/ActiveFT; ``docs/official-code.md`` section 3)
runs it in two variants, kept here under their own names:

* ``activeft_self`` = the official ``ActiveFT(self)``: the cell's features (``request.features``,
  the frozen pre-trained ones, or ASVP's re-extracted ones after an update);
* ``activeft_al`` = the official ``ActiveFT(al)``: the selecting model's penultimate
  embeddings (``request.embeddings``). The official code used the pre-trained features in the
  first round; which representation a round passes is the pipeline's business.

Algorithm, as the official code runs it (``activeft_centroids``):

1. Rows: the pool and the labelled set, L2-normalised (``f_i``). Centroids: ``K = |L| + budget``;
   the first ``|L|`` are the labelled rows and stay fixed (the official ``init='hybrid'``), the
   other ``budget`` start at distinct uniformly drawn unlabelled rows and are learnt; every
   forward pass uses the re-normalised centroids ``c_k``.
2. Each of ``iterations`` steps draws ``batch_size`` distinct rows (all rows when there are not
   more), computes ``s_ik = f_i . c_k / temperature``, the nearest centroid ``k_i = argmax_k
   s_ik`` with ``s_i = s_ik_i``, the repulsion ``R_k = sum_j exp(c_j . c_k / temperature)`` over
   all ``K`` centroids (self term included, the first factor detached) and the loss
   ``-mean_i log(exp(s_i) / (exp(s_i) + balance R_k_i))``, and takes one Adam step (lr ``lr``).
   This per-sample contrastive form is the released code's (it produced the published numbers
   and ASVP ran it); the paper writes the objective as two separate expectations, a
   distribution-matching term minus a diversity term, ``-E_i[s_i] + E_j[log sum_{k != j}
   exp(c_j . c_k / temperature)]``. The gradient of the code's loss is written out
   (``_loss_gradient``, in log space: ``logsumexp`` and a sigmoid, no overflow of ``exp(1/t)``
   sums) and checked against plain autograd of the official expression in the tests.
3. Each learnt centroid, in order, takes its most cosine-similar unlabelled row not taken yet
   (``assign_nearest_unique``).

Defaults are the official code's: temperature 0.07, Adam lr 1e-3, 100 iterations (the paper
says 300: set ``iterations``), batch 20,000 rows, balance 1.0.

Differences from the official code, on purpose:

* it returned the *whole* labelled list rebuilt from the centroid assignment and ``train.py``
  *replaced* the labelled set with it: a labelled row whose nearest free row was taken by an
  earlier centroid (duplicate features) could drop out, so the labelled set was not monotone.
  Here only the ``budget`` new picks are returned and they extend the labelled set;
* ``random.sample(range(N), batch_size)`` raised ``ValueError`` for pools smaller than the batch
  (20,000; e.g. Pets' 3,680 images): here the batch is the whole pool then;
* importing it ran ``torch.autograd.set_detect_anomaly(True)`` for the whole process (slowing
  every later backward pass): nothing global is touched here;
* the hybrid initialisation tested list membership for every row (``i not in alidx``,
  O(N |L|); it never finished at ImageNet scale): here one draw of ``budget`` distinct
  unlabelled rows;
* the assignment sorted all N similarities of every centroid on the host (a full per-row
  argsort, ~30 GB of int64 per 3,000-centroid slice on ImageNet) and tested list membership
  (O(K^2)): here a streaming top-``t`` per centroid with an exact fallback;
* randomness came from Python's unseeded ``random``: here only ``request.rng``.

Cost: the fixed centroids never move, so each row's best similarity to them is computed once
(``(n + |L|) x |L| x D`` multiply-adds); each iteration then costs ``batch_size x budget x D``
for the nearest-centroid search (no backward pass through it: the gradient only flows through
each row's nearest centroid, so it is a scatter of ``batch`` rows, never a ``batch x K``
gradient) and ``2 K x budget x D`` for the repulsion; the assignment costs ``budget x n x D``
once. Memory: the input rows (numpy float32 is used without a copy; rows are normalised on the
fly through their inverse norms), ``chunk_rows x (budget + 2 D)`` per block, ``n + |L|``
similarities and a few ``K x D`` centroid-sized buffers.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F

from ..options import Range, check_options, declared_options
from .kmeans import scatter_add_rows
from .registry import SelectionRequest, StrategyFn, pool_ids_at, register_strategy
from .rows import (
    as_float_rows,
    chunk_size,
    squared_norms,
    whole_pool_or_nothing,
)

__all__ = [
    "ASSIGN_TOP",
    "CHUNK_ROWS",
    "activeft_al",
    "activeft_centroids",
    "activeft_select",
    "activeft_self",
    "assign_nearest_unique",
]

#: Rows per block of the similarity GEMMs; bounds the temporaries to ``CHUNK_ROWS x K``.
CHUNK_ROWS = 4096

#: Candidates kept per centroid by the assignment's streaming top-t (exact fallback beyond).
ASSIGN_TOP = 64

_EPS = 1e-12  # F.normalize's eps: a zero row has similarity 0 to everything


# ActiveFT's settings, each declared once: the strategies' options and the keywords of
# :func:`activeft_centroids` and :func:`activeft_select`, which check direct calls by them.
Iterations = Annotated[int, Range(ge=0)]
Temperature = Annotated[float, Range(gt=0)]
LearningRate = Annotated[float, Range(gt=0)]
BatchSize = Annotated[int, Range(ge=1)]
Balance = Annotated[float, Range(ge=0)]


def _check_settings(**settings: object) -> None:
    """``settings`` checked against the declarations of :func:`activeft_centroids`'s keywords
    (``ValueError`` naming the setting, its value and the allowed range)."""
    check_options(declared_options(activeft_centroids), settings, "activeft")


def _inverse_norms(x: torch.Tensor, chunk: int) -> torch.Tensor:
    return squared_norms(x, chunk_rows=chunk).sqrt_().clamp_min_(_EPS).reciprocal_()


def activeft_centroids(
    pool: torch.Tensor | np.ndarray,
    labeled: torch.Tensor | np.ndarray,
    budget: int,
    rng: np.random.Generator,
    *,
    iterations: Iterations = 100,
    temperature: Temperature = 0.07,
    lr: LearningRate = 1e-3,
    batch_size: BatchSize = 20000,
    balance: Balance = 1.0,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """The ``budget`` learnt ActiveFT centroids (unit rows), steps 1-2 of the module docstring.

    Args:
        pool: ``n x D`` unlabelled rows (``budget <= n``).
        labeled: ``m x D`` labelled rows: the fixed centroids (``m`` may be 0).
        budget: number of learnt centroids.
        rng: draws the initial rows (``rng.choice(n, budget, replace=False)``), then each
            iteration's batch (``rng.choice(n + m, batch_size, replace=False)``, rows ``>= n``
            being labelled rows); nothing when the batch would be every row.
        chunk_rows: rows per similarity block (default :data:`CHUNK_ROWS`).

    Returns:
        a ``budget x D`` tensor of unit rows on the pool's device.
    """
    _check_settings(
        iterations=iterations,
        temperature=temperature,
        lr=lr,
        batch_size=batch_size,
        balance=balance,
    )
    pool_x = as_float_rows(pool, "pool")
    lab_x = as_float_rows(labeled, "labeled").to(device=pool_x.device, dtype=pool_x.dtype)
    n, d = pool_x.shape
    m = lab_x.shape[0]
    if lab_x.shape[1] != d and m:
        raise ValueError(f"labeled rows have {lab_x.shape[1]} columns, pool rows {d}")
    lab_x = lab_x.reshape(m, d)
    budget = int(budget)
    if not 0 <= budget <= n:
        raise ValueError(f"budget must be in [0, {n}] (the pool size), got {budget}")
    chunk = chunk_size(chunk_rows, CHUNK_ROWS)
    device, dtype = pool_x.device, pool_x.dtype
    total = n + m

    with torch.no_grad():
        inv_norm = torch.cat([_inverse_norms(pool_x, chunk), _inverse_norms(lab_x, chunk)])
        fixed = F.normalize(lab_x, dim=1, eps=_EPS)
        start = torch.from_numpy(rng.choice(n, size=budget, replace=False)).to(device)
        init = F.normalize(pool_x[start], dim=1, eps=_EPS)
    learnt = torch.nn.Parameter(init.clone())
    if budget == 0:
        return learnt.detach()
    optimizer = torch.optim.Adam([learnt], lr=float(lr))
    inv_t = 1.0 / float(temperature)
    log_balance = math.log(balance) if balance > 0 else -math.inf
    whole_batch = int(batch_size) >= total
    fixed_best = _best_fixed_similarity(pool_x, lab_x, fixed, chunk) if iterations else None

    for _ in range(int(iterations)):
        if whole_batch:
            batch = np.arange(total)
        else:
            batch = np.sort(rng.choice(total, size=int(batch_size), replace=False))
        grad_new = _loss_gradient(
            pool_x,
            lab_x,
            inv_norm,
            fixed,
            fixed_best,
            learnt.detach(),
            batch,
            inv_t,
            log_balance,
            chunk,
        )
        optimizer.zero_grad(set_to_none=True)
        F.normalize(learnt, dim=1, eps=_EPS).backward(grad_new)  # through the normalisation
        optimizer.step()

    with torch.no_grad():
        return F.normalize(learnt.detach(), dim=1, eps=_EPS).to(device=device, dtype=dtype)


def _best_fixed_similarity(
    pool_x: torch.Tensor, lab_x: torch.Tensor, fixed: torch.Tensor, chunk: int
) -> torch.Tensor:
    """For every row (pool, then labelled), ``max_j row . fixed_j`` (unnormalised rows).

    The fixed centroids never move, so this half of the nearest-centroid search is done once
    instead of at every iteration (``-inf`` when there is no labelled row).
    """
    n, m = pool_x.shape[0], lab_x.shape[0]
    best = torch.full((n + m,), -math.inf, dtype=pool_x.dtype, device=pool_x.device)
    if m == 0:
        return best
    with torch.no_grad():
        for offset, rows in ((0, pool_x), (n, lab_x)):
            for s in range(0, rows.shape[0], chunk):
                block = rows[s : s + chunk]
                best[offset + s : offset + s + block.shape[0]] = (block @ fixed.T).amax(dim=1)
    return best


def _loss_gradient(
    pool_x: torch.Tensor,
    lab_x: torch.Tensor,
    inv_norm: torch.Tensor,
    fixed: torch.Tensor,
    fixed_best: torch.Tensor,
    learnt: torch.Tensor,
    batch: np.ndarray,
    inv_t: float,
    log_balance: float,
    chunk: int,
) -> torch.Tensor:
    """Gradient of the official loss with respect to the normalised learnt centroids.

    With ``s_i`` the scaled similarity of row ``i`` to its nearest centroid ``k_i`` and
    ``a_i = log(balance) + log R_k_i``, the loss is ``-(1/B) sum_i [s_i - logaddexp(s_i, a_i)]``,
    so ``dL/ds_i = -w_i`` and ``dL/da_i = +w_i`` with ``w_i = sigmoid(a_i - s_i) / B``;
    ``ds_i/dc_k = f_i / temperature`` and ``d log R_k/dc_k = sum_j softmax_j(c_j . c_k / t) c_j
    / t`` (the first factor is detached, as in the official code). Rows whose nearest centroid
    is a fixed (labelled) one contribute nothing (both of their terms are constants; the fixed
    centroids come first, so they win ties), hence the repulsion of the fixed centroids is
    never computed and their similarities come from ``fixed_best``. Written out instead of
    autograd: no ``batch x K`` gradient and no saved activations, only ``chunk x budget``
    blocks.
    """
    budget = learnt.shape[0]
    n = pool_x.shape[0]
    with torch.no_grad():
        new = F.normalize(learnt, dim=1, eps=_EPS)
        cents = torch.cat([fixed, new])
        log_r = torch.empty(budget, dtype=new.dtype, device=new.device)
        pull = torch.empty_like(new)  # d log R_k / d c_k of every learnt centroid
        for s in range(0, budget, chunk):
            logits = (cents @ new[s : s + chunk].T) * inv_t  # K x chunk
            log_r[s : s + logits.shape[1]] = torch.logsumexp(logits, dim=0)
            weights = torch.softmax(logits, dim=0)
            pull[s : s + logits.shape[1]] = (weights.T @ cents) * inv_t
        grad = torch.zeros_like(new)
        grad_log_r = torch.zeros_like(log_r)
        for s in range(0, batch.size, chunk):
            at = batch[s : s + chunk]
            rows, inv = _gather(pool_x, lab_x, inv_norm, at, n)
            values, nearest = (rows @ new.T).max(dim=1)  # ties to the lowest centroid
            learnt_wins = values > fixed_best[torch.from_numpy(at).to(values.device)]
            scaled = values * inv * inv_t  # s_i for the rows whose nearest centroid is learnt
            w = torch.sigmoid(log_balance + log_r[nearest] - scaled) / batch.size
            w = w.masked_fill_(~learnt_wins, 0.0)
            scatter_add_rows(grad, nearest, rows * (-w * inv * inv_t).unsqueeze(1))
            scatter_add_rows(grad_log_r, nearest, w)
        return grad + grad_log_r.unsqueeze(1) * pull


def _gather(
    pool_x: torch.Tensor, lab_x: torch.Tensor, inv_norm: torch.Tensor, rows_at: np.ndarray, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``rows_at`` (sorted; ``>= n`` are labelled rows) and their inverse norms."""
    split = int(np.searchsorted(rows_at, n))
    device = pool_x.device
    parts = []
    if split:
        parts.append(pool_x[torch.from_numpy(rows_at[:split]).to(device)])
    if split < rows_at.size:
        parts.append(lab_x[torch.from_numpy(rows_at[split:] - n).to(device)])
    rows = parts[0] if len(parts) == 1 else torch.cat(parts)
    return rows, inv_norm[torch.from_numpy(rows_at).to(device)]


def assign_nearest_unique(
    centroids: torch.Tensor | np.ndarray,
    pool: torch.Tensor | np.ndarray,
    *,
    chunk_rows: int | None = None,
    top: int | None = None,
) -> np.ndarray:
    """Each centroid in order takes its most cosine-similar pool row not taken yet.

    Equals the plain loop ``for c in centroids: argmax over untaken rows of cos(c, row)``
    (ties to the lowest row), computed without any ``len(centroids) x n`` matrix: one streaming
    pass keeps each centroid's ``top`` best rows (sorted by similarity, then row); a centroid
    whose kept candidates are all taken, or whose first free candidate ties the ``top``-th
    value (a row beyond the list could tie it with a lower index), falls back to an exact pass
    over all rows.

    Args:
        centroids: ``B x D`` rows (their norm does not matter), ``B <= n``.
        pool: ``n x D`` rows.
        chunk_rows: pool rows per block (default :data:`CHUNK_ROWS`).
        top: candidates kept per centroid (default :data:`ASSIGN_TOP`).

    Returns:
        ``B`` distinct int64 row positions into ``pool``, in centroid order.
    """
    pool_x = as_float_rows(pool, "pool")
    cents = as_float_rows(centroids, "centroids").to(device=pool_x.device, dtype=pool_x.dtype)
    n = pool_x.shape[0]
    b = cents.shape[0]
    if b > n:
        raise ValueError(f"cannot assign {b} centroids to distinct rows of a pool of {n}")
    if b == 0:
        return np.empty(0, dtype=np.int64)
    chunk = chunk_size(chunk_rows, CHUNK_ROWS)
    t = min(ASSIGN_TOP if top is None else int(top), n)
    if t < 1:
        raise ValueError(f"top must be >= 1, got {top!r}")
    with torch.no_grad():
        cents = F.normalize(cents, dim=1, eps=_EPS)
        inv_norm = _inverse_norms(pool_x, chunk)
        best_v = torch.empty(b, 0, dtype=pool_x.dtype, device=pool_x.device)
        best_i = torch.empty(b, 0, dtype=torch.int64, device=pool_x.device)
        for s in range(0, n, chunk):
            sims = (cents @ pool_x[s : s + chunk].T) * inv_norm[s : s + chunk]
            v, i = sims.topk(min(t, sims.shape[1]), dim=1)
            v, i = torch.cat([best_v, v], dim=1), torch.cat([best_i, i + s], dim=1)
            keep = v.topk(min(t, v.shape[1]), dim=1).indices
            best_v, best_i = v.gather(1, keep), i.gather(1, keep)
        # Sort each centroid's candidates by similarity (descending), then row (ascending).
        by_row = best_i.argsort(dim=1)
        best_v, best_i = best_v.gather(1, by_row), best_i.gather(1, by_row)
        by_value = best_v.argsort(dim=1, descending=True, stable=True)
        values = best_v.gather(1, by_value).cpu().numpy()
        rows = best_i.gather(1, by_value).cpu().numpy()

    taken = np.zeros(n, dtype=bool)
    out = np.empty(b, dtype=np.int64)
    for j in range(b):
        free = np.flatnonzero(~taken[rows[j]])
        first = int(free[0]) if free.size else -1
        if first >= 0 and (t == n or values[j, first] > values[j, t - 1]):
            pick = int(rows[j, first])
        else:
            pick = _exact_nearest_free(cents[j], pool_x, inv_norm, taken, chunk)
        taken[pick] = True
        out[j] = pick
    return out


def _exact_nearest_free(
    centroid: torch.Tensor,
    pool_x: torch.Tensor,
    inv_norm: torch.Tensor,
    taken: np.ndarray,
    chunk: int,
) -> int:
    """The untaken row most similar to ``centroid`` (ties to the lowest row), one full pass."""
    best_value, best_row = -math.inf, -1
    taken_t = torch.from_numpy(taken).to(pool_x.device)
    with torch.no_grad():
        for s in range(0, pool_x.shape[0], chunk):
            sims = (pool_x[s : s + chunk] @ centroid) * inv_norm[s : s + chunk]
            sims = sims.masked_fill(taken_t[s : s + chunk], -math.inf)
            value, row = sims.max(dim=0)  # first maximum within the block
            if float(value) > best_value:  # strict: an equal later block loses
                best_value, best_row = float(value), s + int(row)
    return best_row


def activeft_select(
    pool: torch.Tensor | np.ndarray,
    labeled: torch.Tensor | np.ndarray,
    budget: int,
    rng: np.random.Generator,
    *,
    chunk_rows: int | None = None,
    **settings: float,
) -> np.ndarray:
    """Positions of ``min(budget, n)`` distinct pool rows picked by ActiveFT, in pick order.

    ``settings`` are the keywords of :func:`activeft_centroids` (``iterations``,
    ``temperature``, ``lr``, ``batch_size``, ``balance``), checked against their declarations
    even when there is nothing to choose. Zero budget or an empty pool selects nothing; a budget
    covering the pool returns every row in pool order (ActiveFT would pick them all anyway).
    Otherwise :func:`activeft_centroids` then :func:`assign_nearest_unique`.
    """
    _check_settings(**settings)
    pool_x = as_float_rows(pool, "pool")
    n = pool_x.shape[0]
    size = max(min(int(budget), n), 0)
    if size in (0, n):
        return whole_pool_or_nothing(np.arange(n, dtype=np.int64), size)
    centroids = activeft_centroids(pool_x, labeled, size, rng, chunk_rows=chunk_rows, **settings)
    return assign_nearest_unique(centroids, pool_x, chunk_rows=chunk_rows)


def _activeft_strategy(name: str, field: str, summary: str) -> StrategyFn:
    """The strategy ``name``: ActiveFT on the representation ``request.<field>``."""

    def strategy(
        request: SelectionRequest,
        *,
        iterations: Iterations = 100,
        temperature: Temperature = 0.07,
        lr: LearningRate = 1e-3,
        batch_size: BatchSize = 20000,
        balance: Balance = 1.0,
    ) -> np.ndarray:
        rep = getattr(request, field)
        positions = activeft_select(
            rep.pool,
            rep.labeled,
            int(request.budget),
            request.rng,
            iterations=iterations,
            temperature=temperature,
            lr=lr,
            batch_size=batch_size,
            balance=balance,
        )
        return pool_ids_at(request, positions)

    strategy.__name__ = strategy.__qualname__ = name
    strategy.__doc__ = f"{summary}; see the module docstring."
    return register_strategy(name, needs=(field,))(strategy)


activeft_self = _activeft_strategy(
    "activeft_self", "features", "ActiveFT on the cell's features (the official ``ActiveFT(self)``)"
)
activeft_al = _activeft_strategy(
    "activeft_al",
    "embeddings",
    "ActiveFT on the selecting model's embeddings (the official ``ActiveFT(al)``)",
)
