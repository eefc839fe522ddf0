"""What a pipeline is: the decisions that tell random, standard, SVPp, ASVP and full apart.

A :class:`Pipeline` is data plus a few small methods: its train methods, which model selects
(:class:`Selector`), whether it updates the proxy's features, which config sections determine
its results (its run key), and which fine-tunes count as sampling compute. The round loop
(:mod:`asvp.pipelines.loop`) asks these questions and never compares pipeline names; each
pipeline is one instance in its own module, registered by name (:mod:`asvp.pipelines.registry`).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from asvp.strategies import strategy_inputs
from asvp.training import TRAIN_METHODS

if TYPE_CHECKING:
    from asvp.config import CellConfig

LINEAR_PROBE_METHODS = ("lpft", "auto")
"""Train methods that probe the head before fine-tuning: their cells' run keys hold
``linear_probe``."""


class Selector(enum.Enum):
    """Which model's outputs (softmax, embeddings) a cell's strategy reads when it reads any."""

    NONE = "none"  # no model selects: uniform selection, or no selection at all
    FINE_TUNED = "fine-tuned"  # the backbone just fine-tuned for evaluation (standard AL)
    PROXY = "proxy"  # an MLP trained on the pool's features, fresh every round (SVPp, ASVP)


@dataclass(frozen=True)
class Pipeline:
    """One pipeline: a name, the train methods it accepts and what selects.

    ``in_grid``: a grid file lists it under ``pipelines`` (the random baseline and the
    full-data cell are added by the grid itself). ``updates_features``: an indicator may
    replace the proxy's features with those of the model fine-tuned in a round (ASVP).
    ``labels_whole_pool``: one round on the whole pool, no selection and no budgets (the
    full-data cell; its strategy ``all`` is no registered strategy).
    """

    name: str
    description: str
    selector: Selector
    train_methods: tuple[str, ...] = TRAIN_METHODS
    updates_features: bool = False
    in_grid: bool = True
    labels_whole_pool: bool = False

    @property
    def uses_pretrained_features(self) -> bool:
        """Whether the cell extracts the frozen backbone's pool features whatever its strategy
        reads (the proxy trains on them)."""
        return self.selector is Selector.PROXY

    @property
    def compares_selections(self) -> bool:
        """Whether the model fine-tuned at each budget also selects, for comparison with the
        proxy's picks (the paper's Figures 4-5; ``discrepancy_analysis``)."""
        return self.selector is Selector.PROXY

    def budgets(self, config: CellConfig, pool_size: int) -> tuple[int, ...]:
        """The labelled-set sizes at which the cell evaluates."""
        return (pool_size,) if self.labels_whole_pool else config.budgets

    def strategy_inputs(self, config: CellConfig) -> frozenset[str]:
        """What the cell's strategy reads (:func:`asvp.strategies.strategy_inputs`)."""
        return frozenset() if self.labels_whole_pool else strategy_inputs(config.strategy)

    def initial_labeled_set(self, pool_size: int) -> np.ndarray | None:
        """The labelled set of round 0 when the pipeline fixes it (the whole pool); None: the
        strategy's or the seed's (:meth:`asvp.pipelines.loop.CellRunner`)."""
        return np.arange(pool_size, dtype=np.int64) if self.labels_whole_pool else None

    def train_method(self, config: CellConfig, feature_version: int, updating: bool) -> str:
        """The fine-tune of this round: LP-FT or FT (``config.train_method``)."""
        return config.train_method

    def finetune_is_sampling(self, model_selects: bool, updating: bool) -> bool:
        """Whether a round's fine-tune is sampling compute: when the fine-tuned model selects
        (standard AL with a strategy that reads model outputs), or when it produces new pool
        features (an ASVP update). Otherwise it is evaluation compute."""
        return (self.selector is Selector.FINE_TUNED and model_selects) or updating

    def run_key_sections(self, config: CellConfig) -> tuple[str, ...]:
        """The config sections, beyond those of every cell, that determine this cell's
        results: ``linear_probe`` for LP-FT (and ``auto``), ``proxy`` and
        ``discrepancy_analysis`` when a proxy selects, ``trigger`` when features are updated.
        Sections a cell does not use stay out of its run key."""
        sections = []
        if config.train_method in LINEAR_PROBE_METHODS:
            sections.append("linear_probe")
        if self.selector is Selector.PROXY:
            sections += ["proxy", "discrepancy_analysis"]
        if self.updates_features:
            sections.append("trigger")
        return tuple(sections)

    def scientific_sections(self, config: CellConfig) -> dict[str, Any]:
        """:meth:`run_key_sections` with their values (dataclasses as dicts)."""
        values = {}
        for section in self.run_key_sections(config):
            value = getattr(config, section)
            values[section] = (
                dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
            )
        return values
