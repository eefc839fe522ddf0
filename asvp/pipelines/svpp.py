"""SVPp: a fresh proxy MLP trained on the frozen pre-trained pool features (extracted once)
selects; the per-round fine-tune is evaluation compute only."""

from asvp.pipelines.base import Pipeline, Selector
from asvp.pipelines.registry import register_pipeline

SVPP = register_pipeline(
    Pipeline(
        "svpp",
        "selection via proxy on pre-trained features",
        Selector.PROXY,
    )
)
