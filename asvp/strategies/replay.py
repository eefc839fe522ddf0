"""``replay``: label in the order of a saved index list instead of selecting.

The official code writes each run's cumulative labelled order to ``alidx.npy`` (pool indices,
the random initial set first; ``docs/official-code.md`` section 7). Replaying such a
file in a cell evaluates the authors' selections with this project's fine-tuning, budgets and
metrics, so results of their code can be compared with ours cell by cell. The file's first
``budgets[0]`` entries are the cell's initial set (:mod:`asvp.pipelines`); each round takes the
next entries. The labelled set must always be the list's prefix, which holds by construction;
anything else (a list shorter than the budgets, an index outside the pool, an index twice) is
an error naming the file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .registry import SelectionRequest, register_strategy

__all__ = ["REPLAY", "replay", "replayed_order"]

REPLAY = "replay"


def replayed_order(order: str | Path, pool_size: int | None = None) -> np.ndarray:
    """The index list in ``order`` (a ``.npy`` file of pool indices), checked.

    Raises ValueError naming the file when it is not a 1-D integer array of distinct indices
    >= 0 (and < ``pool_size`` when given), FileNotFoundError when it is absent.
    """
    path = Path(order).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"replay order file {path} does not exist")
    status = path.stat()
    indices = _read(str(path), status.st_mtime_ns, status.st_size)
    if pool_size is not None and indices.size and indices.max() >= pool_size:
        raise ValueError(
            f"{order}: index {int(indices.max())} is outside the pool (size {pool_size}); "
            "expected pool indices of this dataset in its loader's order"
        )
    return indices


@lru_cache(maxsize=8)
def _read(path: str, modified_ns: int, size: int) -> np.ndarray:
    """The file's checked indices, cached per version of the file (path, time, size)."""
    indices = np.load(path, allow_pickle=False)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"{path}: expected a 1-D integer array of pool indices, got dtype {indices.dtype} "
            f"and shape {indices.shape}"
        )
    indices = indices.astype(np.int64)
    if indices.size and indices.min() < 0:
        raise ValueError(f"{path}: negative index {int(indices.min())}; expected pool indices")
    values, counts = np.unique(indices, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{path}: index {int(values[counts > 1][0])} appears more than once")
    indices.flags.writeable = False
    return indices


@register_strategy(REPLAY)
def replay(request: SelectionRequest, *, order: Path) -> np.ndarray:
    """The next ``budget`` indices of the list in ``order`` after the labelled prefix.

    ``order`` is declared as a file path (a non-empty string); the file itself is read and
    checked here and by the preflight (:func:`replayed_order`), never by option checking.
    Raises ValueError if the labelled set is not the list's prefix or the list runs out.
    """
    indices = replayed_order(order)
    done = len(request.labeled)
    if not np.array_equal(np.sort(indices[:done]), np.sort(request.labeled)):
        raise ValueError(
            f"{order}: the labelled set is not the first {done} entries of the replayed list"
        )
    chosen = indices[done : done + int(request.budget)]
    if len(chosen) < min(int(request.budget), len(request.pool_ids)):
        raise ValueError(
            f"{order}: {len(indices)} indices, but the budgets need {done + int(request.budget)}"
        )
    return chosen.copy()
