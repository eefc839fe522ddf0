"""The AL round loop of one grid cell, for every pipeline (:mod:`asvp.pipelines`).

Round ``r`` starts with ``budgets[r]`` labels. (1) Fine-tune a fresh copy of the pre-trained
backbone on them and measure test accuracy: the evaluation point. (2) Unless this is the last
budget, score the unlabelled pool with the pipeline's selecting model (none, the model just
fine-tuned, or a fresh proxy MLP on the cell's pool features) and select up to
``budgets[r + 1]``. A pipeline that updates features (ASVP) first reads an indicator, and when
it calls for an update the model fine-tuned in (1) re-extracts the pool features, which the
proxy uses from this round's selection on; the labelled set is kept.

The loop asks the cell's :class:`~asvp.pipelines.base.Pipeline` what to do and never compares
pipeline names. The strategy ``replay`` (:mod:`asvp.strategies.replay`) labels in the order of
a saved index list, such as the official code's ``alidx.npy``, so that an external run is
evaluated at this grid's budgets, cell by cell.

Round checkpoints (:mod:`asvp.checkpoint`): with a checkpoint, the runner saves its state after
every round (labelled order, the rounds' records, the indicator's state, ASVP's current
features) and, started again, continues after the last saved round; the result equals an
uninterrupted run's. Finished rounds go to ``on_round`` in order, at least once
(:class:`~asvp.checkpoint.RoundLog`).

Every phase is timed (:mod:`asvp.pipelines.records` splits sampling from evaluation compute).
Feature extraction is charged with its measured seconds even when read from the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from asvp.checkpoint import CellState, RoundCheckpoint, RoundLog
from asvp.compute import compute_settings
from asvp.config import CellConfig
from asvp.data import Split, load_dataset
from asvp.features import FeatureStore, pretrained_key, update_key
from asvp.finetune_scale import FineTuneStats
from asvp.pipelines.base import Pipeline
from asvp.pipelines.cell_features import CellFeatures
from asvp.pipelines.models import CellModels, FineTuned
from asvp.pipelines.records import (
    CellResult,
    RoundRecord,
    derive_seed,
    initial_labeled_set,
    round_record,
)
from asvp.pipelines.registry import get_pipeline
from asvp.pipelines.selection import Selection
from asvp.progress import announce
from asvp.strategies.replay import REPLAY, replayed_order
from asvp.timing import PhaseTimer
from asvp.trigger import FeatureUpdateRule, UpdateDecision


class CellRunner:
    """Runs one cell's rounds; ``on_round`` receives each finished round's record."""

    def __init__(
        self,
        config: CellConfig,
        feature_store: FeatureStore,
        device: torch.device,
        on_round: Callable[[RoundRecord], None] | None = None,
        checkpoint: RoundCheckpoint | None = None,
    ) -> None:
        self.pipeline: Pipeline = get_pipeline(config.pipeline)
        if config.train_method not in self.pipeline.train_methods:
            raise ValueError(
                f"train_method {config.train_method!r} is not available for pipeline "
                f"{config.pipeline!r}; expected one of {self.pipeline.train_methods}"
            )
        self.config = config
        self.store = feature_store
        self.device = torch.device(device)
        self.timer = PhaseTimer(self.device)
        announce(f"loading {config.dataset} and {config.backbone} on {self.device}")
        self.split: Split = load_dataset(
            config.dataset,
            root=config.data_root,
            download=config.download,
            **config.dataset_options,
        )
        self.budgets = self.pipeline.budgets(config, len(self.split.pool))
        self.inputs = self.pipeline.strategy_inputs(config)
        self.models = CellModels(config, self.split, self.device, self.timer)
        self.selection = Selection(
            config, self.pipeline, self.split, self.inputs, self.models, self.timer
        )
        self.features: CellFeatures | None = None
        self.rule = (
            FeatureUpdateRule(config.trigger, derive_seed(config.seed, "indicator"))
            if self.pipeline.updates_features
            else None
        )
        self.log = RoundLog(checkpoint, on_round or (lambda record: None), self._state)
        self._result = CellResult()  # the rounds so far, as the checkpoint saves them

    def run(self) -> CellResult:
        """Every round of the cell, continuing after the checkpoint's last saved round."""
        # Features: the frozen backbone's pool features, when the proxy or the strategy reads
        # them (through the store: extracted once per grid, charged to every cell)
        if self.pipeline.uses_pretrained_features or "features" in self.inputs:
            announce("pool features of the pre-trained backbone (feature store or extraction)")
            self._pretrained_features()
        # Resume: the rounds an earlier attempt saved (and hand over what it could not), or a
        # fresh start at the initial labelled set
        result = self._result = self._restore()
        if result.resumed_rounds:
            self.timer.take()  # the restored rounds already hold the extraction's seconds
            announce(f"resumed after round {result.resumed_rounds} (round checkpoint)")
        budgets = ", ".join(str(budget) for budget in self.budgets)
        announce(f"{len(self.budgets)} rounds at budgets {budgets}")
        labeled = np.asarray(result.labeled_order, dtype=np.int64)
        self.log.deliver(result.rounds)
        for round_index in range(result.resumed_rounds, len(self.budgets)):
            labels_used = self.budgets[round_index]
            is_last = round_index == len(self.budgets) - 1
            # Indicator (feature-updating pipelines): do this round's features replace the
            # proxy's?
            decision = self._read_indicator(labels_used, is_last, labeled) if self.rule else None
            updating = decision is not None and decision.update
            # Evaluation: fine-tune a fresh pre-trained backbone, measure test accuracy
            version = self.features.version if self.features is not None else 0
            method = self.pipeline.train_method(self.config, version, updating)
            tuned = self.models.fine_tune(round_index, labeled, method)
            test_acc = self.models.test_accuracy(tuned)
            # Feature update: the model just fine-tuned re-extracts the pool features
            if updating:
                self._update_features(tuned, labeled)
            # Selection (not at the last budget): the selecting model scores the unlabelled
            # pool and the strategy picks; a proxy's picks are compared with the fine-tuned
            # model's when the analysis is on
            selected = np.empty(0, dtype=np.int64)
            model_selected, discrepancy = None, None
            if not is_last:
                unlabeled = np.setdiff1d(np.arange(len(self.split.pool)), labeled)
                budget = self.budgets[round_index + 1] - labels_used
                features = self.features
                scoring = self.selection.scoring(round_index, labeled, unlabeled, tuned, features)
                request = self.selection.request(
                    round_index, labeled, unlabeled, budget, scoring, features
                )
                selected = self.selection.select(request)
                if self.selection.compares_selections:
                    model_selected, discrepancy = self.selection.compare_with_finetuned(
                        round_index, labeled, unlabeled, budget, tuned, features, scoring, selected
                    )
                labeled = np.concatenate([labeled, selected])
            # Record: the round's seconds split into sampling and evaluation compute; save the
            # checkpoint, hand the finished rounds over
            record = self._record(
                round_index, labels_used, test_acc, method, selected, decision, tuned.stats
            )
            if discrepancy is not None:
                record.model_selected = model_selected.tolist()
                record.discrepancy = discrepancy
            result.rounds.append(record)
            result.labeled_order.extend(selected.tolist())
            self.log.save()
            announce(record.summary(len(self.budgets)))
            self.log.deliver(result.rounds)
        # End: every round handed over (or raise), this cell's re-extractions removed
        self.log.deliver(result.rounds, final=True)
        if self.features is not None and not self.config.keep_updated_features:
            self.features.remove_updates()
        result.artifacts = dict(self.split.artifacts)
        result.weights_sha256 = self.models.fresh_backbone().weights_sha256
        return result

    # -- phases -------------------------------------------------------------------------

    def _pretrained_features(self) -> None:
        """Pool features of the frozen pre-trained backbone, through the feature store."""
        backbone = self.models.fresh_backbone()
        key = pretrained_key(
            backbone, self.models.transform.input, self.config, len(self.split.pool)
        )
        self.features, seconds = CellFeatures.pretrained(
            self.store, key, lambda: self.models.pool_features(backbone), self.device
        )
        self.timer.seconds["extract_features"] += seconds

    def _initial_labeled_set(self) -> np.ndarray:
        """The pipeline's (all of the pool for the full-data cell); the first ``budgets[0]``
        entries of the replayed order for ``replay`` (the external run's own initial set, as
        in the official code's ``alidx.npy``); else the seed's random initial set."""
        config, size, pool_size = self.config, self.budgets[0], len(self.split.pool)
        fixed = self.pipeline.initial_labeled_set(pool_size)
        if fixed is not None:
            return fixed
        if config.strategy == REPLAY:
            return replayed_order(config.strategy_options["order"], pool_size)[:size]
        return initial_labeled_set(pool_size, size, config.seed)

    def _read_indicator(
        self, labels_used: int, is_last: bool, labeled: np.ndarray
    ) -> UpdateDecision:
        """The feature-update rule's decision on the labelled set's current features."""
        assert self.rule is not None and self.features is not None
        with self.timer.phase("indicator"):
            features = (
                self.features.pool.rows(labeled).double().cpu().numpy()
                if self.rule.needs_value()
                else None
            )
            return self.rule.decide(labels_used, is_last, features, self.split.pool.labels[labeled])

    def _update_features(self, tuned: FineTuned, labeled: np.ndarray) -> None:
        """Feature alignment: pool features from the backbone just fine-tuned, an entry of
        this cell's own in the feature store."""
        assert self.features is not None
        key = update_key(self.config, self.features.version + 1, labeled)
        self.timer.seconds["update_extract"] += self.features.update(
            key, lambda: self.models.pool_features(tuned.backbone)
        )

    def _record(
        self,
        round_index: int,
        labels_used: int,
        test_acc: float,
        method: str,
        selected: np.ndarray,
        decision: UpdateDecision | None,
        finetune: FineTuneStats | None,
    ) -> RoundRecord:
        updating = decision is not None and decision.update
        return round_record(
            round_index=round_index,
            labels_used=labels_used,
            test_acc=test_acc,
            method=method,
            seconds=self.timer.take(),
            finetune_is_sampling=self.pipeline.finetune_is_sampling(
                self.selection.model_selects, updating
            ),
            selected=selected,
            feature_version=self.features.version if self.features is not None else 0,
            decision=decision,
            finetune=finetune,
        )

    # -- checkpoints ----------------------------------------------------------------------

    def _restore(self) -> CellResult:
        """The rounds saved by an earlier attempt, or a fresh start at the initial set."""
        state = self.log.restore(self._restore_features)
        if state is None:
            return CellResult(labeled_order=self._initial_labeled_set().tolist())
        if self.rule is not None:
            self.rule.load_state_dict(state.rule)
        rounds = [RoundRecord.from_dict(record) for record in state.rounds]
        return CellResult(rounds, state.labeled_order, resumed_rounds=len(rounds))

    def _restore_features(self, state: CellState) -> bool:
        if state.feature_version == 0:
            return True
        assert self.features is not None
        return self.features.restore(state.feature_version, state.update_keys)

    def _state(self) -> CellState:
        """The state the checkpoint saves after each round."""
        features = self.features
        return CellState(
            update_keys=features.update_keys if features is not None else [],
            rounds=[dataclasses.asdict(record) for record in self._result.rounds],
            labeled_order=self._result.labeled_order,
            rule=self.rule.state_dict() if self.rule is not None else None,
            feature_version=features.version if features is not None else 0,
        )


def run_cell(
    config: CellConfig,
    feature_store: FeatureStore,
    device: torch.device | str = "cpu",
    on_round: Callable[[RoundRecord], None] | None = None,
    checkpoint: RoundCheckpoint | None = None,
) -> CellResult:
    """Run every round of one cell, continuing from ``checkpoint`` when it holds finished
    rounds (see the module docstring), with the threads and determinism of ``config.compute``
    (:func:`asvp.compute.compute_settings`), whoever calls it."""
    with compute_settings(config.compute):
        return CellRunner(config, feature_store, torch.device(device), on_round, checkpoint).run()
