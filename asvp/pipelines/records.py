"""What a cell produces: a record per round, the cell's result, and the seeds of its rounds.

The seed fixes the initial labelled set (shared by every cell of a dataset and seed) and, per
round, the fine-tune, the proxy and random selection (:func:`derive_seed`), so a round can be
replayed exactly.

Every phase is timed. Compute needed to make selections is *sampling* compute (charged in the
total cost); compute only done to measure accuracy is *evaluation* compute, reported apart;
the selection-discrepancy analysis is neither (:func:`round_record`). A round also records what
its fine-tune cost (:class:`~asvp.finetune_scale.FineTuneStats`), so that a bigger model's
higher cost can be read as its throughput and memory.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asvp.discrepancy import SelectionDiscrepancy
from asvp.finetune_scale import FineTuneStats
from asvp.trigger import UpdateDecision

ALWAYS_SAMPLING = ("extract_features", "update_extract", "indicator", "proxy_train", "pool_score")
"""Phases that are sampling compute whatever the pipeline (with ``select``)."""
ANALYSIS_PHASES = ("analysis",)
"""Phases that are neither sampling nor evaluation compute."""


@dataclass
class RoundRecord:
    """What one round did and measured. ``labels`` is the evaluation budget (MLflow step);
    ``finetune`` what the round's fine-tune cost (None in records saved before it was kept)."""

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
    finetune: FineTuneStats | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundRecord:
        """The record saved as ``dataclasses.asdict`` (round checkpoints)."""
        fields = dict(data)
        if fields.get("indicator") is not None:
            fields["indicator"] = UpdateDecision(**fields["indicator"])
        if fields.get("discrepancy") is not None:
            fields["discrepancy"] = SelectionDiscrepancy(**fields["discrepancy"])
        if fields.get("finetune") is not None:
            fields["finetune"] = FineTuneStats(**fields["finetune"])
        return cls(**fields)

    def summary(self, rounds: int) -> str:
        """One line on the round for a progress log: budget, accuracy and seconds (of
        ``rounds`` in the cell)."""
        return (
            f"round {self.round + 1}/{rounds} done: {self.labels} labels, "
            f"test accuracy {self.test_acc:.4f}, {sum(self.seconds.values()):.1f} s "
            f"({self.train_method})"
        )


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


def round_record(
    *,
    round_index: int,
    labels_used: int,
    test_acc: float,
    method: str,
    seconds: dict[str, float],
    finetune_is_sampling: bool,
    selected: np.ndarray,
    feature_version: int,
    decision: UpdateDecision | None,
    finetune: FineTuneStats | None = None,
) -> RoundRecord:
    """The round's record, its phases' ``seconds`` split into sampling, evaluation and
    analysis compute; the fine-tune is sampling compute when ``finetune_is_sampling``
    (:meth:`asvp.pipelines.base.Pipeline.finetune_is_sampling`); ``finetune`` is what the
    round's fine-tune cost."""
    sampling_phases = set(ALWAYS_SAMPLING) | {"select"}
    if finetune_is_sampling:
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
        feature_version=feature_version,
        indicator=decision,
        finetune=finetune,
    )
