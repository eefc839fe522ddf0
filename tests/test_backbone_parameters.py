"""A backbone's size without its weights (:func:`asvp.models.backbones.backbone_parameter_count`):
each registered architecture, built on the meta device, has exactly the parameters of the
network its factory loads, and a backbone whose checkpoint is absent is still counted (what the
model-scale report needs for a grid of foundation models whose files are elsewhere)."""

from __future__ import annotations

import safetensors.torch
import timm
import torch
from checkpoint_fixtures import (
    write_byol_eman_checkpoint,
    write_clip_checkpoint,
    write_simclr_checkpoint,
    write_simsiam_checkpoint,
)

from asvp.models.backbones import (
    available_backbones,
    backbone_parameter_count,
    load_backbone,
)
from asvp.models.registry import registered_backbone

TIMM_MODEL = "vit_tiny_patch16_224"


def _loaded_parameters(name: str, **options) -> int:
    return sum(p.numel() for p in load_backbone(name, **options).network.parameters())


def _timm_checkpoint(path):
    torch.manual_seed(0)
    state = timm.create_model(TIMM_MODEL, pretrained=False).state_dict()
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, path)


def test_every_registered_backbone_can_be_counted_without_its_weights():
    assert [n for n in available_backbones() if registered_backbone(n).architecture is None] == []


def test_each_architecture_has_the_parameters_of_the_loaded_network(tmp_path):
    def written(write, name):
        path = tmp_path / name
        write(path)
        return path

    clip = written(write_clip_checkpoint, "clip.pt")
    cases = {
        "efficientnet_lite0": ("efficientnet_lite0", {}),
        "byol": ("resnet50_byol_eman", {"checkpoint": written(write_byol_eman_checkpoint, "b")}),
        "simsiam": (
            "resnet18_cifar_simsiam",
            {"checkpoint": written(write_simsiam_checkpoint, "s")},
        ),
        "simclr": ("resnet18_cifar_simclr", {"checkpoint": written(write_simclr_checkpoint, "c")}),
        "clip projected": ("clip_vit_b32", {"checkpoint": clip}),
        "clip pooled": ("clip_vit_b32", {"checkpoint": clip, "embedding": "pooled"}),
        "timm": ("timm", {"model": TIMM_MODEL, "checkpoint": written(_timm_checkpoint, "t")}),
    }
    counted = {}
    for case, (name, options) in cases.items():
        counted[case] = backbone_parameter_count(name, options)
        assert counted[case] == _loaded_parameters(name, **options), case
    assert counted["clip pooled"] < counted["clip projected"]  # without the projection


def test_a_backbone_whose_checkpoint_is_absent_is_counted(tmp_path):
    model = "vit_large_patch14_clip_quickgelu_224.openai"
    options = {"model": model, "checkpoint": tmp_path / "not-downloaded.safetensors"}
    with torch.device("meta"):
        reference = timm.create_model(model, pretrained=False, num_classes=0)
    expected = sum(p.numel() for p in reference.parameters())
    assert backbone_parameter_count("timm", options) == expected
    assert expected > 300_000_000  # ViT-L/14: about 304M
