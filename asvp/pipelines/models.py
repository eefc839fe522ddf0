"""A cell's image models: fresh pre-trained backbones, the round's fine-tune and its passes.

Every round fine-tunes a fresh copy of the pre-trained backbone (cold start, as the official
code) on the labelled set; the result is timed as ``finetune`` and its test pass as
``test_eval``, and it carries what the fine-tune cost (training images per second, peak GPU
memory on CUDA: :class:`~asvp.finetune_scale.FineTuneStats`). Whether that compute is sampling
or evaluation is the pipeline's business
(:meth:`asvp.pipelines.base.Pipeline.finetune_is_sampling`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asvp.config import CellConfig
from asvp.data import ImageSet, Split
from asvp.features import extract_features
from asvp.finetune_scale import FineTuneMeter, FineTuneStats, check_large_model_options
from asvp.models.backbones import Backbone, load_backbone
from asvp.models.heads import Classifier
from asvp.pipelines.records import derive_seed
from asvp.progress import Progress
from asvp.recipe import resolve_transform
from asvp.timing import PhaseTimer
from asvp.training import ModelOutputs, accuracy, classifier_outputs, fine_tune


@dataclass(frozen=True)
class FineTuned:
    """A classifier fine-tuned in this round, the backbone it was made from (fine-tuned in
    place: its network is the classifier's) and what the fine-tune cost."""

    model: Classifier
    backbone: Backbone
    stats: FineTuneStats | None = None


class CellModels:
    """The backbone passes of one cell, on its dataset, device and timer."""

    def __init__(
        self, config: CellConfig, split: Split, device: torch.device, timer: PhaseTimer
    ) -> None:
        self.config = config
        self.transform = resolve_transform(config)
        self.split = split
        self.device = device
        self.timer = timer

    def fresh_backbone(self) -> Backbone:
        """A new copy of the pre-trained backbone. The first one a cell loads is also where a
        fine-tune setting the backbone cannot do (gradient checkpointing, layer decay) is
        refused: before the cell extracts features or fine-tunes."""
        backbone = load_backbone(self.config.backbone, **self.config.backbone_options)
        check_large_model_options(backbone, self.config.finetune)
        return backbone

    def pool_features(self, backbone: Backbone) -> torch.Tensor:
        """``backbone``'s features of every pool row, with progress on stderr (untimed here:
        the feature store times extraction)."""
        pool_size = len(self.split.pool)
        return extract_features(
            backbone,
            self.split.pool,
            np.arange(pool_size),
            self.transform,
            self.config.finetune.eval_batch_size,
            self.device,
            Progress(f"{self.config.dataset} pool features ({backbone.name})", pool_size),
        )

    def fine_tune(self, round_index: int, labeled: np.ndarray, method: str) -> FineTuned:
        """Fine-tune a fresh backbone on the ``labeled`` pool rows with ``method``."""
        backbone = self.fresh_backbone()
        with self.timer.phase("finetune"):
            meter = FineTuneMeter(self.device)
            model = fine_tune(
                backbone,
                self.split.pool,
                labeled,
                method,
                self.config.finetune,
                self.config.linear_probe,
                self.transform,
                derive_seed(self.config.seed, round_index, "finetune"),
                self.device,
                meter=meter,
            )
        return FineTuned(model, backbone, meter.stats())

    def test_accuracy(self, tuned: FineTuned) -> float:
        """Top-1 accuracy of ``tuned`` on the test split."""
        with self.timer.phase("test_eval"):
            outputs = self.outputs(tuned, self.split.test, np.arange(len(self.split.test)))
        return accuracy(outputs.probs, self.split.test.labels)

    def outputs(
        self,
        tuned: FineTuned,
        data: ImageSet,
        indices: np.ndarray,
        keep_embeddings: bool = False,
    ) -> ModelOutputs:
        """``tuned``'s softmax outputs (and embeddings) of ``data[indices]`` (untimed)."""
        return classifier_outputs(
            tuned.model,
            data,
            indices,
            self.transform,
            self.config.finetune.eval_batch_size,
            self.device,
            keep_embeddings,
        )
