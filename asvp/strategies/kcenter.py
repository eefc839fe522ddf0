"""Greedy k-center (Sener & Savarese, ICLR 2018): the strategies ``coreset`` and ``coreset_self``.

:func:`k_center_greedy` is the contract of ``docs/design.md`` ("Contracts other parts rely
on"): over the rows of a feature matrix, seeded by the labelled rows, repeatedly pick the row
farthest (in Euclidean distance) from its nearest centre, ties to the lowest index, memory
O(N + chunk).
:func:`k_center_positions` is the same greedy with the candidates and the seeds given as two
separate matrices, so that a strategy never concatenates a 200k x 2048 pool with the labelled
rows (which would double the memory); both share one implementation.

Differences from the official code (``docs/official-code.md`` section 3), on purpose:

* the official ``acquire_new_sample`` built the full ``|L| x |U|`` matrix of *squared* distances
  ``x^2 + y^2 - 2xy`` in CPU float32 without a clamp (so rounding could give negative
  "distances"), took a column minimum per pick and rebuilt the matrix with ``torch.cat``
  (O(N D) copying per pick, 51 GB at ``|L|`` = 10k on ImageNet). Here one running
  min-distance vector of length N is kept, seeded chunk by chunk (never an ``|L| x |U|`` or
  ``N x N`` matrix), squared distances are clamped at 0, and pairs whose squared distance is
  within the rounding error of the expansion (near-duplicates, a row against itself) are
  recomputed exactly in float64 from the differences, so that duplicates of a centre have
  distance exactly 0;
* ties go to the lowest index. BLAS kernels may round two bitwise identical rows differently
  depending on their position in a block, so a pick whose exact duplicate with a lower index is
  still unlabelled and unpicked is replaced by that duplicate as soon as the duplicate is seen
  at distance exactly 0 (before it could be picked itself): the selection is the one exact
  arithmetic gives;
* ``coreset`` reads the selecting model's penultimate embeddings whatever the head (the official
  code crashed with a Linear head in mode 0) and never writes them to disk (the official code
  saved ``alfeas{r}.npy``, ~10 GB per round on ImageNet);
* distances are computed on the device holding the features (the official code forced CPU
  torch), rows are never converted to Python lists, and the caller's arrays are never modified
  (the official code deleted the picks from the caller's ``uidx`` in place);
* the official ``coreset_self`` started its first round with 1 random seed + ``budget - 1``
  greedy picks; our cells always start from a random labelled set, so that case does not arise.
  With no labelled row at all every distance is infinite and the first pick is the first
  candidate (the tie rule), deterministically.

The greedy is exact but lazy. Every row's min-distance only decreases, so the vector is
refreshed for all rows (one GEMM against the centres picked since the last refresh) only when
needed: after a refresh, the ``shortlist`` rows with the largest values are gathered and kept
current after each pick (one ``shortlist x D`` product); while the best of them is strictly
above the largest value outside the shortlist (an upper bound of every other row's current
value), it is exactly the greedy pick. A 200k x 2048 pool thus costs a few full passes instead
of one per pick.
"""

from __future__ import annotations

import numpy as np
import torch

from .registry import SelectionRequest, pool_ids_at, register_strategy
from .rows import Rows, as_rows, check_chunk_rows, rows_per_block

__all__ = ["SHORTLIST", "k_center_greedy", "k_center_positions"]

#: Rows kept current after every pick between two refreshes (the lazy greedy's shortlist).
SHORTLIST = 4096

#: Elements of the temporaries of one block of a pass (64 MB in float32): by default a block
#: has as many rows as fit (at least 1024), since every block costs a few passes of
#: multithreaded element-wise operations whose start-up dominates small blocks.
_BLOCK_ELEMENTS = 1 << 24

#: Centres per block of a pass.
_BLOCK_CENTRES = 1024

#: Pairs recomputed exactly in float64 at a time.
_EXACT_PAIRS = 2048


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64, else float32 (half precision is upcast per chunk)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def block_rows(chunk_rows: int | None, n: int, width: int) -> int:
    """Rows per block of a pass: ``chunk_rows`` when given, else as many rows as keep a
    ``rows x width`` temporary within ``_BLOCK_ELEMENTS`` (at least 1024, at most ``n``)."""
    if chunk_rows is not None:
        return chunk_rows
    return rows_per_block(_BLOCK_ELEMENTS, width, cap=n, floor=1024)


def _squared_norms(
    x: torch.Tensor, dtype: torch.dtype, chunk_rows: int | None, name: str
) -> torch.Tensor:
    """Squared norms of the rows of ``x`` in the compute ``dtype``, refusing non-finite rows.

    A plain sum of squares of the rows converted to ``dtype``, which the error bounds of
    :class:`_MinDistances` assume (not :func:`.rows.squared_norms`, whose ``vector_norm``
    rounds differently and would change near-tie picks).
    """
    out = torch.empty(x.shape[0], dtype=dtype, device=x.device)
    chunk = block_rows(chunk_rows, x.shape[0], x.shape[1])
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk].to(dtype)
        out[start : start + block.shape[0]] = (block * block).sum(dim=1)
    bad = torch.nonzero(~torch.isfinite(out)).flatten()
    if bad.numel():
        raise ValueError(
            f"{name} has a non-finite row (or one too large to square) at row {int(bad[0])} "
            f"({bad.numel()} row(s) in all)"
        )
    return out


class _MinDistances:
    """Each row's smallest squared Euclidean distance ``||x||^2 + ||c||^2 - 2 x.c`` to a block of
    centres, computed as ``||x||^2 + min_c (||c||^2 - 2 x.c)`` from one fused GEMM.

    Pairs whose value is within the expansion's rounding error bound
    (``tol * (||x||^2 + ||c||^2)``, ``tol = 2 D eps``) are recomputed exactly in float64 from the
    differences (only rows whose minimum is that small are examined), so identical rows are at
    distance exactly 0 and no value is negative.
    """

    def __init__(self, dim: int, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.tol = min(0.25, 2.0 * max(dim, 1) * torch.finfo(dtype).eps)

    def __call__(
        self,
        rows: torch.Tensor,
        row_sq: torch.Tensor,
        centres: torch.Tensor,
        centre_sq: torch.Tensor,
        skip: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(best, zero_rows, zero_cols)``: each row's min squared distance to ``centres`` and
        the (row, centre) pairs found exactly equal. ``skip`` are (row, centre) positions of a
        picked row against itself, left out (the caller has set that row's value to -1)."""
        rows = rows.to(self.dtype)
        part = torch.addmm(centre_sq[None, :], rows, centres.T, beta=1.0, alpha=-2.0)
        if skip is not None and skip[0].numel():
            part.index_put_(skip, part.new_tensor(float("inf")))
        best = part.amin(dim=1).add_(row_sq)
        limit = (row_sq + centre_sq.max()).mul_(self.tol)
        suspect = torch.nonzero(best <= limit).flatten()
        zero_r = zero_c = suspect[:0]
        if suspect.numel():
            sus_sq = row_sq.index_select(0, suspect)[:, None]
            d2 = part.index_select(0, suspect).add_(sus_sq)
            scale = (sus_sq + centre_sq[None, :]).mul_(self.tol)
            near_r, near_c = torch.nonzero(d2 <= scale, as_tuple=True)
            # ``limit`` uses the largest centre norm of the block, so a row can be suspect while
            # none of its pairs is within its own pair's bound: then there is nothing to redo.
            if near_r.numel():
                exact = torch.cat(
                    [
                        (
                            rows.index_select(0, suspect[near_r[s : s + _EXACT_PAIRS]]).double()
                            - centres.index_select(0, near_c[s : s + _EXACT_PAIRS]).double()
                        )
                        .square_()
                        .sum(dim=1)
                        for s in range(0, near_r.numel(), _EXACT_PAIRS)
                    ]
                )
                d2[near_r, near_c] = exact.to(self.dtype)
                best.index_copy_(0, suspect, d2.amin(dim=1))
                zero = exact == 0
                zero_r, zero_c = suspect[near_r[zero]], near_c[zero]
        return best.clamp_(min=0.0), zero_r, zero_c


class _LazyGreedy:
    """State of one greedy k-center run over ``candidates`` (see the module docstring)."""

    def __init__(
        self,
        candidates: torch.Tensor,
        seeds: torch.Tensor,
        exclude: np.ndarray,
        chunk_rows: int | None,
        shortlist: int,
    ) -> None:
        self.x = candidates
        self.n, dim = candidates.shape
        self.device = candidates.device
        self.dtype = compute_dtype(candidates, seeds)
        self.chunk_rows = chunk_rows
        self.shortlist = shortlist
        self.dist = _MinDistances(dim, self.dtype)
        self.sq = _squared_norms(candidates, self.dtype, chunk_rows, "candidates")
        # base[i]: min squared distance of row i to the centres as of the last refresh (an upper
        # bound of its current value); -1 for picked or excluded rows, +inf before any centre.
        self.base = torch.full((self.n,), float("inf"), dtype=self.dtype, device=self.device)
        self.taken = np.zeros(self.n, dtype=bool)
        self.picks: list[int] = []
        self.pick_slot: dict[int, int] = {}
        self.pending: list[int] = []  # picks since the last refresh
        self.marginal: list[int] = []  # pending picks a noisy lower duplicate could have tied
        sq_max = float(self.sq.max()) if self.n else 0.0
        if seeds.shape[0]:
            seed_sq = _squared_norms(seeds, self.dtype, chunk_rows, "seeds")
            sq_max = max(sq_max, float(seed_sq.max()))
            self._lower_base(seeds, seed_sq)
        self.noise = 2.0 * self.dist.tol * 2.0 * sq_max  # bound on |computed - exact| x 2
        if exclude.size:
            self.taken[exclude] = True
            self.base.index_fill_(0, torch.from_numpy(exclude).to(self.device), -1.0)
        self._build_shortlist()

    # ------------------------------------------------------------------ full passes

    def _lower_base(
        self, centres: torch.Tensor, centre_sq: torch.Tensor, picks: torch.Tensor | None = None
    ) -> list[tuple[int, int]]:
        """``base = min(base, distance to centres)`` for every row, in blocks. When the centres
        are the candidate rows ``picks``, return the (row, centre position) pairs found exactly
        equal (for the duplicate swaps), a pick against itself left out."""
        if self.chunk_rows is None:
            per_block = max(1, min(centres.shape[0], _BLOCK_CENTRES))
            convert = 0 if self.x.dtype == self.dtype else self.x.shape[1]
            chunk = block_rows(None, self.n, per_block + convert)
        else:
            chunk = self.chunk_rows
            per_block = max(1, _BLOCK_ELEMENTS // min(chunk, max(self.n, 1)))
        found: list[tuple[int, int]] = []
        for c0 in range(0, centres.shape[0], per_block):
            cen = centres[c0 : c0 + per_block].to(self.dtype)
            cen_sq = centre_sq[c0 : c0 + per_block]
            ids = None if picks is None else picks[c0 : c0 + per_block]
            for start in range(0, self.n, chunk):
                stop = min(start + chunk, self.n)
                skip = None
                if ids is not None:
                    inside = torch.nonzero((ids >= start) & (ids < stop)).flatten()
                    skip = (ids.index_select(0, inside) - start, inside)
                rows, rows_sq = self.x[start:stop], self.sq[start:stop]
                best, zr, zc = self.dist(rows, rows_sq, cen, cen_sq, skip)
                torch.minimum(self.base[start:stop], best, out=self.base[start:stop])
                if ids is not None and zr.numel():
                    found += zip((zr + start).tolist(), (zc + c0).tolist(), strict=True)
        return found

    def _settle(self, picks: list[int]) -> None:
        """Lower ``base`` with ``picks`` and apply the duplicate swaps found."""
        if not picks:
            return
        index = torch.tensor(picks, dtype=torch.int64, device=self.device)
        centres = self.x.index_select(0, index).to(self.dtype)
        found = self._lower_base(centres, self.sq.index_select(0, index), index)
        picks = list(picks)
        for row, col in sorted(found):  # lowest duplicate first
            self._swap(picks[col], row)

    def _refresh(self) -> None:
        """Bring ``base`` up to date with the pending picks; rebuild the shortlist."""
        self._settle(self.pending)
        self.pending, self.marginal = [], []
        self._build_shortlist()

    def _build_shortlist(self) -> None:
        """The rows whose ``base`` is strictly above ``theta``, the ``shortlist``-th largest."""
        free = int(self.n - self.taken.sum())
        k = min(self.shortlist, free)
        self.theta = float("inf")
        if k > 0:
            self.theta = float(torch.topk(self.base, k, sorted=False).values.min())
        self.rows = torch.nonzero(self.base > self.theta).flatten()  # ascending
        self.rows_x = self.x.index_select(0, self.rows).to(self.dtype)
        self.rows_sq = self.sq.index_select(0, self.rows)
        self.rows_val = self.base.index_select(0, self.rows)
        self.slot = {int(r): i for i, r in enumerate(self.rows.tolist())}

    # ------------------------------------------------------------------ picks

    def _swap(self, pick: int, duplicate: int) -> None:
        """Replace ``pick`` by its exact duplicate ``duplicate`` if that is lower and still free."""
        if duplicate >= pick or self.taken[duplicate] or pick not in self.pick_slot:
            return
        self.picks[self.pick_slot[pick]] = duplicate
        self.pick_slot[duplicate] = self.pick_slot.pop(pick)
        self.pending = [duplicate if p == pick else p for p in self.pending]
        self.marginal = [duplicate if p == pick else p for p in self.marginal]
        self.taken[duplicate], self.taken[pick] = True, False
        self.base[duplicate], self.base[pick] = -1.0, 0.0  # pick is at distance 0 of duplicate
        for row, value in ((duplicate, -1.0), (pick, 0.0)):
            if row in self.slot:
                self.rows_val[self.slot[row]] = value

    def _shortlist_best(self) -> tuple[int, bool] | None:
        if self.rows.numel() == 0:
            return None
        best = int(torch.argmax(self.rows_val))  # first maximum: the lowest index
        value = float(self.rows_val[best])
        if value <= self.theta:
            return None
        return int(self.rows[best]), value - self.theta <= self.noise

    def next_pick(self) -> tuple[int, bool] | None:
        """The next greedy pick and whether a lower exact duplicate outside the shortlist could
        have tied it (only up to rounding); ``None`` when every free row is at distance 0."""
        found = self._shortlist_best()
        if found is not None:
            return found
        if self.pending:
            self._refresh()
            found = self._shortlist_best()
            if found is not None:
                return found
        # base is current for every row: a plain argmax (first maximum = lowest index).
        best = int(torch.argmax(self.base))
        return (best, True) if float(self.base[best]) > 0 else None

    def take(self, row: int, marginal: bool) -> None:
        self.pick_slot[row] = len(self.picks)
        self.picks.append(row)
        self.pending.append(row)
        if marginal:
            self.marginal.append(row)
        self.taken[row] = True
        self.base[row] = -1.0
        skip = None
        if row in self.slot:
            self.rows_val[self.slot[row]] = -1.0
            slot = torch.tensor([self.slot[row]], device=self.device)
            skip = (slot, torch.zeros_like(slot))
        if self.rows.numel():
            centre = self.x[row : row + 1].to(self.dtype)
            row_sq = self.sq[row : row + 1]
            best, zr, _ = self.dist(self.rows_x, self.rows_sq, centre, row_sq, skip)
            torch.minimum(self.rows_val, best, out=self.rows_val)
            for duplicate in sorted(self.rows.index_select(0, zr).tolist()):
                if duplicate < row and not self.taken[duplicate]:
                    self._swap(row, duplicate)  # the lowest free exact duplicate
                    break

    def run(self, target: int) -> np.ndarray:
        while len(self.picks) < target:
            found = self.next_pick()
            if found is None:  # every free row duplicates a centre: lowest indices first
                rest = np.flatnonzero(~self.taken)[: target - len(self.picks)]
                self.picks.extend(int(r) for r in rest)
                break
            self.take(*found)
        # Any other pick's lower duplicates were in the shortlist, hence already swapped.
        self._settle(self.marginal)
        return np.asarray(self.picks, dtype=np.int64)


def k_center_positions(
    candidates: Rows,
    seeds: Rows | None,
    budget: int,
    *,
    exclude: np.ndarray | None = None,
    chunk_rows: int | None = None,
    shortlist: int | None = None,
) -> np.ndarray:
    """Greedy k-center over the rows of ``candidates``, seeded by the rows of ``seeds``.

    Args:
        candidates: ``N x D`` rows to pick from (torch tensor on any device, or numpy array).
        seeds: ``S x D`` rows that are centres from the start (the labelled set), or ``None``.
        budget: number of picks.
        exclude: candidate positions that are never picked (e.g. labelled rows that are also
            candidates); they are not seeds unless also given in ``seeds``.
        chunk_rows: rows per block of the full passes (default: automatic, about 64 MB of
            temporaries per block); memory is O(N + block), never ``N x S`` or ``N x N``.
        shortlist: rows kept current between refreshes (default :data:`SHORTLIST`); it changes
            the speed, never the picks.

    Each pick is the free candidate farthest from its nearest centre (seeds and earlier picks),
    Euclidean distance, ties to the lowest position. Distances are computed on the candidates'
    device, in float64 when an input is float64 and in float32 otherwise. With no seed, the
    first pick is position 0 (every distance is infinite), or the first position not excluded.

    Returns:
        ``min(budget, N - len(exclude))`` int64 positions into ``candidates``, in pick order.
    """
    x = as_rows(candidates, "candidates")
    n, dim = x.shape
    if seeds is None:
        s = x.new_empty((0, dim))
    else:
        s = as_rows(seeds, "seeds").to(x.device)
        if s.shape[1] != dim:
            raise ValueError(f"seeds have {s.shape[1]} columns but candidates have {dim}")
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0:
        raise ValueError(f"budget must be a non-negative int, got {budget!r}")
    excluded = np.unique(np.asarray([] if exclude is None else exclude, dtype=np.int64))
    if excluded.size and (excluded[0] < 0 or excluded[-1] >= n):
        raise ValueError(f"exclude holds positions outside 0..{n - 1}")
    size = SHORTLIST if shortlist is None else int(shortlist)
    if size < 1:
        raise ValueError(f"shortlist must be >= 1, got {shortlist!r}")
    target = min(int(budget), n - excluded.size)
    if target <= 0:
        return np.empty(0, dtype=np.int64)
    with torch.no_grad():
        return _LazyGreedy(x, s, excluded, check_chunk_rows(chunk_rows), size).run(target)


def k_center_greedy(
    features: Rows,
    labeled: np.ndarray | list[int],
    budget: int,
    *,
    chunk_rows: int | None = None,
    shortlist: int | None = None,
) -> np.ndarray:
    """Greedy k-center (Sener & Savarese, ICLR 2018) over the rows of ``features``.

    Args:
        features: ``N x D`` rows (torch tensor on CPU or CUDA, or numpy array).
        labeled: row indices already labelled: every one of them is a centre from the start
            (the min-distance vector starts as each row's distance to its nearest labelled row,
            computed in chunks) and none is ever picked.
        budget: number of picks.
        chunk_rows, shortlist: speed and memory settings of :func:`k_center_positions`.

    Euclidean distance, ties to the lowest index, memory O(N + chunk). With an empty
    ``labeled`` every distance starts infinite, so the first pick is row 0 (the tie rule) and
    the greedy continues from it.

    Returns:
        ``min(budget, N - len(set(labeled)))`` int64 row indices in pick order, never a labelled
        row, never a row twice.
    """
    x = as_rows(features, "features")
    lab = np.unique(np.asarray(labeled, dtype=np.int64))
    if lab.size and (lab[0] < 0 or lab[-1] >= x.shape[0]):
        raise ValueError(f"labeled holds row indices outside 0..{x.shape[0] - 1}")
    seeds = x.index_select(0, torch.from_numpy(lab).to(x.device))  # |L| x D: the only copy
    return k_center_positions(
        x, seeds, budget, exclude=lab, chunk_rows=chunk_rows, shortlist=shortlist
    )


def _select(request: SelectionRequest, field: str) -> np.ndarray:
    rep = getattr(request, field)
    return pool_ids_at(request, k_center_positions(rep.pool, rep.labeled, int(request.budget)))


@register_strategy("coreset", needs=("embeddings",))
def coreset(request: SelectionRequest) -> np.ndarray:
    """Greedy k-center on the selecting model's penultimate embeddings.

    The unlabelled pool rows are the candidates and the labelled rows the seeds
    (``request.embeddings``); returns pool indices in pick order. Deterministic: ``request.rng``
    is not used.
    """
    return _select(request, "embeddings")


@register_strategy("coreset_self", needs=("features",))
def coreset_self(request: SelectionRequest) -> np.ndarray:
    """Greedy k-center on the cell's feature representation (``request.features``: the
    pre-trained features, or ASVP's updated ones); otherwise as ``coreset``."""
    return _select(request, "features")
