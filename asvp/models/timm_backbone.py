"""Any timm architecture as a backbone, from a checkpoint file: ``name: timm``.

A grid names the architecture as timm does, optionally with its pretrained tag, and the
file holding its weights::

    backbone:
      name: timm
      options:
        model: vit_small_patch14_dinov2.lvd142m      # DINOv2 ViT-S/14
        checkpoint: ${ASVP_CHECKPOINTS}/dinov2_vits14.safetensors

- **Inputs**: timm's pretrained config of ``model`` (``timm.get_pretrained_cfg``, read without
  building the network): input size, interpolation, ``crop_pct``, mean and std; a grid's
  ``transform`` section overrides any of them (:mod:`asvp.recipe`). The test transform crops
  at the centre whatever the config's ``crop_mode`` (in timm 1.0.31, 131 of its 1,826
  pretrained configs say ``squash``, 6 ``border``); a model whose input is not square is
  refused.
- **Weights**: a timm state dict (the ``model.safetensors`` of the model's Hugging Face repo,
  ``hf.co/<hf_hub_id>``), as safetensors or a torch file, at the top level or under
  ``state_dict`` or ``model``. The network is ``timm.create_model(model, pretrained=False,
  num_classes=N)``, N the rows of the file's classifier weight (the pretrained config's
  ``classifier`` names it) or 0 for a headless file, and is loaded strictly
  (:func:`~asvp.models.checkpoints.load_strict`: missing, unexpected and misshaped keys
  listed). Files in their authors' original format (facebook's DINOv2 ``.pth``, OpenAI's CLIP
  ``.pt``) are refused by that check: timm converts them on loading, and the remedy says how
  to save the converted state dict (or use ``clip_vit_b16``/``clip_vit_b32`` for OpenAI's
  files).
- **Embedding**: the pooled pre-logits feature, what ``forward_head(forward_features(x),
  pre_logits=True)`` gives: the classifier is replaced by the identity
  (``reset_classifier(0)``), and the width is the model's ``head_hidden_size`` (where a
  pre-logits layer widens it) or ``num_features``.
- **Input size**: vision transformers that support it are built with timm's
  ``dynamic_img_size``, so a grid may feed them another size than the config's (DINOv2's 518
  px at 224); at the config's own size the position embedding is used unchanged.

The backbone's name holds the model (``timm[model=vit_small_patch14_dinov2.lvd142m]``), so
features stored for two models from one file name never collide.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from asvp.data.transforms import InputConfig
from asvp.hashing import file_sha256
from asvp.models.checkpoints import load_strict, read_checkpoint, require_mapping
from asvp.models.registry import Backbone, register_backbone, variant_name
from asvp.options import OptionError, OptionsError

if TYPE_CHECKING:
    from timm.models import PretrainedCfg

TIMM = "timm"
MODEL_OPTION = "model"
WRAPPERS = ("state_dict", "model")
"""Top-level keys under which training scripts nest a state dict."""
_SUGGESTIONS = 3


def _pretrained_cfg(model: str) -> PretrainedCfg:
    """timm's pretrained config of ``model`` (``arch`` or ``arch.tag``), read without building
    the network; :class:`OptionsError` on the ``model`` option for a name timm does not know
    (with the closest names), a tag it does not have, or an input it cannot be fed."""
    import timm

    arch, _, tag = model.partition(".")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=_SUGGESTIONS, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise _model_error(model, f"a timm architecture name (timm.list_models()){hint}")
    try:
        cfg = timm.get_pretrained_cfg(model, allow_unregistered=False)
    except RuntimeError:
        tags = ", ".join(timm.list_pretrained(arch + ".*")) or "none"
        raise _model_error(model, f"a pretrained tag of {arch!r} (timm has: {tags})") from None
    _, height, width = cfg.input_size
    if height != width:
        raise _model_error(model, f"a model with square inputs; {model} takes {height}x{width}")
    return cfg


def _model_error(model: str, expected: str) -> OptionsError:
    return OptionsError(f"backbone {TIMM!r}", [OptionError(MODEL_OPTION, model, expected)])


def check_timm_options(options: Mapping[str, Any]) -> None:
    """Check that ``model`` is a timm model with a pretrained config (at grid validation)."""
    _pretrained_cfg(options[MODEL_OPTION])


def timm_input(options: Mapping[str, Any]) -> InputConfig:
    """timm's pretrained config of options.model: input size, interpolation, crop, mean, std."""
    cfg = _pretrained_cfg(options[MODEL_OPTION])
    return InputConfig(
        cfg.input_size[-1],
        cfg.interpolation,
        cfg.crop_pct,
        tuple(cfg.mean),
        tuple(cfg.std),
    )


def timm_remedy(options: Mapping[str, Any]) -> str:
    """model.safetensors from the Hugging Face repo of options.model's pretrained config."""
    model = options[MODEL_OPTION]
    cfg = _pretrained_cfg(model)
    source = (
        f"model.safetensors from https://huggingface.co/{cfg.hf_hub_id}"
        if cfg.hf_hub_id
        else f"a timm state dict of {model} (its pretrained config names no Hugging Face repo)"
    )
    original = (
        f"the authors' original file ({cfg.url})"
        if cfg.url
        else "a file in its authors' original format (e.g. facebook's DINOv2 .pth, OpenAI's "
        "CLIP .pt; for OpenAI's ViT-B files the clip_vit_b16/clip_vit_b32 backbones read them)"
    )
    return (
        f"{source}, timm's weights for {cfg.architecture}.{cfg.tag}; "
        f"{original} must first be converted by timm: {_conversion(model)}"
    )


def _conversion(model: str) -> str:
    return (
        f"python -c \"import timm, safetensors.torch as st; m = timm.create_model('{model}', "
        "pretrained=True, pretrained_cfg_overlay={'file': 'ORIGINAL'}); "
        "st.save_file(m.state_dict(), 'OUT.safetensors')\""
    )


def _expected(model: str) -> str:
    return (
        f"expected a timm state dict of {model} (safetensors or torch; at the top level or "
        f"under {' or '.join(repr(key) for key in WRAPPERS)}), as timm's own model.safetensors; "
        f"an original-format file must first be converted by timm: {_conversion(model)}"
    )


def _state_dict(stored: Any, *, source: Path, expected: str) -> dict[str, Any]:
    """The state dict in a checkpoint: the file's top level, or its ``state_dict``/``model``
    entry when it has one that is a mapping (a training checkpoint)."""
    wrapper = next(
        (
            key
            for key in WRAPPERS
            if isinstance(stored, Mapping) and isinstance(stored.get(key), Mapping)
        ),
        None,
    )
    return dict(require_mapping(stored, wrapper, source=source, expected=expected))


def _classifier_rows(state: Mapping[str, Any], cfg: PretrainedCfg) -> int:
    """The classes of the file's classifier (rows of its weight), 0 when it has none."""
    names = cfg.classifier if isinstance(cfg.classifier, list | tuple) else [cfg.classifier]
    for name in names:
        weight = state.get(f"{name}.weight") if name else None
        if isinstance(weight, torch.Tensor) and weight.ndim >= 1:
            return int(weight.shape[0])
    return 0


def _build(model: str, num_classes: int) -> nn.Module:
    """``timm.create_model(model, pretrained=False, num_classes=...)``, with timm's
    ``dynamic_img_size`` where the model has it; its tensors left unfilled (built on the meta
    device, then given empty storage) when the network has no buffers, which skips the random
    draws that the strict load overwrites anyway."""
    import timm

    with torch.device("meta"):
        network = timm.create_model(model, pretrained=False, num_classes=num_classes)
    dynamic = {"dynamic_img_size": True} if hasattr(network, "dynamic_img_size") else {}
    if next(network.buffers(), None) is None:
        with torch.device("meta"):
            network = timm.create_model(model, pretrained=False, num_classes=num_classes, **dynamic)
        return network.to_empty(device="cpu")
    return timm.create_model(model, pretrained=False, num_classes=num_classes, **dynamic)


def embedding_width(network: nn.Module) -> int:
    """The width of a timm network's pre-logits feature: ``head_hidden_size`` where the model
    declares one (a pre-logits layer may widen it), else ``num_features``."""
    return int(getattr(network, "head_hidden_size", None) or network.num_features)


def load_timm_network(model: str, checkpoint: Path, trust: bool) -> nn.Module:
    """timm's ``model`` with the weights of ``checkpoint``, loaded strictly, classifier
    included (as many classes as the file's classifier has; none for a headless file)."""
    cfg = _pretrained_cfg(model)
    expected = _expected(model)
    stored = read_checkpoint(checkpoint, trust=trust, expected=expected)
    state = _state_dict(stored, source=checkpoint, expected=expected)
    network = _build(model, _classifier_rows(state, cfg))
    load_strict(network, state, source=checkpoint, expected=expected)
    return network


def timm_architecture(options: Mapping[str, Any]) -> nn.Module:
    """timm's ``model`` without a classifier and without weights."""
    return _build(options["model"], 0)


@register_backbone(
    TIMM,
    input_config=timm_input,
    remedy=timm_remedy,
    check=check_timm_options,
    architecture=timm_architecture,
)
def timm_backbone(*, model: str, checkpoint: Path, trust_checkpoint: bool = False) -> Backbone:
    """Any timm architecture (option model: its timm name) from a timm state-dict file,
    pooled pre-logits features."""
    network = load_timm_network(model, checkpoint, trust_checkpoint)
    network.reset_classifier(0)
    return Backbone(
        name=variant_name(TIMM, model=model),
        network=network,
        num_features=embedding_width(network),
        weights_sha256=file_sha256(checkpoint),
    )
