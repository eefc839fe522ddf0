"""The ``random`` strategy: the baseline every sample-saving ratio is measured against.

It reads no model input (no ``needs``), so pipelines do not score the pool for it.
"""

from __future__ import annotations

import numpy as np

from .registry import SelectionRequest, register_strategy

__all__ = ["random"]


@register_strategy("random")
def random(request: SelectionRequest) -> np.ndarray:
    """``min(budget, len(pool_ids))`` pool indices drawn uniformly without replacement.

    Uses only ``request.rng`` (``rng.choice(pool_ids, size, replace=False)``), so the same
    generator state always gives the same selection; the output is in pick order.
    """
    pool_ids = np.asarray(request.pool_ids, dtype=np.int64)
    size = min(int(request.budget), pool_ids.size)
    return np.asarray(request.rng.choice(pool_ids, size=size, replace=False), dtype=np.int64)
