"""Fine-tuning large backbones on one GPU, and what a fine-tune costs.

The paper stops at ResNet-50 and CLIP ViT-B (its Section 8). A ViT-L fine-tuned at 224 px with
the recipe's batch of 128 does not fit one GPU's memory, and users fine-tune ViTs with a
layer-wise learning-rate decay. :class:`~asvp.config.FineTuneConfig` has three settings for
this, each off by default (the paper's recipe, unchanged); :func:`asvp.training.fine_tune`
applies them with the pieces below:

- ``micro_batch_size``: :func:`train_step` splits each recipe batch into micro-batches and adds
  their gradients before one optimiser step, each micro-batch's mean loss weighted by its share
  of the batch, so the accumulated gradient is the full batch's mean-loss gradient.
- ``gradient_checkpointing``: :func:`gradient_checkpointing` turns timm's
  ``set_grad_checkpointing`` on for the fine-tune and off after it.
- ``layer_decay``: :func:`backbone_param_groups`, timm's ``param_groups_layer_decay`` grouping.

:func:`check_large_model_options` refuses a backbone that lacks what a setting needs, naming
it, when the cell loads it. :class:`FineTuneMeter` measures every fine-tune (training images per
second and, on CUDA, peak GPU memory; :class:`FineTuneStats`), which each round records, so a
user sees why a bigger model costs more (:class:`asvp.pipelines.models.CellModels` passes one to
every fine-tune).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asvp.config import FineTuneConfig
from asvp.loading import MixedPrecision
from asvp.models.registry import Backbone
from asvp.timing import PhaseTimer

GIB = 2**30


@dataclass(frozen=True)
class FineTuneStats:
    """What one fine-tune cost: ``images`` training images through the forward and backward
    pass in ``seconds`` of fine-tuning epochs (the linear probe of LP-FT, the model's setup and
    its evaluation excluded), and on CUDA the peak GPU memory allocated during the fine-tune
    (probe included), in GiB; None on other devices (never a made-up zero)."""

    images: int
    seconds: float
    peak_gpu_memory_gib: float | None = None

    @property
    def images_per_second(self) -> float | None:
        """Training throughput; None when nothing was trained."""
        if self.images == 0 or self.seconds <= 0:
            return None
        return self.images / self.seconds


class FineTuneMeter:
    """Counts a fine-tune's training images and times its epochs on ``device``.

    Make one right before the fine-tune and pass it to :func:`asvp.training.fine_tune`: on
    CUDA it resets the device's peak-memory statistics when made
    (``torch.cuda.reset_peak_memory_stats``), and :meth:`stats` reads their maximum
    (``torch.cuda.max_memory_allocated``). :meth:`timing` is a
    :class:`~asvp.timing.PhaseTimer` phase: on CUDA the seconds hold the kernels the epochs
    launched.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.images = 0
        self._timer = PhaseTimer(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def timing(self) -> AbstractContextManager:
        """Add the wall seconds spent inside the block to the training seconds."""
        return self._timer.phase("train")

    def stats(self) -> FineTuneStats:
        """The measurements so far."""
        peak = None
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / GIB
        return FineTuneStats(self.images, self._timer.seconds["train"], peak)


def check_large_model_options(backbone: Backbone, config: FineTuneConfig) -> None:
    """Raise ``ValueError`` naming ``backbone`` when ``config`` asks for gradient checkpointing
    or layer decay and its network lacks timm's ``set_grad_checkpointing`` or
    ``group_matcher`` (torchvision's ResNets, for instance)."""
    needs = []
    if config.gradient_checkpointing:
        needs.append(("finetune.gradient_checkpointing", "set_grad_checkpointing"))
    if config.layer_decay is not None:
        needs.append(("finetune.layer_decay", "group_matcher"))
    for setting, method in needs:
        if not callable(getattr(backbone.network, method, None)):
            raise ValueError(
                f"{setting} is set, but backbone {backbone.name!r} "
                f"({type(backbone.network).__name__}) has no {method}(): it is available for "
                f"backbones built on timm models; remove {setting} for this backbone"
            )


def backbone_param_groups(
    network: nn.Module, lr_backbone: float, layer_decay: float | None
) -> list[dict[str, Any]]:
    """The optimiser's parameter groups for the backbone ``network``.

    Without ``layer_decay``: one group at ``lr_backbone`` (the paper's recipe). With it: timm's
    ``param_groups_layer_decay`` grouping (from the network's ``group_matcher``; BEiT's
    layer-wise decay): the last block (with the final norm) at ``lr_backbone``, each earlier
    block x ``layer_decay`` more, the embeddings (patch, position, class token) the smallest.
    Only learning rates change: every parameter keeps the recipe's weight decay (timm's
    function would also exempt 1-D parameters; that is another recipe change, not made here).
    """
    if layer_decay is None:
        return [{"params": network.parameters(), "lr": lr_backbone}]
    from timm.optim import param_groups_layer_decay

    groups = param_groups_layer_decay(
        network, weight_decay=0.0, weight_decay_exclude_1d=False, layer_decay=layer_decay
    )
    return [{"params": group["params"], "lr": lr_backbone * group["lr_scale"]} for group in groups]


@contextmanager
def gradient_checkpointing(network: nn.Module, enabled: bool) -> Iterator[None]:
    """timm's gradient checkpointing on ``network`` inside the block (when ``enabled``), off
    after it, so that the model's later passes (evaluation, feature extraction) are plain.

    Gradients are those of the plain backward pass (the recomputed activations are the same).
    A BatchNorm layer inside a checkpointed segment runs forward twice in training mode, so
    its running statistics are updated twice per step.
    """
    if not enabled:
        yield
        return
    network.set_grad_checkpointing(True)
    try:
        yield
    finally:
        network.set_grad_checkpointing(False)


class AccumulatingPrecision(MixedPrecision):
    """:class:`~asvp.loading.MixedPrecision` that can also run a backward pass without the
    optimiser step: for the micro-batches before a batch's last one. With float16 loss
    scaling their losses are scaled by the same factor as the last one's, which the step then
    removes from the sum of the gradients."""

    def backward(self, loss: torch.Tensor) -> None:
        """Backward pass of ``loss`` (scaled for fp16), gradients added to those there."""
        (loss if self._scaler is None else self._scaler.scale(loss)).backward()


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    precision: AccumulatingPrecision,
    micro_batch_size: int | None,
) -> torch.Tensor:
    """One optimiser step of cross-entropy on a batch; returns the batch's mean loss.

    Without ``micro_batch_size`` (or with one at least the batch's size) the batch goes
    through in one forward and backward pass, the recipe's step. Otherwise it is split into
    as few micro-batches of at most ``micro_batch_size`` rows as possible, of sizes as equal as
    possible (so none has a single row unless ``micro_batch_size`` is 1: BatchNorm cannot
    normalise one row in training mode); each micro-batch's mean loss is weighted by its rows'
    share of the batch, so the gradients add up to the full batch's mean-loss gradient.
    """
    rows = len(targets)
    if micro_batch_size is None or micro_batch_size >= rows:
        with precision.autocast():
            loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        precision.step(loss, optimizer)
        return loss
    optimizer.zero_grad(set_to_none=True)
    parts = -(-rows // micro_batch_size)
    chunks = list(zip(images.tensor_split(parts), targets.tensor_split(parts), strict=True))
    total = torch.zeros((), device=targets.device)
    for number, (part_images, part_targets) in enumerate(chunks, start=1):
        with precision.autocast():
            loss = F.cross_entropy(model(part_images), part_targets) * (len(part_targets) / rows)
        if number < len(chunks):
            precision.backward(loss)
        else:
            precision.step(loss, optimizer)
        total += loss.detach().float()
    return total
