"""The backbone registry: named factories, their options, and a per-process template cache.

A backbone is registered as a factory ``f(**options) -> Backbone`` whose keyword-only
signature *is* its option schema, read and checked by :mod:`asvp.options`: a parameter
without default is required, its annotation (``bool``, ``str``, ``Literal[...]``, ``Path``,
``Annotated`` ranges) restricts the values, and a parameter named ``checkpoint`` (annotated
``Path``) is the weights file the user provides. The grid's
``backbone: {name: ..., checkpoint: ..., ...}`` mapping (minus ``name``) is passed as options.
Options are checked from the signature alone (:func:`check_backbone_options`), plus the
backbone's own ``check`` of their values where the signature cannot say it (the ``timm``
backbone: is ``model`` a timm model name?), so a grid can be validated without reading any
checkpoint; :func:`backbone_checkpoint` resolves the file for the preflight and raises
:class:`CheckpointNotFoundError` with where to get it.

A backbone's inputs and remedy are fixed at registration for a network of one architecture;
a backbone that builds many (``timm``) registers functions of its options instead, read by
:func:`backbone_input` and :func:`backbone_remedy` when given the options.

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
from typing import Any, TypeVar

import torch
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
T = TypeVar("T")
OptionsRule = Callable[[Mapping[str, Any]], T]
"""A function of a backbone's canonical options (:func:`check_backbone_options`)."""


@dataclass(frozen=True)
class RegisteredBackbone:
    """What :func:`register_backbone` recorded for a name: the factory, its declared options,
    the remedy printed when its checkpoint is missing (None: the weights are embedded), the
    inputs it was pre-trained with (or the function of its options that says them), its own
    check of option values and the builder of its network without weights."""

    factory: Factory
    options: dict[str, Option]
    remedy: str | OptionsRule[str] | None
    input_config: InputConfig | OptionsRule[InputConfig]
    dataset_statistics: bool = False
    check: OptionsRule[None] | None = None
    architecture: OptionsRule[nn.Module] | None = None

    @property
    def input(self) -> BackboneInput:
        """The inputs of a backbone that declares them whatever its options."""
        if callable(self.input_config):
            raise ValueError(f"{self.factory.__name__}: its inputs depend on its options")
        return BackboneInput(self.input_config, self.dataset_statistics)


_REGISTRY: dict[str, RegisteredBackbone] = {}
_TEMPLATES: OrderedDict[tuple, Backbone] = OrderedDict()


def register_backbone(
    name: str,
    *,
    input_config: InputConfig | OptionsRule[InputConfig],
    dataset_statistics: bool = False,
    remedy: str | OptionsRule[str] | None = None,
    check: OptionsRule[None] | None = None,
    architecture: OptionsRule[nn.Module] | None = None,
) -> Callable[[Factory], Factory]:
    """Register ``factory(**options) -> Backbone`` under ``name``.

    ``input_config`` is what the network was pre-trained with (input size, interpolation, crop
    fraction, mean, std), as timm's ``pretrained_cfg`` travels with a timm model; with
    ``dataset_statistics`` it normalises with the dataset's own statistics instead.
    ``remedy`` says where to get the checkpoint; required when the factory takes one.
    Where they depend on the options (one registration for many architectures), both may be
    functions of the canonical options; their docstrings' first lines describe them in
    ``asvp-bench list``. ``check(options)`` checks what the option types cannot (raising
    :class:`~asvp.options.OptionsError`); it runs at grid validation, so it reads no file.
    ``architecture(options)`` builds the network the factory returns, without its weights and
    reading no file, so that its size is known where its checkpoint is not
    (:func:`backbone_parameter_count`).
    """

    def decorate(factory: Factory) -> Factory:
        parameters = inspect.signature(factory).parameters.values()
        if any(parameter.kind is not parameter.KEYWORD_ONLY for parameter in parameters):
            raise TypeError(f"{factory.__name__}: options must be keyword-only")
        options = declared_options(factory)
        if CHECKPOINT_OPTION in options and not remedy:
            raise TypeError(f"backbone {name!r} takes a checkpoint: say where to get it")
        _REGISTRY[name] = RegisteredBackbone(
            factory, options, remedy, input_config, dataset_statistics, check, architecture
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


def backbone_input(name: str, options: Mapping[str, Any] | None = None) -> BackboneInput:
    """The inputs the named backbone expects (declared at registration; reads no file).

    ``options`` (the grid's, checked here) matter only to a backbone whose inputs depend on
    them (``timm``: its ``model``'s pretrained config); for it they are required.
    """
    registered = registered_backbone(name)
    if not callable(registered.input_config):
        return registered.input
    if options is None:
        raise ValueError(f"backbone {name!r}: its inputs depend on its options; pass them")
    config = registered.input_config(check_backbone_options(name, options))
    return BackboneInput(config, registered.dataset_statistics)


def backbone_remedy(name: str, options: Mapping[str, Any] | None = None) -> str | None:
    """Where to get the named backbone's checkpoint (None: its weights are embedded);
    for a backbone whose remedy depends on its options, for those ``options`` (checked
    here), or the rule's description without them."""
    remedy = registered_backbone(name).remedy
    if remedy is None or isinstance(remedy, str):
        return remedy
    if options is None:
        return describe_rule(remedy)
    return remedy(check_backbone_options(name, options))


def describe_rule(rule: Callable[..., Any]) -> str:
    """The first line of a registered function's docstring: what it computes, in words."""
    return (rule.__doc__ or rule.__name__).strip().split("\n", 1)[0]


def backbone_option_names(name: str) -> set[str]:
    """The options the named backbone accepts."""
    return set(registered_backbone(name).options)


def check_backbone_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical options (defaults filled in, file paths resolved, as strings).

    Raises ValueError (:class:`~asvp.options.OptionsError`) naming the backbone and, for each
    unknown, missing or invalid option (by its type, or by the backbone's own ``check``), its
    value and what is expected. Reads no file: it runs at grid validation.
    """
    registered = registered_backbone(name)
    declared = registered.options
    checked = check_options(declared, options, f"backbone {name!r}")
    canonical = {}
    for key, option in declared.items():
        if key not in checked:
            canonical[key] = option.default
        elif option.annotation is Path:
            canonical[key] = str(Path(checked[key]).expanduser().resolve())
        else:
            canonical[key] = checked[key]
    if registered.check is not None:
        registered.check(canonical)
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
        raise CheckpointNotFoundError(name, path, backbone_remedy(name, canonical) or "")
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


def backbone_parameter_count(name: str, options: Mapping[str, Any] | None = None) -> int:
    """The parameters of the network :func:`load_backbone` gives for ``name`` and ``options``,
    counted on a build of its architecture on the meta device (no weights, no file, no
    memory: a ViT-L's 300M parameters count in milliseconds, with or without its checkpoint);
    a backbone registered without an architecture is loaded."""
    canonical = check_backbone_options(name, options or {})
    architecture = _REGISTRY[name].architecture
    if architecture is None:
        network = load_backbone(name, **canonical).network
    else:
        with torch.device("meta"):
            network = architecture(canonical)
    return sum(parameter.numel() for parameter in network.parameters())


def variant_name(name: str, **distinguishing: Any) -> str:
    """``name[k=v,...]`` for the options that change the output; ``name`` when none given."""
    if not distinguishing:
        return name
    return name + "[" + ",".join(f"{k}={v}" for k, v in sorted(distinguishing.items())) + "]"
