"""The full-data cell: one fine-tune on the whole pool (the upper-bound line of the paper's
revised Figure 11). It never selects; its strategy (``all``) is no registered strategy."""

from asvp.pipelines.base import Pipeline, Selector
from asvp.pipelines.registry import register_pipeline

FULL = register_pipeline(
    Pipeline(
        "full",
        "the upper bound: one fine-tune on the whole pool",
        Selector.NONE,
        in_grid=False,
        labels_whole_pool=True,
    )
)
