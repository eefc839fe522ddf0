"""The method's settings, as typed dataclasses with their defaults.

The harness (``benchmark/grid/``) derives the grid file's schema for these sections from the
fields below (:func:`asvp.options.declared_options`), so each setting, its type, its allowed
range and its default is written once. Defaults follow the official
ImageNet scripts where they exist (``docs/official-code.md`` section 6); grid files
override them per experiment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from asvp.options import Increasing, Length, Range

Count = Annotated[int, Range(ge=1)]
"""A number of items, epochs or labels: an integer >= 1."""
Rate = Annotated[float, Range(gt=0)]
"""A learning rate: a number > 0."""
Decay = Annotated[float, Range(ge=0)]
"""A weight decay: a number >= 0."""
Momentum = Annotated[float, Range(ge=0, lt=1)]
"""SGD momentum: a number in [0, 1)."""
Milestones = Annotated[tuple[int, ...], Range(ge=1), Increasing()]
"""Epochs or label counts in strictly increasing order, each >= 1."""
TriggerRule = Literal["logme", "ped", "schedule", "never", "every"]
"""The feature-update rules of :mod:`asvp.trigger` (``docs/design.md``, "Indicator rules")."""
Augment = Literal["official", "none"]
"""``official``: the official code's training augmentation for the dataset and backbone
(:func:`asvp.recipe.official_augmentation`); ``none``: training images get the test
transform."""
Channels = Annotated[tuple[float, ...], Length(3)]
"""One number per RGB channel."""


@dataclass(frozen=True)
class FineTuneConfig:
    """Full fine-tuning of backbone + linear head (official ``training_mode 2``).

    SGD with momentum and Nesterov, separate learning rates for backbone and head, learning
    rate x0.1 at each milestone epoch. Official ImageNet setting: 50 epochs, lr 0.01 / 0.1,
    weight decay 1e-4, milestones 30 and 40, batch 128.

    Beyond the paper, for large backbones on one GPU (:mod:`asvp.finetune_scale`); each is off
    by default, which is the paper's recipe:

    - ``micro_batch_size``: each batch of ``batch_size`` is split into micro-batches of at most
      this many images whose gradients add up before the one optimiser step, so the effective
      batch and the schedule stay the recipe's and activation memory is that of a micro-batch.
      BatchNorm layers then normalise with micro-batch statistics (a BN network's result
      changes); a LayerNorm ViT's changes only by the order of float additions.
    - ``gradient_checkpointing``: timm's ``set_grad_checkpointing`` on the backbone while it is
      fine-tuned (activations recomputed in the backward pass: less memory, about a third more
      compute); only for backbones whose network has it (timm models).
    - ``layer_decay``: layer-wise learning-rate decay of the backbone (BEiT; timm's
      ``param_groups_layer_decay``): the last block keeps ``lr_backbone``, each earlier layer
      gets x ``layer_decay`` more, the embeddings the smallest; the head keeps ``lr_head``.
      Only for backbones whose network has timm's ``group_matcher``.
    """

    epochs: Count = 50
    batch_size: Count = 128
    lr_backbone: Rate = 0.01
    lr_head: Rate = 0.1
    weight_decay: Decay = 1e-4
    momentum: Momentum = 0.9
    milestones: Milestones = (30, 40)
    eval_batch_size: Count = 512
    micro_batch_size: Count | None = None
    gradient_checkpointing: bool = False
    layer_decay: Annotated[float, Range(gt=0, le=1)] | None = None


@dataclass(frozen=True)
class LinearProbeConfig:
    """The LP stage of LP-FT (Kumar et al., ICLR 2022): the head alone on frozen features.

    ``features``: ``per_epoch`` re-augments and re-encodes the labelled images every LP epoch,
    as the official ``training_mode 3`` does; ``once`` trains on the frozen backbone's features
    of the un-augmented labelled images, extracted once (much cheaper; the same thing when
    training images are not augmented); ``auto``: ``per_epoch`` when the cell's training
    images are augmented, else ``once``. Cosine schedule as the proxy.
    """

    epochs: Count = 10
    lr: Rate = 0.5
    batch_size: Count = 256
    weight_decay: Decay = 0.0
    momentum: Momentum = 0.9
    features: Literal["auto", "per_epoch", "once"] = "auto"


@dataclass(frozen=True)
class ProxyConfig:
    """The SVPp/ASVP proxy: one-hidden-layer BN MLP trained from scratch every round.

    Official: SGD lr 0.1, momentum 0.9, Nesterov, weight decay 0, batch 2048, 50 epochs,
    per-step cosine factor cos(7*pi/16 * progress) (ends at ~0.195 x lr). ``hidden`` defaults
    to the feature width (2048 -> 2048 -> C on ImageNet).
    """

    hidden: Count | None = None
    epochs: Count = 50
    batch_size: Count = 2048
    lr: Rate = 0.1
    momentum: Momentum = 0.9
    weight_decay: Decay = 0.0
    score_batch_size: Count = 4096


@dataclass(frozen=True)
class TriggerConfig:
    """When ASVP replaces the proxy's features (docs/design.md, "Indicator rules").

    ``rule``: ``logme`` (LogME of the labelled set's current features falls below ``fraction``
    x its value on the first round with these features, or below ``threshold``), ``ped`` (the
    same with PED, whose settings are ``ped``: keyword arguments of :func:`asvp.trigger.ped`),
    ``schedule`` (update at the first evaluation budget at or above each count in
    ``at_labels``), ``never`` (= SVPp), ``every``. ``max_updates`` caps the number of updates
    (None: no cap). The paper's exact rule is not public: these rules are this project's
    reading of it.
    """

    rule: TriggerRule = "logme"
    fraction: Annotated[float, Range(gt=0, le=1)] = 0.9
    threshold: float | None = None
    at_labels: Milestones = ()
    max_updates: Annotated[int, Range(ge=0)] | None = None
    ped: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ComputeConfig:
    """How a cell computes: part of its arithmetic, so of its run key (``compute:``).

    ``threads``: the torch intra-op threads that every part of the cell computes with
    (fine-tuning, the proxy, the selection kernels), whichever executor runs it and however many
    cells run beside it: a float reduction split over another number of threads adds in another
    order, and one different pick changes every later round. ``deterministic``: torch's
    deterministic algorithms where the ops have them (``warn_only``: an op without one warns);
    on a GPU also deterministic cuDNN (no benchmark-chosen kernels) and cuBLAS's fixed
    workspace (``CUBLAS_WORKSPACE_CONFIG``). :func:`asvp.compute.compute_settings` applies
    them. Bit-identical results are promised on one machine, not across CPU models or GPUs.
    """

    threads: Count = 1
    deterministic: bool = False


@dataclass(frozen=True)
class TransformConfig:
    """How a cell's images become its backbone's inputs (``docs/official-code.md`` section 4).

    ``augment`` chooses the training augmentation (:data:`Augment`). The other fields override
    what the backbone declares it was pre-trained with (its
    :class:`~asvp.data.transforms.InputConfig`); None keeps the backbone's. The transform a
    cell uses is resolved from these, the dataset and the backbone by
    :func:`asvp.recipe.resolve_transform`, and its run key holds the resolved transform.
    """

    augment: Augment = "official"
    size: Count | None = None
    interpolation: Literal["bilinear", "bicubic"] | None = None
    crop_pct: Annotated[float, Range(gt=0, le=1)] | None = None
    mean: Channels | None = None
    std: Annotated[tuple[float, ...], Length(3), Range(gt=0)] | None = None


@dataclass(frozen=True)
class CellConfig:
    """Everything that determines one grid cell's results (its run key hashes this).

    ``strategy_options`` are the strategy's keyword options (``asvp.strategies``);
    ``discrepancy_analysis`` makes svpp and asvp cells also log what the just fine-tuned model
    would have selected (the paper's Figures 4-5; it costs one pool scoring per round).
    ``backbone_options`` are the backbone's keyword options (its checkpoint file, CLIP's
    embedding, ...; :func:`asvp.models.backbones.load_backbone`). ``compute`` fixes the threads
    and determinism the cell computes with (:class:`ComputeConfig`); ``transform`` how its
    images are augmented and what its backbone's inputs are (:class:`TransformConfig`).

    Where things are, not what they are (never part of a run key): ``data_root`` (the datasets'
    root folder), ``download`` (let torchvision download a missing dataset) and
    ``keep_updated_features`` (keep ASVP's re-extracted features in the feature store after the
    cell finishes; by default they are removed then).
    """

    dataset: str
    backbone: str
    pipeline: str
    strategy: str
    train_method: str
    seed: int
    budgets: tuple[int, ...]
    transform: TransformConfig = field(default_factory=TransformConfig)
    dataset_options: dict = field(default_factory=dict)
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)
    linear_probe: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    strategy_options: dict = field(default_factory=dict)
    discrepancy_analysis: bool = True
    backbone_options: dict = field(default_factory=dict)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    data_root: str = "data"
    download: bool = False
    keep_updated_features: bool = False
