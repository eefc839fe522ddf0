"""Writers of checkpoint files in the real formats of the paper's backbones, from random weights.

Each writer builds the real architecture (the ResNets with the builders of
:mod:`asvp.models.resnet`, whose architecture ``test_checkpoint_formats`` pins) with seeded
random weights (BatchNorm statistics
and affine parameters randomised too, so that a loader that skips them is caught), saves it
the way the original training code does, with the realistic surrounding keys (target
network, projector, predictor, text tower, ``epoch``, ...), and returns the state dict the
backbone network must end up with, in the network's own key names.

- :func:`write_byol_eman_checkpoint`: amazon-science/exponential-moving-average-normalization
  ``main_byol.py`` (``epoch``, ``arch``, ``state_dict`` of the DataParallel BYOL model,
  ``best_acc1``, ``optimizer``).
- :func:`write_simsiam_checkpoint`: PatrickHua/SimSiam ``main.py`` (``epoch``, ``state_dict``
  with ``backbone.``, ``projector.``, ``encoder.0/1.`` and ``predictor.``).
- :func:`write_simclr_checkpoint`: a SimCLR CIFAR ResNet-18 with kuangliu-style names.
- :func:`write_clip_checkpoint`: CLIP image towers as timm state dicts, as OpenAI-keyed
  dicts, or as OpenAI-style TorchScript archives (fp16 weights, as OpenAI ships them).

Heads that are not part of any backbone (projectors, predictors) keep their real key names
but small widths: only their names matter to a loader.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from asvp.models.resnet import resnet18_cifar_features, resnet50_features

ClipVariant = Literal["b16", "b32"]
ClipFormat = Literal["timm", "openai", "openai_jit"]
CLIP_TIMM_MODELS = {
    "b16": "vit_base_patch16_clip_quickgelu_224",
    "b32": "vit_base_patch32_clip_quickgelu_224",
}


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def _randomise_batchnorm(network: nn.Module) -> None:
    """Random BatchNorm affine parameters, running statistics and counters."""
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(int(torch.randint(1, 10**6, ())))


def _prefixed(prefix: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {prefix + key: value for key, value in state.items()}


def _clone(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {key: value.clone() for key, value in state.items()}


def _head(**layers: nn.Module) -> dict[str, Tensor]:
    """The state dict of a head made of the named layers (random weights)."""
    head = nn.ModuleDict(layers)
    _randomise_batchnorm(head)
    return _clone(head.state_dict())


def _random_state(network: nn.Module) -> dict[str, Tensor]:
    _randomise_batchnorm(network)
    return _clone(network.state_dict())


def _byol_mlp(in_dim: int, hidden: int, out_dim: int) -> dict[str, Tensor]:
    """EMAN's ``MLP`` (``mlp.0`` Linear, ``mlp.1`` BN, ``mlp.2`` ReLU, ``mlp.3`` Linear)."""
    return _head(
        mlp=nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_dim, bias=False),
        )
    )


def write_byol_eman_checkpoint(path: str | Path, seed: int = 0) -> dict[str, Tensor]:
    """A BYOL-EMAN training checkpoint; returns the online backbone's state dict."""
    with _seeded(seed):
        online = _random_state(resnet50_features())
        target = {k: v * 0.5 if v.is_floating_point() else v for k, v in online.items()}
        state_dict = {
            **_prefixed("module.online_net.backbone.", online),
            **_prefixed("module.online_net.neck.", _byol_mlp(2048, 64, 32)),
            **_prefixed("module.target_net.backbone.", target),
            **_prefixed("module.target_net.neck.", _byol_mlp(2048, 64, 32)),
            **_prefixed("module.predictor.", _byol_mlp(32, 64, 32)),
        }
    optimizer = {
        "state": {},
        "param_groups": [
            {"lr": 0.0, "momentum": 0.9, "weight_decay": 0.0, "lars_exclude": True, "params": [0]},
            {"lr": 0.0, "momentum": 0.9, "weight_decay": 1.5e-6, "params": [1]},
        ],
    }
    torch.save(
        {
            "epoch": 200,
            "arch": "BYOLEMAN",
            "state_dict": state_dict,
            "best_acc1": 0.0,
            "optimizer": optimizer,
        },
        path,
    )
    return online


def _simsiam_heads(width: int = 64) -> dict[str, Tensor]:
    projector = _head(
        layer1=nn.Sequential(nn.Linear(512, width), nn.BatchNorm1d(width), nn.ReLU()),
        layer2=nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU()),
        layer3=nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width)),
    )
    predictor = _head(
        layer1=nn.Sequential(nn.Linear(width, 16), nn.BatchNorm1d(16), nn.ReLU()),
        layer2=nn.Linear(16, width),
    )
    return {
        **_prefixed("projector.", projector),
        **_prefixed("encoder.1.", projector),
        **_prefixed("predictor.", predictor),
    }


def write_simsiam_checkpoint(path: str | Path, seed: int = 0) -> dict[str, Tensor]:
    """A PatrickHua/SimSiam CIFAR checkpoint; returns the ResNet-18 backbone's state dict."""
    with _seeded(seed):
        backbone = _random_state(resnet18_cifar_features())
        state_dict = {
            **_prefixed("backbone.", backbone),
            **_prefixed("encoder.0.", backbone),  # the same module, registered twice
            **_simsiam_heads(),
        }
    torch.save({"epoch": 800, "state_dict": state_dict}, path)
    return backbone


def kuangliu_names(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """torchvision ResNet names -> kuangliu-style (``downsample`` -> ``shortcut``)."""
    return {key.replace(".downsample.", ".shortcut."): value for key, value in state.items()}


def write_simclr_checkpoint(
    path: str | Path,
    seed: int = 0,
    *,
    key_prefix: str = "backbone.",
    wrapped: bool = False,
    with_classifier: bool = False,
) -> dict[str, Tensor]:
    """A SimCLR CIFAR ResNet-18 (kuangliu names under ``key_prefix``, a ``projector.`` head),
    as a raw dict or under ``state_dict`` (``wrapped``), optionally with the ResNet's
    ``linear`` classifier; returns the backbone's state dict in torchvision names."""
    with _seeded(seed):
        backbone = _random_state(resnet18_cifar_features())
        state = {
            **_prefixed(key_prefix, kuangliu_names(backbone)),
            **_prefixed(
                "projector.",
                _head(mlp=nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 32))),
            ),
        }
        if with_classifier:
            state.update(_prefixed(key_prefix + "linear.", _clone(nn.Linear(512, 10).state_dict())))
    torch.save({"epoch": 500, "state_dict": state} if wrapped else state, path)
    return backbone


def clip_timm_state(variant: ClipVariant, seed: int = 0) -> dict[str, Tensor]:
    """Random weights of timm's CLIP image tower with the 512-d projection head.

    Values are fp16-representable (OpenAI ships fp16 weights), so every format holds exactly
    the same numbers; the head bias is zero (OpenAI's projection has none).
    """
    return _clone(_clip_timm_state(variant, seed))


@lru_cache(maxsize=1)  # writing one set of weights in several formats draws them once
def _clip_timm_state(variant: ClipVariant, seed: int) -> dict[str, Tensor]:
    import timm

    with torch.device("meta"):
        skeleton = timm.create_model(CLIP_TIMM_MODELS[variant], pretrained=False, num_classes=512)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, meta in skeleton.state_dict().items():
        noise = torch.randn(meta.shape, generator=generator)
        if key == "head.bias":
            value = torch.zeros(meta.shape)
        elif re.search(r"norm\w*\.weight$", key):
            value = 1.0 + 0.05 * noise
        else:
            value = 0.02 * noise
        state[key] = value.half().float()
    return state


_OPENAI_BLOCK_NAMES = {
    "norm1.": "ln_1.",
    "norm2.": "ln_2.",
    "attn.qkv.weight": "attn.in_proj_weight",
    "attn.qkv.bias": "attn.in_proj_bias",
    "attn.proj.": "attn.out_proj.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}


def _openai_visual_key(key: str) -> str:
    """OpenAI's name (under ``visual.``) of a timm CLIP tower key; ``head.*`` excluded."""
    simple = {
        "cls_token": "class_embedding",
        "pos_embed": "positional_embedding",
        "patch_embed.proj.weight": "conv1.weight",
    }
    if key in simple:
        return "visual." + simple[key]
    for timm_prefix, openai_prefix in (("norm_pre.", "ln_pre."), ("norm.", "ln_post.")):
        if key.startswith(timm_prefix):
            return "visual." + openai_prefix + key[len(timm_prefix) :]
    block, index, rest = key.split(".", 2)
    assert block == "blocks", key
    for timm_name, openai_name in _OPENAI_BLOCK_NAMES.items():
        if rest.startswith(timm_name):
            rest = openai_name + rest[len(timm_name) :]
            break
    return f"visual.transformer.resblocks.{index}.{rest}"


def openai_clip_state(timm_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The OpenAI CLIP state dict holding ``timm_state``'s image tower, plus a token text
    tower. Dtypes as in OpenAI's files: fp16 for convolutions, linear and attention weights
    and the projection, fp32 for layer norms and embeddings."""
    state = {}
    for key, value in timm_state.items():
        if key == "head.bias":
            assert not value.any(), "OpenAI's projection has no bias"
            continue
        if key == "head.weight":
            state["visual.proj"] = value.t().contiguous()
            continue
        name = _openai_visual_key(key)
        if key == "cls_token":
            value = value.reshape(-1)
        elif key == "pos_embed":
            value = value[0]
        state[name] = value.clone()
    for name, value in state.items():
        if not re.search(r"ln_|embedding", name):
            state[name] = value.half()
    generator = torch.Generator().manual_seed(1)
    state.update(
        {
            "positional_embedding": torch.randn(77, 8, generator=generator),
            "token_embedding.weight": torch.randn(16, 8, generator=generator),
            "text_projection": torch.randn(8, 8, generator=generator).half(),
            "logit_scale": torch.tensor(4.6052),
        }
    )
    return state


class _Holder(nn.Module):
    """A TorchScript-able module that only holds parameters (and child holders)."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def _holder_tree(state: Mapping[str, Tensor]) -> nn.Module:
    """A module whose ``state_dict()`` keys are exactly ``state``'s dotted names."""
    root = _Holder()
    for key, value in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, _Holder())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
    return root


def write_clip_checkpoint(
    path: str | Path, variant: ClipVariant = "b32", format: ClipFormat = "timm", seed: int = 0
) -> dict[str, Tensor]:
    """A CLIP ViT-B image tower checkpoint; returns the timm network's expected state dict.

    ``timm``: the timm model's state dict (fp32). ``openai``: OpenAI's keys in a plain
    ``torch.save`` d dict. ``openai_jit``: a TorchScript archive with OpenAI's keys, like the
    files ``clip.load`` downloads.
    """
    state = clip_timm_state(variant, seed)
    if format == "timm":
        torch.save(state, path)
    elif format == "openai":
        torch.save(openai_clip_state(state), path)
    else:
        with warnings.catch_warnings():  # the format OpenAI ships, whatever torch thinks of it
            warnings.filterwarnings(
                "ignore", "`torch.jit.script` is deprecated", DeprecationWarning
            )
            torch.jit.script(_holder_tree(openai_clip_state(state))).save(str(path))
    return state
