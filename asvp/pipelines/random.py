"""The random baseline: no model selects; uniform selection at every budget.

It is the reference of every sample-saving ratio, so every grid has it (with strategy
``random``); a grid file does not list it among its pipelines.
"""

from asvp.pipelines.base import Pipeline, Selector
from asvp.pipelines.registry import register_pipeline

RANDOM = register_pipeline(
    Pipeline(
        "random",
        "the random baseline: uniform selection, no selecting model",
        Selector.NONE,
        in_grid=False,
    )
)
