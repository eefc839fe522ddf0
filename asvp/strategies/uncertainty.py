"""Uncertainty sampling: ``margin``, ``least_confidence`` and ``entropy``.

:func:`uncertainty_order` ranks the rows of a pool's softmax outputs from most to least
uncertain, as specified in ``docs/design.md`` ("Contracts other parts rely on"); the three
strategies select ``pool_ids[order[:budget]]``: pool indices, never positions.

Differences from the official code (``docs/official-code.md`` section 3), on purpose:

* ties go to the lowest position (a stable sort), where the official code used unstable sorts;
* entropy never produces NaN: a zero probability contributes ``0 * log 0 = 0``
  (``torch.special.entr``), where the official ``p * log(p)`` gave NaN on underflow and then
  ranked the most *confident* rows first;
* scores are computed streaming over row chunks, so memory is O(N) scores plus one
  ``chunk x C`` block, never an extra ``N x C`` copy on the host.
"""

from __future__ import annotations

import numpy as np
import torch

from .registry import SelectionRequest, pool_ids_at, register_strategy
from .rows import check_chunk_rows, chunk_size, rows_per_block

__all__ = ["CHUNK_ROWS", "UNCERTAINTY_KINDS", "uncertainty_order"]

UNCERTAINTY_KINDS = ("margin", "least_confidence", "entropy")

#: Rows scored at a time at most; bounds the temporary float64 block to ``CHUNK_ROWS x C``.
CHUNK_ROWS = 65536
#: Elements of one float64 block at most (32 MiB), so that many classes mean fewer rows.
CHUNK_ELEMENTS = 1 << 22


def _chunk_scores(block: torch.Tensor, kind: str) -> torch.Tensor:
    """Float64 scores of a ``rows x C`` block; *smaller* means *more* uncertain.

    Margin and least confidence pick values in the block's own dtype and only then widen
    them (exact: every float32 is a float64), so the block itself is never copied to
    float64; the top-1 minus top-2 difference is taken in float64, where it is exact.
    Entropy sums C terms, so it widens the block first.
    """
    if kind == "margin":
        top2 = torch.topk(block, 2, dim=1).values.double()
        return top2[:, 0] - top2[:, 1]
    if kind == "least_confidence":
        return block.max(dim=1).values.double()
    # entropy H = sum_c entr(p_c) with entr(0) = 0; negated so that the largest H comes first.
    return -torch.special.entr(block.double()).sum(dim=1)


def uncertainty_order(
    probs: torch.Tensor | np.ndarray, kind: str, *, chunk_rows: int | None = None
) -> np.ndarray:
    """Positions of the rows of ``probs`` from most to least uncertain.

    Args:
        probs: ``N x C`` softmax outputs, a torch tensor (CPU or CUDA) or a numpy array.
        kind: ``"margin"`` (smallest top-1 minus top-2 probability first),
            ``"least_confidence"`` (smallest maximum probability first) or ``"entropy"``
            (largest entropy ``-sum_c p_c log p_c`` first, with ``0 log 0 = 0``: a zero
            probability contributes 0, never NaN, which fixes the official code's bug of NaN
            entropies sorted as the most confident rows).
        chunk_rows: rows scored at a time (default: :data:`CHUNK_ROWS`, fewer when
            ``CHUNK_ROWS x C`` exceeds :data:`CHUNK_ELEMENTS`).

    Scores are computed in float64 on the device holding ``probs``, one chunk of rows at a
    time; the order is a stable sort of the scores, so ties go to the lowest position.

    Returns:
        an int64 permutation of ``range(N)``.
    """
    if kind not in UNCERTAINTY_KINDS:
        raise ValueError(
            f"unknown uncertainty kind {kind!r}; allowed: {', '.join(UNCERTAINTY_KINDS)}"
        )
    chunk_rows = check_chunk_rows(chunk_rows)
    if not isinstance(probs, torch.Tensor):
        probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (N x C), got shape {tuple(probs.shape)}")
    n, c = probs.shape
    is_float = (
        probs.is_floating_point()
        if isinstance(probs, torch.Tensor)
        else np.issubdtype(probs.dtype, np.floating)
    )
    if not is_float:
        raise ValueError(f"probs must be a real floating-point array, got dtype {probs.dtype}")
    if kind == "margin" and c < 2 and n > 0:
        raise ValueError(f"margin needs at least 2 classes, probs has {c} column(s)")

    chunk = chunk_size(chunk_rows, rows_per_block(CHUNK_ELEMENTS, c, cap=CHUNK_ROWS))
    scores = np.empty(n, dtype=np.float64)
    with torch.no_grad():
        for start in range(0, n, chunk):
            rows = probs[start : start + chunk]
            if isinstance(rows, torch.Tensor):
                block = rows  # stays on the tensor's device
            else:
                block = torch.from_numpy(np.array(rows, dtype=np.float64))  # copies one chunk
            scores[start : start + block.shape[0]] = _chunk_scores(block, kind).cpu().numpy()
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(
            f"probs give a non-finite {kind} score at row {int(bad[0])} "
            f"({bad.size} row(s) in all); expected softmax outputs"
        )
    return np.argsort(scores, kind="stable").astype(np.int64, copy=False)


def _select_most_uncertain(request: SelectionRequest, kind: str) -> np.ndarray:
    order = uncertainty_order(request.probs, kind)
    return pool_ids_at(request, order[: int(request.budget)])


@register_strategy("margin", needs=("probs",))
def margin(request: SelectionRequest) -> np.ndarray:
    """The ``budget`` pool indices with the smallest top-1 minus top-2 probability."""
    return _select_most_uncertain(request, "margin")


@register_strategy("least_confidence", needs=("probs",))
def least_confidence(request: SelectionRequest) -> np.ndarray:
    """The ``budget`` pool indices with the smallest maximum probability."""
    return _select_most_uncertain(request, "least_confidence")


@register_strategy("entropy", needs=("probs",))
def entropy(request: SelectionRequest) -> np.ndarray:
    """The ``budget`` pool indices with the largest predictive entropy (``0 log 0 = 0``)."""
    return _select_most_uncertain(request, "entropy")
