"""Row helpers shared by the strategies: rows to tensors, squared norms, block sizes, pool ids.

Every strategy reads row vectors (``probs``, embeddings, features) given as torch tensors on any
device or as numpy arrays, works on them in blocks of rows so that memory stays bounded, and
returns pool ids (never positions). The helpers for those steps live here once:

* :func:`as_rows` and :func:`as_float_rows`: a 2-D torch tensor without copying a numpy array;
* :func:`squared_norms` and :func:`l2_normalized_rows`, chunk by chunk;
* :func:`check_chunk_rows`, :func:`chunk_size` and :func:`rows_per_block`: how many rows a block
  holds (given by the caller, or as many as keep a block's temporaries under a bound);
* :func:`whole_pool_or_nothing` and :func:`fill_at_random`: from positions to the selection
  the contract asks for (with :func:`asvp.strategies.registry.pool_ids_at` and
  :func:`~asvp.strategies.registry.nothing_to_choose`, which read a request).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CHUNK_ROWS",
    "Rows",
    "as_float_rows",
    "as_rows",
    "check_chunk_rows",
    "chunk_size",
    "fill_at_random",
    "l2_normalized_rows",
    "rows_per_block",
    "squared_norms",
    "whole_pool_or_nothing",
]

#: Row vectors as strategies receive them.
Rows = torch.Tensor | np.ndarray

#: Rows per block of :func:`squared_norms`, :func:`l2_normalized_rows` and k-means.
CHUNK_ROWS = 8192


def _tensor(values: Rows) -> torch.Tensor:
    """``values`` as a torch tensor; a numpy array is shared, not copied (a copy only for
    negative strides or a non-native byte order, which torch cannot wrap). Nothing is ever
    written to it, so read-only arrays are fine."""
    if isinstance(values, torch.Tensor):
        return values
    array = np.asarray(values)
    if any(stride < 0 for stride in array.strides) or not array.dtype.isnative:
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    with warnings.catch_warnings():  # read-only arrays: we never write to them
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def _two_d(tensor: torch.Tensor, name: str) -> torch.Tensor:
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows x columns), got shape {tuple(tensor.shape)}")
    return tensor


def as_rows(values: Rows, name: str) -> torch.Tensor:
    """``values`` as a 2-D floating torch tensor in its own dtype, without copying (numpy
    arrays become CPU tensors sharing their memory)."""
    if not isinstance(values, torch.Tensor):
        array = np.asarray(values)
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{name} must be a real floating-point array, got dtype {array.dtype}")
        values = array
    tensor = _two_d(_tensor(values), name)
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a real floating-point tensor, got dtype {tensor.dtype}")
    return tensor


def as_float_rows(rows: Rows, name: str = "features") -> torch.Tensor:
    """``rows`` as a 2-D float32 or float64 torch tensor on its own device.

    float64 stays float64, every other dtype becomes float32 (half precision is too slow and
    too coarse for the distance GEMMs on CPU). A float32/float64 numpy array is wrapped without
    a copy.
    """
    tensor = _two_d(_tensor(rows), name)
    if tensor.is_complex():
        raise ValueError(f"{name} must be real, got dtype {tensor.dtype}")
    dtype = torch.float64 if tensor.dtype == torch.float64 else torch.float32
    return tensor.to(dtype=dtype)


def check_chunk_rows(chunk_rows: int | None) -> int | None:
    """``chunk_rows`` validated: ``None`` (automatic) or a positive int."""
    if chunk_rows is not None and (isinstance(chunk_rows, bool) or int(chunk_rows) < 1):
        raise ValueError(f"chunk_rows must be a positive int or None, got {chunk_rows!r}")
    return None if chunk_rows is None else int(chunk_rows)


def chunk_size(chunk_rows: int | None, default: int) -> int:
    """Rows per block: ``chunk_rows`` when given (validated), else ``default``."""
    chunk = check_chunk_rows(chunk_rows)
    return default if chunk is None else chunk


def rows_per_block(entries: int, width: int, *, cap: int, floor: int = 1) -> int:
    """As many rows as keep a ``rows x width`` block within ``entries`` values, at least
    ``floor`` (and 1), at most ``cap``."""
    return max(1, min(cap, max(floor, entries // max(width, 1))))


def squared_norms(x: torch.Tensor, *, chunk_rows: int | None = None) -> torch.Tensor:
    """Squared L2 norms of the rows of ``x`` (dtype and device of ``x``), chunk by chunk."""
    chunk = chunk_size(chunk_rows, CHUNK_ROWS)
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk]
        out[start : start + block.shape[0]] = torch.linalg.vector_norm(block, dim=1).square_()
    return out


def l2_normalized_rows(blocks: Sequence[Rows], *, chunk_rows: int | None = None) -> torch.Tensor:
    """The row blocks stacked into one new tensor with every row scaled to unit L2 norm.

    All blocks must have the same number of columns; the result has the dtype rule of
    :func:`as_float_rows` (float64 only if the first block is float64) and lives on the first
    block's device. A zero row stays zero (``F.normalize``'s ``eps``). Memory: the output plus
    one chunk.
    """
    tensors = [as_float_rows(b) for b in blocks]
    if not tensors:
        raise ValueError("l2_normalized_rows needs at least one block")
    dims = {t.shape[1] for t in tensors}
    if len(dims) != 1:
        raise ValueError(f"all blocks must have the same number of columns, got {sorted(dims)}")
    first = tensors[0]
    chunk = chunk_size(chunk_rows, CHUNK_ROWS)
    out = torch.empty(
        sum(t.shape[0] for t in tensors), first.shape[1], dtype=first.dtype, device=first.device
    )
    row = 0
    for t in tensors:
        for start in range(0, t.shape[0], chunk):
            block = t[start : start + chunk].to(device=out.device, dtype=out.dtype)
            out[row : row + block.shape[0]] = F.normalize(block, dim=1)
            row += block.shape[0]
    return out


def whole_pool_or_nothing(pool_ids: np.ndarray, size: int) -> np.ndarray:
    """The selection when there is nothing to choose: none for a ``size`` of 0 (or an empty
    pool), every element of ``pool_ids`` in pool order when ``size`` covers it."""
    return pool_ids.copy() if size else np.empty(0, dtype=np.int64)


def fill_at_random(picks: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``picks`` (positions among ``n`` rows) completed to ``size`` with positions drawn
    uniformly without replacement from the unpicked ones (``rng.choice``); unchanged when
    already ``size`` long."""
    if picks.size >= size:
        return picks
    rest = np.setdiff1d(np.arange(n), picks)
    extra = rng.choice(rest, size=size - picks.size, replace=False)
    return np.concatenate([picks, np.asarray(extra, dtype=np.int64)])
