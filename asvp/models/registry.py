"""The backbone registry: named factories, their options, and a per-process template cache.

A backbone is registered as a factory ``f(**options) -> Backbone`` whose keyword-only
signature *is* its option schema, read and checked by :mod:`asvp.options`: a parameter
without default is required, its annotation (``bool``, ``str``, ``Literal[...]``, ``Path``,
``Annotated`` ranges) restricts the values, and a parameter named ``checkpoint`` (annotated
``Path``) is the weights file the user provides. The grid's
``backbone: {name: ..., checkpoint: ..., ...}`` mapping (minus ``name``) is passed as options.
Options are checked from the signature alone (:func:`check_backbone_options`), so a grid can be
validated without reading any checkpoint; :func:`backbone_checkpoint` resolves the file for
the preflight and raises :class:`CheckpointNotFoundError` with where to get it.

Use this module through :mod:`asvp.models.backbones`, which imports every backbone module
and so fills the registry. Neither module imports timm or torchvision: the factories do, when
a backbone is built.
"""

from __future__ import annotations

import copy
import inspect
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from asvp.data.transforms import InputConfig
from asvp.models.checkpoints import CheckpointNotFoundError
from asvp.options import Option, check_options, declared_options

CHECKPOINT_OPTION = "checkpoint"

# A process normally uses one backbone; two templates bound the memory (a ViT-B is 350 MB).
_TEMPLATE_CACHE_SIZE = 2


@dataclass
class Backbone:
    """A feature extractor, its output width and the identity of its weights.

    ``name`` identifies what the network computes from its weights: the registry name, plus
    the options that change the output for the same file (e.g. ``embedding=pooled``), so
    that features keyed by ``(name, weights_sha256)`` never collide. What its inputs must be
    (:class:`~asvp.data.transforms.InputConfig`) is declared with its registration
    (:func:`backbone_input`), so that it is known before any weight is read.
    """

    name: str
    network: nn.Module
    num_features: int
    weights_sha256: str


@dataclass(frozen=True)
class BackboneInput:
    """The inputs a registered backbone expects: its :class:`InputConfig` and whether it
    normalises with the dataset's own statistics instead (a network pre-trained on that
    dataset at its native size, as the CIFAR ResNet-18s are)."""

    config: InputConfig
    dataset_statistics: bool = False


Factory = Callable[..., Backbone]


@dataclass(frozen=True)
class RegisteredBackbone:
    """What :func:`register_backbone` recorded for a name: the factory, its declared options,
    the remedy printed when its checkpoint is missing (None: the weights are embedded) and the
    inputs it was pre-trained with."""

    factory: Factory
    options: dict[str, Option]
    remedy: str | None
    input: BackboneInput


_REGISTRY: dict[str, RegisteredBackbone] = {}
_TEMPLATES: OrderedDict[tuple, Backbone] = OrderedDict()


def register_backbone(
    name: str,
    *,
    input_config: InputConfig,
    dataset_statistics: bool = False,
    remedy: str | None = None,
) -> Callable[[Factory], Factory]:
    """Register ``factory(**options) -> Backbone`` under ``name``.

    ``input_config`` is what the network was pre-trained with (input size, interpolation, crop
    fraction, mean, std), as timm's ``pretrained_cfg`` travels with a timm model; with
    ``dataset_statistics`` it normalises with the dataset's own statistics instead.
    ``remedy`` says where to get the checkpoint; required when the factory takes one.
    """

    def decorate(factory: Factory) -> Factory:
        parameters = inspect.signature(factory).parameters.values()
        if any(parameter.kind is not parameter.KEYWORD_ONLY for parameter in parameters):
            raise TypeError(f"{factory.__name__}: options must be keyword-only")
        options = declared_options(factory)
        if CHECKPOINT_OPTION in options and not remedy:
            raise TypeError(f"backbone {name!r} takes a checkpoint: say where to get it")
        _REGISTRY[name] = RegisteredBackbone(
            factory, options, remedy, BackboneInput(input_config, dataset_statistics)
        )
        return factory

    return decorate


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def registered_backbone(name: str) -> RegisteredBackbone:
    """The registration of backbone ``name``; unknown names list the available ones."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown backbone {name!r}; available: {', '.join(available_backbones())}"
        )
    return _REGISTRY[name]


def backbone_input(name: str) -> BackboneInput:
    """The inputs the named backbone expects (declared at registration; reads nothing)."""
    return registered_backbone(name).input


def backbone_option_names(name: str) -> set[str]:
    """The options the named backbone accepts."""
    return set(registered_backbone(name).options)


def check_backbone_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical options (defaults filled in, file paths resolved, as strings).

    Raises ValueError (:class:`~asvp.options.OptionsError`) naming the backbone and, for each
    unknown, missing or invalid option, its value and what is expected. Reads no file: it
    runs at grid validation.
    """
    declared = registered_backbone(name).options
    checked = check_options(declared, options, f"backbone {name!r}")
    canonical = {}
    for key, option in declared.items():
        if key not in checked:
            canonical[key] = option.default
        elif option.annotation is Path:
            canonical[key] = str(Path(checked[key]).expanduser().resolve())
        else:
            canonical[key] = checked[key]
    return canonical


def backbone_checkpoint(name: str, options: Mapping[str, Any]) -> Path | None:
    """The checkpoint file the named backbone needs, resolved; None for embedded weights.

    Raises :class:`CheckpointNotFoundError` (with where to get the file) when it is missing.
    """
    canonical = check_backbone_options(name, options)
    if CHECKPOINT_OPTION not in canonical:
        return None
    path = Path(canonical[CHECKPOINT_OPTION])
    if not path.is_file():
        raise CheckpointNotFoundError(name, path, registered_backbone(name).remedy or "")
    return path


def load_backbone(name: str, **options: Any) -> Backbone:
    """A fresh copy of the named backbone with its pre-trained weights.

    The weights are read, checked and hashed once per process for each (name, options,
    file state); every call returns an independent network (fine-tuning one never changes
    the next round's starting point).
    """
    canonical = check_backbone_options(name, options)
    path = backbone_checkpoint(name, canonical)
    stamp = None
    if path is not None:
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        canonical[CHECKPOINT_OPTION] = path
    key = (name, tuple(sorted((k, str(v)) for k, v in canonical.items())), stamp)
    template = _TEMPLATES.get(key)
    if template is None:
        template = _REGISTRY[name].factory(**canonical)
        _TEMPLATES[key] = template
        while len(_TEMPLATES) > _TEMPLATE_CACHE_SIZE:
            _TEMPLATES.popitem(last=False)
    _TEMPLATES.move_to_end(key)
    return replace(template, network=copy.deepcopy(template.network))


def variant_name(name: str, **distinguishing: Any) -> str:
    """``name[k=v,...]`` for the options that change the output; ``name`` when none given."""
    if not distinguishing:
        return name
    return name + "[" + ",".join(f"{k}={v}" for k, v in sorted(distinguishing.items())) + "]"
