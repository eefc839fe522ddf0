"""The AL round loop of one grid cell: random baseline, standard AL, SVPp and ASVP.

Round ``r`` starts with ``budgets[r]`` labels. (1) Fine-tune a fresh copy of the pre-trained
backbone on them and measure test accuracy: the evaluation point. (2) Unless this is the last
budget, score the unlabelled pool and select up to ``budgets[r + 1]``:

- ``random``: no model; uniform selection (the reference of every sample-saving ratio).
- ``standard``: with the model just fine-tuned (cold start every round, official code).
- ``svpp``: with a fresh proxy MLP trained on frozen pre-trained features, extracted once.
- ``asvp``: as svpp; before (1) an indicator (:class:`~asvp.trigger.FeatureUpdateRule`) reads
  the labelled set's current features. If it calls for an update, the model fine-tuned in (1)
  re-extracts the pool features, and the proxy uses them from this round's selection on; the
  labelled set is kept. With ``train_method: auto`` the fine-tune of (1) is LP-FT while the
  proxy uses pre-trained features and FT from the update on (the fine-tune that produces the
  new features is already FT, since its purpose is to move the features).

What the selecting model provides depends on the strategy's declared inputs
(:func:`asvp.strategies.strategy_inputs`): softmax outputs, penultimate embeddings (of the pool
and of the labelled set), and the cell's features (the pre-trained features, or ASVP's updated
ones; a standard cell extracts the pre-trained features only for strategies that read them).
A strategy that reads no model output (``random``, ``coreset_self``, ``typiclust``, ...) trains
no proxy and, in standard AL, its per-round fine-tune is evaluation only.

Selection discrepancy (the paper's Figures 4-5): in svpp and asvp cells whose strategy reads a
model output, the model fine-tuned at each evaluation budget also scores the pool and selects
with the same strategy and random stream; what it would have picked is recorded next to the
proxy's picks (:mod:`asvp.discrepancy`). That compute is ``analysis``: neither sampling nor
evaluation.

Two more kinds of cell: ``full`` fine-tunes once on the whole pool (the upper bound line of the
paper's revised Figure 11), and the strategy ``replay`` (:mod:`asvp.strategies.replay`) labels
in the order of a saved index list, such as the official code's ``alidx.npy``, so that an
external run is evaluated at this grid's budgets, cell by cell.

The seed fixes the initial labelled set (shared by every cell of a dataset and seed) and, per
round, the fine-tune, the proxy and random selection, so a round can be replayed exactly.

Round checkpoints (:mod:`asvp.checkpoint`): with a checkpoint, the runner saves its state after
every round (labelled order, the rounds' records, the indicator's state, ASVP's current
features) and, started again, continues after the last saved round; the result equals an
uninterrupted run's. Finished rounds go to ``on_round`` in order, at least once: a round whose
``on_round`` raises (the tracking server is down) stays queued in the checkpoint and is handed
over again after the next round, and the run raises only if some round still cannot be handed
over at its end; a restarted cell hands over what its previous attempt could not.

Every phase is timed. Compute needed to make selections is *sampling* compute (charged in the
total cost); compute only done to measure accuracy is *evaluation* compute, reported apart.
Feature extraction is charged with its measured seconds even when read from the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from asvp.checkpoint import RoundCheckpoint, ignored
from asvp.config import CellConfig
from asvp.data import ImageSet, Split, load_dataset
from asvp.discrepancy import SelectionDiscrepancy, selection_discrepancy
from asvp.features import FeatureStore
from asvp.hashing import index_hash
from asvp.models.backbones import Backbone, load_backbone
from asvp.models.heads import Classifier
from asvp.pool import PoolFeatures
from asvp.progress import Progress
from asvp.strategies import Representation, SelectionRequest, select, strategy_inputs
from asvp.strategies.replay import REPLAY, replayed_order
from asvp.timing import PhaseTimer
from asvp.training import (
    TRAIN_METHODS,
    ModelOutputs,
    accuracy,
    classifier_outputs,
    extract_features,
    fine_tune,
    proxy_outputs,
    train_proxy,
)
from asvp.trigger import FeatureUpdateRule, UpdateDecision

PIPELINES = ("random", "standard", "svpp", "asvp", "full")
PIPELINE_TRAIN_METHODS = {
    "random": TRAIN_METHODS,
    "full": TRAIN_METHODS,  # the upper bound: one fine-tune on the whole pool
    "standard": TRAIN_METHODS,
    "svpp": TRAIN_METHODS,
    "asvp": (*TRAIN_METHODS, "auto"),  # auto: LP-FT before the first feature update, FT after
}
ALWAYS_SAMPLING = ("extract_features", "update_extract", "indicator", "proxy_train", "pool_score")
ANALYSIS_PHASES = ("analysis",)
MODEL_INPUTS = frozenset({"probs", "embeddings"})


@dataclass
class RoundRecord:
    """What one round did and measured. ``labels`` is the evaluation budget (MLflow step)."""

    round: int
    labels: int
    test_acc: float
    train_method: str
    seconds: dict[str, float]
    sampling_seconds: float
    evaluation_seconds: float
    selected: list[int]
    feature_version: int
    indicator: UpdateDecision | None = None
    model_selected: list[int] | None = None  # what the fine-tuned model would have selected
    discrepancy: SelectionDiscrepancy | None = None
    finished_at_ms: int = 0  # wall-clock end of the round (Unix ms): its metrics' timestamp

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundRecord:
        """The record saved as ``dataclasses.asdict`` (round checkpoints)."""
        fields = dict(data)
        if fields.get("indicator") is not None:
            fields["indicator"] = UpdateDecision(**fields["indicator"])
        if fields.get("discrepancy") is not None:
            fields["discrepancy"] = SelectionDiscrepancy(**fields["discrepancy"])
        return cls(**fields)


@dataclass(frozen=True)
class _Scoring:
    """A selecting model's outputs on the unlabelled rows, and its embeddings of the labelled
    rows when the strategy reads embeddings."""

    pool: ModelOutputs
    labeled_embeddings: torch.Tensor | None


@dataclass
class CellResult:
    """Every round's record and the labelled set in the order it was labelled.
    ``resumed_rounds`` counts the rounds restored from a checkpoint (0: a fresh start);
    ``artifacts`` are the dataset's arrays to keep with the run (CIFAR-10-LT's kept indices);
    ``weights_sha256`` identifies the pre-trained weights the cell started from."""

    rounds: list[RoundRecord] = field(default_factory=list)
    labeled_order: list[int] = field(default_factory=list)
    resumed_rounds: int = 0
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)
    weights_sha256: str = ""


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed for one purpose of one round, stable across processes and platforms."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") >> 1


def initial_labeled_set(pool_size: int, size: int, seed: int) -> np.ndarray:
    """The random initial labelled set, shared by every cell of a dataset and seed."""
    rng = np.random.default_rng(derive_seed(seed, "initial"))
    return rng.choice(pool_size, size=size, replace=False).astype(np.int64)


class _Features:
    """The proxy's current pool features (pre-trained first, then each ASVP update's)."""

    def __init__(self, pool: PoolFeatures) -> None:
        self.pool = pool
        self.version = 0

    def replace(self, pool: PoolFeatures) -> None:
        self.pool = pool
        self.version += 1


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
        if config.pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {config.pipeline!r}; expected one of {PIPELINES}")
        if config.train_method not in PIPELINE_TRAIN_METHODS[config.pipeline]:
            raise ValueError(
                f"train_method {config.train_method!r} is not available for pipeline "
                f"{config.pipeline!r}; expected one of {PIPELINE_TRAIN_METHODS[config.pipeline]}"
            )
        self.config = config
        self.store = feature_store
        self.device = torch.device(device)
        self.on_round = on_round or (lambda record: None)
        self.checkpoint = checkpoint
        self._delivered = 0  # rounds handed to on_round
        self.timer = PhaseTimer(self.device)
        self.split: Split = load_dataset(
            config.dataset,
            root=config.data_root,
            download=config.download,
            **config.dataset_options,
        )
        # the full-data cell labels the whole pool at once (DESIGN.md, the upper bound line)
        self.budgets = (len(self.split.pool),) if config.pipeline == "full" else config.budgets
        # the full-data cell never selects: its strategy ("all") is no registered strategy
        self.inputs = frozenset() if config.pipeline == "full" else strategy_inputs(config.strategy)
        self.model_selects = bool(self.inputs & MODEL_INPUTS)
        self.features: _Features | None = None
        self._update_keys: list[dict[str, Any]] = []  # this cell's re-extraction entries
        self._backbone: Backbone | None = None  # the one fine-tuned this round (in the model)
        self.rule = (
            FeatureUpdateRule(config.trigger, derive_seed(config.seed, "indicator"))
            if config.pipeline == "asvp"
            else None
        )

    # -- phases -------------------------------------------------------------------------

    def _fresh_backbone(self) -> Backbone:
        return load_backbone(self.config.backbone, **self.config.backbone_options)

    def _initial_labeled_set(self) -> np.ndarray:
        """The seed's random initial set; all of the pool for the full-data cell; the first
        ``budgets[0]`` entries of the replayed order for ``replay`` (the external run's own
        initial set, as in the official code's ``alidx.npy``)."""
        config, size = self.config, self.budgets[0]
        if config.pipeline == "full":
            return np.arange(len(self.split.pool), dtype=np.int64)
        if config.strategy == REPLAY:
            return replayed_order(config.strategy_options["order"], len(self.split.pool))[:size]
        return initial_labeled_set(len(self.split.pool), size, config.seed)

    def _pretrained_features(self) -> None:
        """Pool features of the frozen pre-trained backbone, through the feature store."""
        backbone = self._fresh_backbone()
        pool_ids = np.arange(len(self.split.pool))
        key = {
            "weights_sha256": backbone.weights_sha256,
            "model": backbone.name,
            "image_size": self.config.image_size,
            "mean": backbone.preprocessing.mean,
            "std": backbone.preprocessing.std,
            "dataset": self.config.dataset,
            "dataset_options": self.config.dataset_options,
            "split": "pool",
            "indices": index_hash(pool_ids),
        }
        stored = self.store.get_or_extract(key, lambda: self._extract(backbone), self.device)
        self.timer.seconds["extract_features"] += stored.extract_seconds
        self.features = _Features(PoolFeatures(stored.features, self.device))

    def _extract(self, backbone: Backbone) -> torch.Tensor:
        pool_size = len(self.split.pool)
        return extract_features(
            backbone,
            self.split.pool,
            np.arange(pool_size),
            self.config.image_size,
            self.config.finetune.eval_batch_size,
            self.device,
            Progress(f"{self.config.dataset} pool features ({backbone.name})", pool_size),
        )

    def _train_method(self) -> str:
        if self.config.train_method != "auto":
            return self.config.train_method
        return "ft" if self.features is not None and self.features.version > 0 else "lpft"

    def _fine_tune(self, round_index: int, labeled: np.ndarray, method: str) -> Classifier:
        backbone = self._fresh_backbone()
        with self.timer.phase("finetune"):
            model = fine_tune(
                backbone,
                self.split.pool,
                labeled,
                method,
                self.config.finetune,
                self.config.linear_probe,
                self.config.image_size,
                derive_seed(self.config.seed, round_index, "finetune"),
                self.device,
            )
        self._backbone = backbone
        return model

    def _test_accuracy(self, model: Classifier) -> float:
        with self.timer.phase("test_eval"):
            outputs = self._classifier_outputs(
                model, self.split.test, np.arange(len(self.split.test))
            )
        return accuracy(outputs.probs, self.split.test.labels)

    def _classifier_outputs(
        self, model: Classifier, data: ImageSet, indices: np.ndarray, keep_embeddings: bool = False
    ) -> ModelOutputs:
        return classifier_outputs(
            model,
            self._backbone,
            data,
            indices,
            self.config.image_size,
            self.config.finetune.eval_batch_size,
            self.device,
            keep_embeddings,
        )

    def _read_indicator(
        self, labels_used: int, is_last: bool, labeled: np.ndarray
    ) -> UpdateDecision:
        assert self.rule is not None and self.features is not None
        with self.timer.phase("indicator"):
            features = (
                self.features.pool.rows(labeled).double().cpu().numpy()
                if self.rule.needs_value()
                else None
            )
            return self.rule.decide(labels_used, is_last, features, self.split.pool.labels[labeled])

    def _update_key(self, version: int, labeled: np.ndarray) -> dict[str, Any]:
        """The feature-store key of this cell's ``version``-th re-extraction, made by the model
        fine-tuned on ``labeled``: an entry per cell, never shared with another cell."""
        return {
            "kind": "asvp_update",
            "cell": cell_digest(self.config),
            "version": version,
            "labeled": index_hash(labeled),
        }

    def _update_features(self, labeled: np.ndarray) -> None:
        """ASVP feature alignment: pool features from the backbone just fine-tuned, kept in the
        feature store as an entry of their own (float16, as the pre-trained features: a
        resumed cell reads bit for bit what an uninterrupted cell holds in memory)."""
        assert self.features is not None and self._backbone is not None
        backbone = self._backbone
        key = self._update_key(self.features.version + 1, labeled)
        self._update_keys.append(key)
        stored = self.store.get_or_extract(key, lambda: self._extract(backbone), self.device)
        self.timer.seconds["update_extract"] += stored.extract_seconds
        self.features.replace(PoolFeatures(stored.features, self.device))

    def _remove_updated_features(self) -> None:
        """Delete this cell's re-extractions once it has finished (unless the grid keeps
        them): they are of no use to any other cell."""
        if not self.config.keep_updated_features:
            for key in self._update_keys:
                self.store.remove(key)

    def _finetuned_scoring(
        self, model: Classifier, labeled: np.ndarray, unlabeled: np.ndarray
    ) -> _Scoring:
        keep = "embeddings" in self.inputs
        pool = self._classifier_outputs(model, self.split.pool, unlabeled, keep)
        labeled_embeddings = (
            self._classifier_outputs(model, self.split.pool, labeled, True).embeddings
            if keep
            else None
        )
        return _Scoring(pool, labeled_embeddings)

    def _proxy_scoring(
        self, round_index: int, labeled: np.ndarray, unlabeled: np.ndarray
    ) -> _Scoring:
        assert self.features is not None
        features = self.features.pool
        targets = torch.from_numpy(self.split.pool.labels[labeled]).to(self.device)
        with self.timer.phase("proxy_train"):
            proxy = train_proxy(
                features.rows(labeled),
                targets,
                self.split.pool.num_classes,
                self.config.proxy,
                derive_seed(self.config.seed, round_index, "proxy"),
            )
        keep = "embeddings" in self.inputs
        batch = self.config.proxy.score_batch_size
        with self.timer.phase("pool_score"):
            pool = proxy_outputs(proxy, features, unlabeled, batch, keep)
            labeled_embeddings = (
                proxy_outputs(proxy, features, labeled, batch, True).embeddings if keep else None
            )
        return _Scoring(pool, labeled_embeddings)

    def _scoring(
        self, round_index: int, labeled: np.ndarray, unlabeled: np.ndarray, model: Classifier
    ) -> _Scoring | None:
        """The selecting model's outputs, when the strategy reads any."""
        if not self.model_selects:
            return None
        if self.config.pipeline == "standard":
            with self.timer.phase("pool_score"):
                return self._finetuned_scoring(model, labeled, unlabeled)
        return self._proxy_scoring(round_index, labeled, unlabeled)

    def _request(
        self,
        round_index: int,
        labeled: np.ndarray,
        unlabeled: np.ndarray,
        budget: int,
        scoring: _Scoring | None,
    ) -> SelectionRequest:
        """The selection request with exactly the inputs the strategy reads."""
        features = None
        if "features" in self.inputs:
            assert self.features is not None
            pool_features = self.features.pool
            features = Representation(pool_features.rows(unlabeled), pool_features.rows(labeled))
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
            features=features,
            num_classes=self.split.pool.num_classes,
        )

    def _analyses_discrepancy(self) -> bool:
        return (
            self.config.discrepancy_analysis
            and self.config.pipeline in ("svpp", "asvp")
            and self.model_selects
        )

    def _selection_discrepancy(
        self,
        round_index: int,
        labeled: np.ndarray,
        unlabeled: np.ndarray,
        budget: int,
        model: Classifier,
        proxy_scoring: _Scoring,
        proxy_selected: np.ndarray,
    ) -> tuple[np.ndarray, SelectionDiscrepancy]:
        """What the just fine-tuned model would have selected, compared with the proxy."""
        with self.timer.phase("analysis"):
            scoring = self._finetuned_scoring(model, labeled, unlabeled)
            request = self._request(round_index, labeled, unlabeled, budget, scoring)
            model_selected = select(self.config.strategy, request, self.config.strategy_options)
            predicted = proxy_scoring.pool.probs.argmax(dim=1).cpu().numpy()
            correct = unlabeled[predicted == self.split.pool.labels[unlabeled]]
        return model_selected, selection_discrepancy(proxy_selected, model_selected, correct)

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> CellResult:
        config = self.config
        budgets = self.budgets
        if config.pipeline in ("svpp", "asvp") or "features" in self.inputs:
            self._pretrained_features()
        result = self._restore()
        if result.resumed_rounds:
            self.timer.take()  # the restored rounds already hold the extraction's seconds
        labeled = np.asarray(result.labeled_order, dtype=np.int64)
        self._deliver(result)
        for round_index in range(result.resumed_rounds, len(budgets)):
            labels_used = budgets[round_index]
            is_last = round_index == len(budgets) - 1
            decision = self._read_indicator(labels_used, is_last, labeled) if self.rule else None
            updating = decision is not None and decision.update
            method = "ft" if updating and config.train_method == "auto" else self._train_method()
            model = self._fine_tune(round_index, labeled, method)
            test_acc = self._test_accuracy(model)
            if updating:
                self._update_features(labeled)
            selected = np.empty(0, dtype=np.int64)
            model_selected, discrepancy = None, None
            if not is_last:
                unlabeled = np.setdiff1d(np.arange(len(self.split.pool)), labeled)
                budget = budgets[round_index + 1] - labels_used
                scoring = self._scoring(round_index, labeled, unlabeled, model)
                request = self._request(round_index, labeled, unlabeled, budget, scoring)
                with self.timer.phase("select"):
                    selected = select(config.strategy, request, config.strategy_options)
                if self._analyses_discrepancy():
                    model_selected, discrepancy = self._selection_discrepancy(
                        round_index, labeled, unlabeled, budget, model, scoring, selected
                    )
                labeled = np.concatenate([labeled, selected])
            record = self._record(round_index, labels_used, test_acc, method, selected, decision)
            if discrepancy is not None:
                record.model_selected = model_selected.tolist()
                record.discrepancy = discrepancy
            result.rounds.append(record)
            result.labeled_order.extend(selected.tolist())
            self._save(result)
            self._deliver(result)
        self._deliver(result, final=True)
        self._remove_updated_features()
        result.artifacts = dict(self.split.artifacts)
        result.weights_sha256 = self._fresh_backbone().weights_sha256
        return result

    # -- checkpoints and delivery -------------------------------------------------------

    def _restore(self) -> CellResult:
        """The rounds saved by an earlier attempt, or a fresh start at the initial set."""
        saved = self.checkpoint.read() if self.checkpoint is not None else None
        if saved is not None and not self._restore_features(saved):
            saved = ignored("the feature-store entries of its updated features are gone")
        if saved is None:
            return CellResult(labeled_order=self._initial_labeled_set().tolist())
        state = saved
        if self.rule is not None:
            self.rule.load_state_dict(state["rule"])
        self._delivered = state["delivered"]
        rounds = [RoundRecord.from_dict(record) for record in state["rounds"]]
        return CellResult(rounds, list(state["labeled_order"]), resumed_rounds=len(rounds))

    def _restore_features(self, state: dict[str, Any]) -> bool:
        """Put back the features of the checkpoint's last update (False if its entry is no
        longer valid in the store)."""
        if state["feature_version"] == 0:
            return True
        keys = state.get("update_keys")
        if not keys:
            return False
        assert self.features is not None
        stored = self.store.get(keys[-1])
        if stored is None:
            return False
        self._update_keys = list(keys)
        self.features.pool = PoolFeatures(stored.features, self.device)
        self.features.version = state["feature_version"]
        return True

    def _save(self, result: CellResult) -> None:
        if self.checkpoint is None:
            return
        version = self.features.version if self.features is not None else 0
        state = {
            "update_keys": self._update_keys,
            "rounds": [dataclasses.asdict(record) for record in result.rounds],
            "labeled_order": result.labeled_order,
            "rule": self.rule.state_dict() if self.rule is not None else None,
            "feature_version": version,
            "delivered": self._delivered,
        }
        self.checkpoint.write(state)

    def _deliver(self, result: CellResult, final: bool = False) -> None:
        """Hand the finished rounds not yet handed over to ``on_round``, in order."""
        rounds = result.rounds
        delivered_before = self._delivered
        while self._delivered < len(rounds):
            try:
                self.on_round(rounds[self._delivered])
            except Exception as error:
                if final:
                    raise
                print(
                    f"round {self._delivered} not recorded yet ({error!r}); "
                    "retrying after the next round",
                    file=sys.stderr,
                    flush=True,
                )
                break
            self._delivered += 1
        if self._delivered != delivered_before:
            self._save(result)

    def _record(
        self,
        round_index: int,
        labels_used: int,
        test_acc: float,
        method: str,
        selected: np.ndarray,
        decision: UpdateDecision | None,
    ) -> RoundRecord:
        seconds = self.timer.take()
        finetune_selects = (self.config.pipeline == "standard" and self.model_selects) or (
            decision is not None and decision.update
        )
        sampling_phases = set(ALWAYS_SAMPLING) | {"select"}
        if finetune_selects:
            sampling_phases.add("finetune")
        sampling = sum(v for k, v in seconds.items() if k in sampling_phases)
        analysis = sum(v for k, v in seconds.items() if k in ANALYSIS_PHASES)
        return RoundRecord(
            finished_at_ms=int(time.time() * 1000),
            round=round_index,
            labels=labels_used,
            test_acc=test_acc,
            train_method=method,
            seconds=seconds,
            sampling_seconds=sampling,
            evaluation_seconds=sum(seconds.values()) - sampling - analysis,
            selected=selected.tolist(),
            feature_version=self.features.version if self.features is not None else 0,
            indicator=decision,
        )


def run_cell(
    config: CellConfig,
    feature_store: FeatureStore,
    device: torch.device | str = "cpu",
    on_round: Callable[[RoundRecord], None] | None = None,
    checkpoint: RoundCheckpoint | None = None,
) -> CellResult:
    """Run every round of one cell, continuing from ``checkpoint`` when it holds finished
    rounds (see the module docstring)."""
    return CellRunner(config, feature_store, torch.device(device), on_round, checkpoint).run()


def cell_digest(config: CellConfig) -> str:
    """A hash of everything in ``config`` that determines results (paths and storage choices
    left out): names the cell's own feature-store entries."""
    fields = dataclasses.asdict(config)
    for where in ("data_root", "download", "keep_updated_features"):
        fields.pop(where)
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
