"""CLIP ViT-B/16 and ViT-B/32 image towers (OpenAI weights) as timm vision transformers.

The official ASVP code wraps OpenAI's ``clip.load`` model and uses ``encode_image``: the
projected, unnormalised 512-d embedding (``docs/official-code.md`` section 4). Here the
image tower is timm's ``vit_base_patch16_clip_quickgelu_224`` /
``vit_base_patch32_clip_quickgelu_224`` (OpenAI's CLIP uses QuickGELU) built with a 512-d
head that holds the projection (``embedding: projected``, the default; the head bias is the
zero vector timm's converter adds), or without it (``embedding: pooled``: the 768-d
layer-normed class token before the projection). Inputs must be 224 x 224 (fixed position
embeddings).

Checkpoint formats (option ``format``):

- ``openai``: OpenAI's original file, the TorchScript archive ``clip.load`` downloads (e.g.
  ``ViT-B-16.pt``; fp16 weights, cast to fp32 as ``clip.load`` does on CPU), or a plain
  ``torch.save`` d dict with the same keys (open_clip's ``openai`` files). The image tower is
  under ``visual.``; the text tower is ignored. Keys are converted with timm's own
  ``_convert_openai_clip``.
- ``timm``: the timm model's own state dict (``head.weight``/``head.bias`` = projection), as a
  torch file or ``.safetensors`` (timm's ``.openai`` weights on the Hugging Face hub).
- ``auto`` (default): ``openai`` for a TorchScript archive or a dict with ``visual.*`` keys,
  otherwise ``timm``.

Deviations from the official code, on purpose: inputs are normalised with CLIP's own mean and
std (the official code normalises CLIP inputs with ImageNet statistics, see
``docs/official-code.md`` section 4); fine-tuning updates the image tower only (the official
code hands the whole CLIP model, text tower included, to the optimiser, where the text tower
receives no gradient).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from asvp.data.transforms import InputConfig
from asvp.hashing import file_sha256
from asvp.models.checkpoints import (
    CheckpointFormatError,
    is_torchscript_archive,
    load_strict,
    read_checkpoint,
    require_mapping,
    select_prefixed,
)
from asvp.models.registry import Backbone, Factory, register_backbone, variant_name

CLIP_INPUT = InputConfig(
    224,
    "bicubic",
    0.875,
    (0.48145466, 0.4578275, 0.40821073),
    (0.26862954, 0.26130258, 0.27577711),
)
"""CLIP's own interpolation and statistics (OpenAI's ``clip.load`` preprocessing), with the
official code's crop fraction (Resize 256 + CenterCrop 224), not OpenAI's (224 + 224)."""
TIMM_MODELS = {
    "clip_vit_b16": "vit_base_patch16_clip_quickgelu_224",
    "clip_vit_b32": "vit_base_patch32_clip_quickgelu_224",
}
PROJECTED_WIDTH = 512
POOLED_WIDTH = 768
OPENAI_PREFIX = "visual."
REMEDY = (
    "OpenAI's {file} (the file `clip.load` downloads) or a timm state dict of {model} "
    "(open_clip/timm `.openai` weights)"
)

Embedding = Literal["projected", "pooled"]
Format = Literal["auto", "timm", "openai"]


def _unfilled_clip_tower(model_name: str) -> nn.Module:
    """The timm CLIP image tower with its 512-d projection head, its tensors uninitialised.

    Built on the meta device and given empty storage: the strict load then sets every tensor
    (timm's ViT keeps no buffer outside its state dict), and the 86M random draws of a normal
    construction (about 2 s) are skipped.
    """
    import timm

    with torch.device("meta"):
        network = timm.create_model(model_name, pretrained=False, num_classes=PROJECTED_WIDTH)
    if next(network.buffers(), None) is not None:
        raise RuntimeError(f"timm's {model_name} has buffers: it cannot be built unfilled")
    return network.to_empty(device="cpu")


def _expected(backbone: str, fmt: str) -> str:
    model = TIMM_MODELS[backbone]
    openai = (
        f"OpenAI CLIP weights for {model}: the TorchScript archive clip.load downloads, or a "
        "dict with the same keys, the image tower under 'visual.'"
    )
    timm = f"a timm state dict of {model} with the 512-d projection head (head.*)"
    return "expected " + {"openai": openai, "timm": timm}.get(fmt, f"{openai}; or {timm}")


def _openai_to_timm(
    state: dict[str, Any], network: nn.Module, *, source: Path, expected: str
) -> dict[str, Any]:
    """OpenAI ``visual.*`` keys converted to timm's names, floats cast to fp32."""
    from timm.models.vision_transformer import _convert_openai_clip

    visual = select_prefixed(state, OPENAI_PREFIX, network, source=source, expected=expected)
    converted = _convert_openai_clip(visual, network, prefix="")
    return {
        key: value.float()
        if isinstance(value, torch.Tensor) and value.is_floating_point()
        else value
        for key, value in converted.items()
    }


def load_clip_tower(backbone: str, checkpoint: Path, fmt: str, trust: bool) -> nn.Module:
    """The projected image tower of ``backbone`` with the weights in ``checkpoint``."""
    network = _unfilled_clip_tower(TIMM_MODELS[backbone])
    archive = is_torchscript_archive(checkpoint)
    if archive and fmt == "timm":
        raise CheckpointFormatError(
            f"{checkpoint}: a TorchScript archive (OpenAI's format), but format is 'timm'; "
            "use format 'openai' or 'auto'"
        )
    expected = _expected(backbone, fmt)  # with format auto: both accepted formats
    stored = read_checkpoint(checkpoint, trust=trust, expected=expected)
    state = dict(require_mapping(stored, None, source=checkpoint, expected=expected))
    if fmt == "auto":
        openai = archive or any(str(key).startswith(OPENAI_PREFIX) for key in state)
        fmt = "openai" if openai else "timm"
    if fmt == "openai":
        state = _openai_to_timm(state, network, source=checkpoint, expected=expected)
    load_strict(network, state, source=checkpoint, expected=expected)
    return network


def _clip_backbone(
    backbone: str, checkpoint: Path, embedding: str, fmt: str, trust: bool
) -> Backbone:
    network = load_clip_tower(backbone, checkpoint, fmt, trust)
    width = PROJECTED_WIDTH
    if embedding == "pooled":
        network.reset_classifier(0)
        width = POOLED_WIDTH
    distinguishing = {"embedding": embedding} if embedding == "pooled" else {}
    return Backbone(
        name=variant_name(backbone, **distinguishing),
        network=network,
        num_features=width,
        weights_sha256=file_sha256(checkpoint),
    )


def _register_clip(backbone: str, title: str, openai_file: str) -> Factory:
    """Register the factory of a CLIP image tower; its keyword-only options are the same for
    every tower."""

    def factory(
        *,
        checkpoint: Path,
        embedding: Embedding = "projected",
        format: Format = "auto",
        trust_checkpoint: bool = False,
    ) -> Backbone:
        return _clip_backbone(backbone, checkpoint, embedding, format, trust_checkpoint)

    factory.__name__ = factory.__qualname__ = backbone
    factory.__doc__ = f"CLIP {title} image tower (OpenAI weights), 512-d projected or 768-d pooled."

    def architecture(options: Mapping[str, Any]) -> nn.Module:
        import timm

        width = PROJECTED_WIDTH if options.get("embedding", "projected") == "projected" else 0
        return timm.create_model(TIMM_MODELS[backbone], pretrained=False, num_classes=width)

    remedy = REMEDY.format(file=openai_file, model=TIMM_MODELS[backbone])
    return register_backbone(
        backbone, input_config=CLIP_INPUT, remedy=remedy, architecture=architecture
    )(factory)


clip_vit_b16 = _register_clip("clip_vit_b16", "ViT-B/16", "ViT-B-16.pt")
clip_vit_b32 = _register_clip("clip_vit_b32", "ViT-B/32", "ViT-B-32.pt")
