"""ASVP: SVPp whose proxy features are replaced when an indicator calls for it.

Before each round's fine-tune an indicator (:class:`~asvp.trigger.FeatureUpdateRule`) reads the
labelled set's current features. If it calls for an update, the model fine-tuned in that round
re-extracts the pool features, and the proxy uses them from this round's selection on; that
fine-tune is then sampling compute. With ``train_method: auto`` the fine-tune is LP-FT while
the proxy uses pre-trained features and FT from the update on (the fine-tune that produces the
new features is already FT, since its purpose is to move the features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from asvp.pipelines.base import Pipeline, Selector
from asvp.pipelines.registry import register_pipeline
from asvp.training import TRAIN_METHODS

if TYPE_CHECKING:
    from asvp.config import CellConfig

AUTO = "auto"
"""LP-FT before the first feature update, FT from it on."""


@dataclass(frozen=True)
class AdaptiveProxy(Pipeline):
    """A proxy pipeline with feature updates and the ``auto`` train method."""

    def train_method(self, config: CellConfig, feature_version: int, updating: bool) -> str:
        if config.train_method != AUTO:
            return config.train_method
        return "ft" if updating or feature_version > 0 else "lpft"


ASVP = register_pipeline(
    AdaptiveProxy(
        "asvp",
        "selection via proxy, features updated when an indicator calls for it",
        Selector.PROXY,
        train_methods=(*TRAIN_METHODS, AUTO),
        updates_features=True,
    )
)
