"""Training: the proxy on features, LP, FT and LP-FT of a backbone, and prediction.

Every routine takes an explicit ``seed`` that fixes the head's initialisation and the batch
order, so a round can be repeated exactly. Backbones are fine-tuned whole (every layer).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asvp.config import FineTuneConfig, LinearProbeConfig, ProxyConfig
from asvp.data import ImageSet
from asvp.data.transforms import ImageTransform
from asvp.features.extract import embedding_batches, extract_features, image_batches
from asvp.finetune_scale import (
    AccumulatingPrecision,
    FineTuneMeter,
    backbone_param_groups,
    check_large_model_options,
    gradient_checkpointing,
    train_step,
)
from asvp.loading import BatchOrder, ImageBatchLoader, loader_workers, prepare_model
from asvp.models.backbones import Backbone
from asvp.models.heads import Classifier, ProxyMLP
from asvp.pool import PoolFeatures

TRAIN_METHODS = ("ft", "lpft")
PROXY_COSINE_CYCLES = 7 / 16


def _cosine_factor(step: int, total_steps: int) -> float:
    """FixMatch-style per-step cosine decay without warm-up: cos(7*pi/16 * progress)."""
    return math.cos(math.pi * PROXY_COSINE_CYCLES * step / max(total_steps, 1))


def _train_with_cosine(
    model: nn.Module,
    epochs: Iterator[list[tuple[torch.Tensor, torch.Tensor]]] | Iterable,
    steps_per_epoch: int,
    config: ProxyConfig | LinearProbeConfig,
) -> None:
    """SGD (Nesterov) with per-step cosine decay, with the epochs, learning rate, momentum and
    weight decay of ``config``, over ``epochs``: one iterable of ``(inputs, labels)`` batches
    per epoch, ``steps_per_epoch`` batches each (the schedule's length)."""
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=True,
    )
    total_steps = config.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _cosine_factor(step, total_steps)
    )
    model.train()
    for batches in epochs:
        for inputs, labels in batches:
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()


def _train_on_tensors(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    config: ProxyConfig | LinearProbeConfig,
    seed: int,
) -> None:
    """:func:`_train_with_cosine` over tensors already on the device, in batches of
    ``config.batch_size`` in an order drawn from a generator seeded with ``seed``.

    Each step gathers its batch with one index operation on the device: no per-sample Python,
    no host round trip (the batch order is drawn on the host from that generator, so CPU and
    GPU runs see the same batches).
    """
    order = BatchOrder(len(labels), config.batch_size, torch.Generator().manual_seed(seed))

    def epoch() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = list(order)
        rows = torch.from_numpy(np.concatenate(batches)).to(inputs.device, non_blocking=True)
        start = 0
        for batch in batches:
            index = rows[start : start + len(batch)]
            start += len(batch)
            yield inputs[index], labels[index]

    if len(order):  # no labelled rows: nothing to train on
        _train_with_cosine(model, (epoch() for _ in range(config.epochs)), len(order), config)


def train_proxy(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    config: ProxyConfig,
    seed: int,
) -> ProxyMLP:
    """Train a fresh proxy MLP on the labelled rows' features (SVPp/ASVP, every round)."""
    torch.manual_seed(seed)
    hidden = config.hidden or features.shape[1]
    proxy = ProxyMLP(features.shape[1], hidden, num_classes).to(features.device)
    _train_on_tensors(proxy, features.float(), labels, config, seed)
    return proxy.eval()


@dataclass(frozen=True)
class ModelOutputs:
    """What a selecting model says about some rows: softmax outputs and, when asked for, the
    penultimate embeddings (the input of its last linear layer), rows in input order."""

    probs: torch.Tensor
    embeddings: torch.Tensor | None


@torch.no_grad()
def _head_outputs(
    embedding_batches: Iterable[torch.Tensor], head: nn.Linear, rows: int, keep_embeddings: bool
) -> ModelOutputs:
    """Softmax outputs (and embeddings) of ``rows`` rows, written batch by batch into
    tensors allocated once: the peak is the result, not the result plus a list of its parts."""
    device = head.weight.device
    probs = torch.empty((rows, head.out_features), device=device)
    embeddings = torch.empty((rows, head.in_features), device=device) if keep_embeddings else None
    start = 0
    for batch in embedding_batches:
        stop = start + len(batch)
        probs[start:stop] = head(batch).softmax(dim=1)
        if embeddings is not None:
            embeddings[start:stop] = batch
        start = stop
    if start != rows:
        raise RuntimeError(f"expected outputs for {rows} rows, got {start}")
    return ModelOutputs(probs, embeddings)


def proxy_outputs(
    proxy: ProxyMLP,
    features: PoolFeatures,
    ids: np.ndarray,
    batch_size: int,
    keep_embeddings: bool = False,
) -> ModelOutputs:
    """The proxy's softmax outputs (and hidden-layer embeddings) for pool rows ``ids``, in
    that order: their features are streamed in batches of ``batch_size`` rows from where the
    pool is kept (the GPU or the feature store's memory map; :class:`~asvp.pool.PoolFeatures`)."""
    proxy.eval()
    batches = (proxy.embed(rows) for rows in features.batches(ids, batch_size))
    return _head_outputs(batches, proxy.out, len(ids), keep_embeddings)


def classifier_outputs(
    model: Classifier,
    data: ImageSet,
    indices: np.ndarray,
    transform: ImageTransform,
    batch_size: int,
    device: torch.device,
    keep_embeddings: bool = False,
) -> ModelOutputs:
    """Softmax outputs (and backbone embeddings) of a fine-tuned classifier over
    ``data[indices]`` through the test transform, eval mode, one forward pass."""
    batches = embedding_batches(model.backbone, data, indices, transform, batch_size, device)
    return _head_outputs(batches, model.head, len(indices), keep_embeddings)


@torch.no_grad()
def _recalibrate_batch_norm(
    network: nn.Module,
    data: ImageSet,
    indices: np.ndarray,
    transform: ImageTransform,
    config: LinearProbeConfig,
    device: torch.device,
) -> None:
    """Set BatchNorm running statistics to those of the labelled images (AdaBN, Li et al. 2016).

    Fine-tuning runs BatchNorm on batch statistics; probing the head on features normalised with
    the pre-training statistics would fit it to a distribution that fine-tuning replaces at its
    first step. Not in the official code; see :class:`~asvp.config.LinearProbeConfig`.
    """
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved_momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over all batches
    network.to(device).train()
    for batch in image_batches(data, indices, transform, config.batch_size, device):
        network(batch)
    for norm, momentum in zip(norms, saved_momenta, strict=True):
        norm.momentum = momentum


def _linear_probe(
    model: Classifier,
    backbone: Backbone,
    data: ImageSet,
    indices: np.ndarray,
    transform: ImageTransform,
    config: LinearProbeConfig,
    seed: int,
    device: torch.device,
) -> None:
    """LP stage of LP-FT: train ``model.head`` on the frozen backbone's features, after
    BatchNorm recalibration. With augmented training images (and ``config.features`` ``auto``
    or ``per_epoch``) the features are re-encoded from freshly augmented images every epoch,
    as the official ``training_mode 3`` does; otherwise they are those of the un-augmented
    images, extracted once (cheaper, and the same images)."""
    _recalibrate_batch_norm(model.backbone, data, indices, transform, config, device)
    labels = torch.from_numpy(data.labels).to(device)
    augmented = transform.augmentation.kind != "none"
    if config.features == "once" or (config.features == "auto" and not augmented):
        features = extract_features(backbone, data, indices, transform, config.batch_size, device)
        _train_on_tensors(model.head, features, labels[indices], config, seed + 1)
        return
    network = prepare_model(backbone.network, device).eval()
    loader = ImageBatchLoader(
        data,
        indices,
        config.batch_size,
        transform,
        torch.Generator().manual_seed(seed + 1),
        device,
        loader_workers(device),
        augment_seed=seed + 1,
    )

    def epoch() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, rows in loader:
            with torch.no_grad():
                features = network(images).float()
            yield features, labels[rows]

    with loader:
        if len(loader):
            _train_with_cosine(
                model.head, (epoch() for _ in range(config.epochs)), len(loader), config
            )
    if device.type == "cuda":  # give the network back in its own layout
        network.to(memory_format=torch.contiguous_format)


def fine_tune(
    backbone: Backbone,
    data: ImageSet,
    indices: np.ndarray,
    method: str,
    config: FineTuneConfig,
    linear_probe: LinearProbeConfig,
    transform: ImageTransform,
    seed: int,
    device: torch.device,
    mixed_precision: bool = True,
    meter: FineTuneMeter | None = None,
) -> Classifier:
    """Fine-tune ``backbone`` (all layers) with a new linear head on ``data[indices]``.

    ``method`` is ``ft`` (full fine-tuning from a random head, official ``training_mode 2``)
    or ``lpft`` (linear probe first, then full fine-tuning from the probed head, Kumar et al.
    ICLR 2022, official ``training_mode 3``). The backbone is modified in place: pass a fresh
    copy with the pre-trained weights (cold start every round, as the official code does).
    Training batches go through ``transform``'s augmentation, each batch's crops and flips
    drawn from a generator of (``seed``, epoch, batch) (:mod:`asvp.data.transforms`), so they
    are the same in loader workers and in the main process, and on a resume.

    Throughput (:mod:`asvp.loading`): batches are decoded ahead by data loader workers (on
    CUDA; the batches are bit-identical with or without them); on CUDA the model and batches
    are channels-last and, unless ``mixed_precision`` is False, the forward pass runs under
    bfloat16 autocast (float16 with loss scaling on GPUs without bfloat16). On CPU it is the
    plain float32 loop. ``torch.compile`` is not used: it has not been measured to help here.

    Large backbones (:mod:`asvp.finetune_scale`): ``config.micro_batch_size`` accumulates each
    batch's gradients over micro-batches, ``config.gradient_checkpointing`` recomputes the
    backbone's activations in the backward pass, ``config.layer_decay`` gives the backbone's
    layers decaying learning rates; a backbone without what they need is refused here. A
    ``meter`` (:class:`~asvp.finetune_scale.FineTuneMeter`, made right before the call) counts
    the training images and times the epochs; it measures peak GPU memory from its making
    (without one, a meter of its own resets the device's peak-memory statistics all the same).
    """
    if method not in TRAIN_METHODS:
        raise ValueError(f"unknown train method {method!r}; expected one of {TRAIN_METHODS}")
    check_large_model_options(backbone, config)
    meter = meter if meter is not None else FineTuneMeter(device)
    torch.manual_seed(seed)
    model = Classifier(backbone.network, backbone.num_features, data.num_classes).to(device)
    if method == "lpft":
        _linear_probe(model, backbone, data, indices, transform, linear_probe, seed, device)
    prepare_model(model, device)  # after the probe, whose extraction restores the layout
    optimizer = torch.optim.SGD(
        [
            *backbone_param_groups(model.backbone, config.lr_backbone, config.layer_decay),
            {"params": model.head.parameters(), "lr": config.lr_head},
        ],
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=True,
    )
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), 0.1)
    labels = torch.from_numpy(data.labels).to(device)
    precision = AccumulatingPrecision.for_device(device, mixed_precision)
    loader = ImageBatchLoader(
        data,
        indices,
        config.batch_size,
        transform,
        torch.Generator().manual_seed(seed),
        device,
        loader_workers(device),
        augment_seed=seed,
    )
    model.train()
    checkpointing = gradient_checkpointing(model.backbone, config.gradient_checkpointing)
    with loader, checkpointing, meter.timing():
        for epoch in range(config.epochs):
            finite = torch.ones((), dtype=torch.bool, device=device)
            for images, rows in loader:
                loss = train_step(
                    model, images, labels[rows], optimizer, precision, config.micro_batch_size
                )
                meter.images += len(rows)
                finite &= torch.isfinite(loss)
            if not finite:  # one device sync per epoch, not per step
                raise FloatingPointError(
                    f"fine-tuning ({method}) diverged: the loss was not finite in epoch "
                    f"{epoch + 1} of {config.epochs} on {len(indices)} labelled images; lower "
                    f"finetune.lr_backbone ({config.lr_backbone}) or finetune.lr_head "
                    f"({config.lr_head})"
                )
            schedule.step()
    return model.eval()


def accuracy(probabilities: torch.Tensor, labels: np.ndarray) -> float:
    """Top-1 accuracy as a fraction in [0, 1]."""
    predicted = probabilities.argmax(dim=1).cpu().numpy()
    return float((predicted == labels).mean())
