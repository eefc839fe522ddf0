"""Standard AL: the model just fine-tuned for evaluation scores the pool and selects (cold
start every round, as the official code). Its fine-tune is sampling compute when the strategy
reads a model output, evaluation compute otherwise."""

from asvp.pipelines.base import Pipeline, Selector
from asvp.pipelines.registry import register_pipeline

STANDARD = register_pipeline(
    Pipeline(
        "standard",
        "standard AL: the fine-tuned model selects",
        Selector.FINE_TUNED,
    )
)
