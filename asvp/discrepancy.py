"""Selection discrepancy between the proxy and the fine-tuned model (the paper's Figures 4-5).

At an evaluation budget of a svpp or asvp cell, the proxy selects the next batch. The model
just fine-tuned on the same labelled set, asked to select with the same strategy (and the same
random stream), would have chosen another batch. The paper studies the difference: which
samples only the proxy picks, which only the fine-tuned model picks, and whether the proxy
predicts them correctly (a proxy that picks samples it already classifies correctly wastes
labels). :func:`selection_discrepancy` counts those regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SelectionDiscrepancy", "selection_discrepancy"]


@dataclass(frozen=True)
class SelectionDiscrepancy:
    """Counts of the regions of two selections of one round, split by proxy correctness.

    ``both`` = picked by the proxy and the fine-tuned model, ``proxy_only`` = by the proxy
    alone, ``model_only`` = by the fine-tuned model alone; ``*_proxy_correct`` counts those of
    each region the proxy classifies correctly (the rest it gets wrong). ``overlap`` is
    ``both / size of the proxy's selection`` (NaN for an empty selection).
    """

    both: int
    proxy_only: int
    model_only: int
    both_proxy_correct: int
    proxy_only_proxy_correct: int
    model_only_proxy_correct: int
    overlap: float


def selection_discrepancy(
    proxy_selected: np.ndarray, model_selected: np.ndarray, proxy_correct: np.ndarray
) -> SelectionDiscrepancy:
    """Compare two selections (pool indices) of one round.

    Args:
        proxy_selected: the pool indices the proxy selected.
        model_selected: the pool indices the fine-tuned model would have selected.
        proxy_correct: the pool indices (among both selections at least) that the proxy
            classifies correctly (argmax of its softmax equals the true label).
    """
    proxy = np.unique(np.asarray(proxy_selected, dtype=np.int64))
    model = np.unique(np.asarray(model_selected, dtype=np.int64))
    correct = np.asarray(proxy_correct, dtype=np.int64)
    both = np.intersect1d(proxy, model)
    proxy_only = np.setdiff1d(proxy, model)
    model_only = np.setdiff1d(model, proxy)

    def right(ids: np.ndarray) -> int:
        return int(np.isin(ids, correct).sum())

    return SelectionDiscrepancy(
        both=int(both.size),
        proxy_only=int(proxy_only.size),
        model_only=int(model_only.size),
        both_proxy_correct=right(both),
        proxy_only_proxy_correct=right(proxy_only),
        model_only_proxy_correct=right(model_only),
        overlap=both.size / proxy.size if proxy.size else float("nan"),
    )
