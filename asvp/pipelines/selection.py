"""How a round selects: the selecting model's outputs, the strategy's request, the comparison.

What the selecting model provides depends on the strategy's declared inputs
(:func:`asvp.strategies.strategy_inputs`): softmax outputs, penultimate embeddings (of the pool
and of the labelled set), and the cell's features (the pre-trained features, or ASVP's updated
ones; a standard cell extracts the pre-trained features only for strategies that read them).
A strategy that reads no model output (``random``, ``coreset_self``, ``typiclust``, ...) trains
no proxy and, in standard AL, its per-round fine-tune is evaluation only.

Selection discrepancy (the paper's Figures 4-5): in cells where a proxy selects with a strategy
that reads a model output, the model fine-tuned at each evaluation budget also scores the pool
and selects with the same strategy and random stream; what it would have picked is recorded
next to the proxy's picks (:mod:`asvp.discrepancy`). That compute is ``analysis``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asvp.config import CellConfig
from asvp.data import Split
from asvp.discrepancy import SelectionDiscrepancy, selection_discrepancy
from asvp.pipelines.base import Pipeline, Selector
from asvp.pipelines.cell_features import CellFeatures
from asvp.pipelines.models import CellModels, FineTuned
from asvp.pipelines.records import derive_seed
from asvp.strategies import Representation, SelectionRequest, select
from asvp.timing import PhaseTimer
from asvp.training import ModelOutputs, proxy_outputs, train_proxy

MODEL_INPUTS = frozenset({"probs", "embeddings"})
"""Strategy inputs that only a selecting model provides."""


@dataclass(frozen=True)
class Scoring:
    """A selecting model's outputs on the unlabelled rows, and its embeddings of the labelled
    rows when the strategy reads embeddings."""

    pool: ModelOutputs
    labeled_embeddings: torch.Tensor | None


class Selection:
    """One cell's selection: ``inputs`` are what its strategy reads; ``pipeline`` says which
    model provides the model outputs among them."""

    def __init__(
        self,
        config: CellConfig,
        pipeline: Pipeline,
        split: Split,
        inputs: frozenset[str],
        models: CellModels,
        timer: PhaseTimer,
    ) -> None:
        if pipeline.selector is Selector.NONE and inputs & MODEL_INPUTS:
            raise ValueError(
                f"strategy {config.strategy!r} reads {sorted(inputs & MODEL_INPUTS)}, but in "
                f"pipeline {pipeline.name!r} no model selects"
            )
        self.config = config
        self.pipeline = pipeline
        self.split = split
        self.inputs = inputs
        self.models = models
        self.timer = timer
        self.model_selects = bool(inputs & MODEL_INPUTS)

    @property
    def compares_selections(self) -> bool:
        """Whether the fine-tuned model's picks are recorded next to the proxy's."""
        return (
            self.config.discrepancy_analysis
            and self.pipeline.compares_selections
            and self.model_selects
        )

    def scoring(
        self,
        round_index: int,
        labeled: np.ndarray,
        unlabeled: np.ndarray,
        tuned: FineTuned,
        features: CellFeatures | None,
    ) -> Scoring | None:
        """The selecting model's outputs, when the strategy reads any."""
        if not self.model_selects:
            return None
        if self.pipeline.selector is Selector.FINE_TUNED:
            with self.timer.phase("pool_score"):
                return self._finetuned_scoring(tuned, labeled, unlabeled)
        assert features is not None
        return self._proxy_scoring(round_index, labeled, unlabeled, features)

    def request(
        self,
        round_index: int,
        labeled: np.ndarray,
        unlabeled: np.ndarray,
        budget: int,
        scoring: Scoring | None,
        features: CellFeatures | None,
    ) -> SelectionRequest:
        """The selection request with exactly the inputs the strategy reads."""
        representation = None
        if "features" in self.inputs:
            assert features is not None
            pool = features.pool
            representation = Representation(pool.rows(unlabeled), pool.rows(labeled))
        reads = self.inputs if scoring is not None else frozenset()
        return SelectionRequest(
            pool_ids=unlabeled,
            labeled=labeled,
            budget=budget,
            rng=np.random.default_rng(derive_seed(self.config.seed, round_index, "select")),
            probs=scoring.pool.probs if "probs" in reads else None,
            embeddings=(
                Representation(scoring.pool.embeddings, scoring.labeled_embeddings)
                if "embeddings" in reads
                else None
            ),
            features=representation,
            num_classes=self.split.pool.num_classes,
        )

    def select(self, request: SelectionRequest) -> np.ndarray:
        """The strategy's picks (timed as ``select``)."""
        with self.timer.phase("select"):
            return select(self.config.strategy, request, self.config.strategy_options)

    def compare_with_finetuned(
        self,
        round_index: int,
        labeled: np.ndarray,
        unlabeled: np.ndarray,
        budget: int,
        tuned: FineTuned,
        features: CellFeatures | None,
        proxy_scoring: Scoring,
        proxy_selected: np.ndarray,
    ) -> tuple[np.ndarray, SelectionDiscrepancy]:
        """What the just fine-tuned model would have selected, compared with the proxy."""
        with self.timer.phase("analysis"):
            scoring = self._finetuned_scoring(tuned, labeled, unlabeled)
            request = self.request(round_index, labeled, unlabeled, budget, scoring, features)
            model_selected = select(self.config.strategy, request, self.config.strategy_options)
            predicted = proxy_scoring.pool.probs.argmax(dim=1).cpu().numpy()
            correct = unlabeled[predicted == self.split.pool.labels[unlabeled]]
        return model_selected, selection_discrepancy(proxy_selected, model_selected, correct)

    def _finetuned_scoring(
        self, tuned: FineTuned, labeled: np.ndarray, unlabeled: np.ndarray
    ) -> Scoring:
        keep = "embeddings" in self.inputs
        pool = self.models.outputs(tuned, self.split.pool, unlabeled, keep)
        labeled_embeddings = (
            self.models.outputs(tuned, self.split.pool, labeled, True).embeddings if keep else None
        )
        return Scoring(pool, labeled_embeddings)

    def _proxy_scoring(
        self,
        round_index: int,
        labeled: np.ndarray,
        unlabeled: np.ndarray,
        features: CellFeatures,
    ) -> Scoring:
        pool_features = features.pool
        device = self.models.device
        targets = torch.from_numpy(self.split.pool.labels[labeled]).to(device)
        with self.timer.phase("proxy_train"):
            proxy = train_proxy(
                pool_features.rows(labeled),
                targets,
                self.split.pool.num_classes,
                self.config.proxy,
                derive_seed(self.config.seed, round_index, "proxy"),
            )
        keep = "embeddings" in self.inputs
        batch = self.config.proxy.score_batch_size
        with self.timer.phase("pool_score"):
            pool = proxy_outputs(proxy, pool_features, unlabeled, batch, keep)
            labeled_embeddings = (
                proxy_outputs(proxy, pool_features, labeled, batch, True).embeddings
                if keep
                else None
            )
        return Scoring(pool, labeled_embeddings)
