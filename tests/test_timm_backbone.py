"""The ``timm`` backbone: any timm architecture from a timm state-dict file.

Checkpoints are random-initialised real architectures (DINOv2 ViT-S/14 without a classifier,
CLIP ViT-B/32 and ConvNeXt-T with a 1000-class one, as timm's own files for their default
tags are), written once per module with safetensors.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
import yaml
from torch import Tensor

from asvp.config import TransformConfig
from asvp.models.backbones import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    backbone_checkpoint,
    backbone_input,
    check_backbone_options,
    load_backbone,
)
from asvp.recipe import input_config
from benchmark.grid import GridError, expand_cells, load_grid
from benchmark.listing import registry_listing
from benchmark.preflight import preflight

REPO = Path(__file__).resolve().parents[1]
FOUNDATION = REPO / "experiments" / "foundation.yaml"

DINOV2 = "vit_small_patch14_dinov2"
CLIP = "vit_base_patch32_clip_224"
CONVNEXT = "convnext_tiny"
WIDTHS = {DINOV2: 384, CLIP: 768, CONVNEXT: 768}
CLASSIFIERS = {DINOV2: None, CLIP: "head.weight", CONVNEXT: "head.fc.weight"}
FEED = {DINOV2: 518, CLIP: 224, CONVNEXT: 224}  # each config's own size

# the foundation.yaml models, their checkpoint files and Hugging Face repos
FOUNDATION_MODELS = {
    "vit_small_patch14_dinov2.lvd142m": "dinov2_vits14.safetensors",
    "vit_base_patch14_dinov2.lvd142m": "dinov2_vitb14.safetensors",
    "vit_large_patch14_clip_quickgelu_224.openai": "clip_vitl14_openai.safetensors",
    "vit_base_patch16_siglip_224.webli": "siglip_vitb16_webli.safetensors",
    "convnext_tiny.fb_in22k_ft_in1k": "convnext_tiny_in22k_ft_in1k.safetensors",
}
REPOS = {
    "vit_small_patch14_dinov2.lvd142m": "timm/vit_small_patch14_dinov2.lvd142m",
    "vit_base_patch14_dinov2.lvd142m": "timm/vit_base_patch14_dinov2.lvd142m",
    "vit_large_patch14_clip_quickgelu_224.openai": "timm/vit_large_patch14_clip_224.openai",
    "vit_base_patch16_siglip_224.webli": "timm/vit_base_patch16_siglip_224.webli",
    "convnext_tiny.fb_in22k_ft_in1k": "timm/convnext_tiny.fb_in22k_ft_in1k",
}


def _random_state(model: str) -> dict[str, Tensor]:
    torch.manual_seed(0)
    network = timm.create_model(model, pretrained=False)
    return {key: value.contiguous() for key, value in network.state_dict().items()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, tuple[Path, dict[str, Tensor]]]:
    """Per model: a safetensors file of its random-initialised timm state dict, and the state."""
    folder = tmp_path_factory.mktemp("timm")
    written = {}
    for model in WIDTHS:
        state = _random_state(model)
        path = folder / f"{model}.safetensors"
        safetensors.torch.save_file(state, path)
        written[model] = path, state
    return written


def _images(size: int) -> Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(7))


def _pre_logits(model: str, state: dict[str, Tensor], images: Tensor) -> Tensor:
    """timm's own pooled pre-logits features of ``model`` holding ``state``."""
    reference = timm.create_model(model, pretrained=False, num_classes=_rows(model, state))
    reference.load_state_dict(state)
    with torch.no_grad():
        return reference.eval().forward_head(reference.forward_features(images), pre_logits=True)


def _rows(model: str, state: dict[str, Tensor]) -> int:
    key = CLASSIFIERS[model]
    return state[key].shape[0] if key else 0


# --- loading -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(WIDTHS))
def test_a_real_architecture_loads_strictly_and_gives_timms_pre_logits(checkpoints, model):
    path, state = checkpoints[model]
    assert (CLASSIFIERS[model] in state) if CLASSIFIERS[model] else "head.weight" not in state
    backbone = load_backbone("timm", model=model, checkpoint=str(path))
    assert backbone.name == f"timm[model={model}]"
    assert backbone.num_features == WIDTHS[model]
    loaded = backbone.network.state_dict()
    kept = {k: v for k, v in state.items() if not k.startswith(_head_prefix(model))}
    assert loaded.keys() == kept.keys()  # the classifier is dropped, everything else loaded
    for key, tensor in kept.items():
        assert torch.equal(loaded[key], tensor), key
    images = _images(FEED[model])
    with torch.no_grad():
        features = backbone.network.eval()(images)
    assert features.shape == (2, WIDTHS[model])
    torch.testing.assert_close(features, _pre_logits(model, state, images), rtol=1e-6, atol=1e-6)


def _head_prefix(model: str) -> str:
    """The classifier's keys, which the backbone drops after loading (none: a prefix that
    matches no key)."""
    return CLASSIFIERS[model].removesuffix("weight") if CLASSIFIERS[model] else "\0"


def test_a_classifier_of_any_width_is_loaded_then_dropped(tmp_path, checkpoints):
    """The network's classes are the file's classifier rows (10 here, not timm's 1000)."""
    _, state = checkpoints[CONVNEXT]
    state = dict(state)
    state["head.fc.weight"] = torch.randn(10, 768)
    state["head.fc.bias"] = torch.randn(10)
    path = tmp_path / "convnext-10.safetensors"
    safetensors.torch.save_file(state, path)
    backbone = load_backbone("timm", model=CONVNEXT, checkpoint=str(path))
    assert backbone.num_features == 768
    assert "head.fc.weight" not in backbone.network.state_dict()
    images = _images(64)
    with torch.no_grad():
        features = backbone.network.eval()(images)
    torch.testing.assert_close(features, _pre_logits(CONVNEXT, state, images), rtol=0, atol=0)


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_a_state_dict_nested_in_a_training_checkpoint_loads(tmp_path, checkpoints, wrapper):
    _, state = checkpoints[DINOV2]
    path = tmp_path / "dinov2.pth"
    torch.save({wrapper: state, "epoch": 3, "arch": DINOV2}, path)
    backbone = load_backbone("timm", model=DINOV2, checkpoint=str(path))
    assert torch.equal(backbone.network.state_dict()["cls_token"], state["cls_token"])


def _load_error(tmp_path: Path, state: dict[str, Tensor]) -> str:
    path = tmp_path / "edited.safetensors"
    safetensors.torch.save_file(state, path)
    with pytest.raises(CheckpointFormatError) as error:
        load_backbone("timm", model=DINOV2, checkpoint=str(path))
    message = str(error.value)
    assert str(path) in message
    assert f"a timm state dict of {DINOV2}" in message  # what is expected instead
    return message


def test_a_renamed_key_is_listed_as_missing_and_unexpected(tmp_path, checkpoints):
    state = dict(checkpoints[DINOV2][1])
    state["blocks.3.norm1.gamma"] = state.pop("blocks.3.norm1.weight")
    message = _load_error(tmp_path, state)
    assert "1 missing keys: blocks.3.norm1.weight" in message
    assert "1 unexpected keys: blocks.3.norm1.gamma" in message


def test_a_missing_key_is_listed(tmp_path, checkpoints):
    state = dict(checkpoints[DINOV2][1])
    del state["blocks.11.mlp.fc2.bias"]
    message = _load_error(tmp_path, state)
    assert "1 missing keys: blocks.11.mlp.fc2.bias" in message
    assert "unexpected" not in message


def test_a_wrong_shape_is_listed(tmp_path, checkpoints):
    state = dict(checkpoints[DINOV2][1])
    state["pos_embed"] = torch.zeros(1, 257, 384)  # a 224 px position embedding
    message = _load_error(tmp_path, state)
    assert "1 shape mismatches: pos_embed (1, 257, 384) in the file, (1, 1370, 384)" in message


def test_an_original_format_file_is_refused_with_how_to_convert_it(tmp_path, checkpoints):
    """facebook's DINOv2 files name the layer scale ``ls1.gamma`` and carry a mask token."""
    state = dict(checkpoints[DINOV2][1])
    state["mask_token"] = torch.zeros(1, 384)
    message = _load_error(tmp_path, state)
    assert "unexpected keys: mask_token" in message
    assert "pretrained_cfg_overlay={'file': 'ORIGINAL'}" in message


def test_a_missing_checkpoint_says_which_repo_holds_it(tmp_path):
    options = {"model": "vit_small_patch14_dinov2.lvd142m", "checkpoint": str(tmp_path / "x")}
    with pytest.raises(CheckpointNotFoundError) as error:
        backbone_checkpoint("timm", options)
    remedy = error.value.remedy
    assert (
        "model.safetensors from https://huggingface.co/timm/vit_small_patch14_dinov2.lvd142m"
        in (remedy)
    )
    assert "dinov2_vits14_pretrain.pth" in remedy  # the original file, to convert


# --- inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(FOUNDATION_MODELS))
def test_the_inputs_are_timms_pretrained_config(model):
    cfg = timm.get_pretrained_cfg(model)
    declared = backbone_input("timm", {"model": model, "checkpoint": "unused.safetensors"})
    assert not declared.dataset_statistics
    config = declared.config
    assert (config.size, config.size) == cfg.input_size[1:]
    assert (config.interpolation, config.crop_pct) == (cfg.interpolation, cfg.crop_pct)
    assert (config.mean, config.std) == (tuple(cfg.mean), tuple(cfg.std))


def test_a_grid_transform_overrides_the_pretrained_config():
    options = {"model": "vit_small_patch14_dinov2.lvd142m", "checkpoint": "unused.safetensors"}
    own = input_config("cifar10", "timm", TransformConfig(), options)
    assert (own.size, own.interpolation, own.crop_pct) == (518, "bicubic", 1.0)
    given = TransformConfig(size=224, interpolation="bilinear", mean=(0.5, 0.5, 0.5))
    overridden = input_config("cifar10", "timm", given, options)
    assert overridden == dataclasses.replace(
        own, size=224, interpolation="bilinear", mean=(0.5, 0.5, 0.5)
    )
    with pytest.raises(ValueError, match="depend on its options"):
        input_config("cifar10", "timm", given)


def test_a_vit_is_fed_the_grids_size(checkpoints):
    """DINOv2's config says 518 px; the backbone computes at 224 px too (timm's
    dynamic_img_size resamples the position embedding)."""
    path, _ = checkpoints[DINOV2]
    backbone = load_backbone("timm", model=DINOV2, checkpoint=str(path))
    with torch.no_grad():
        assert backbone.network.eval()(_images(224)).shape == (2, 384)


def test_the_listing_describes_the_timm_backbone():
    (entry,) = [b for b in registry_listing(["backbones"])["backbones"] if b["name"] == "timm"]
    assert "pretrained config" in entry["input"]
    assert "Hugging Face" in entry["checkpoint"]
    required = {option["name"] for option in entry["options"] if option["required"]}
    assert required == {"model", "checkpoint"}


# --- validation and the preflight ----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("vit_small_patch14_dinov", "did you mean vit_small_patch14_dinov2"),
        ("vit_small_patch14_dinov2.lvd", "timm has: vit_small_patch14_dinov2.lvd142m"),
        ("vit_base_patch16_sapiens2.fb", "square inputs"),
    ],
)
def test_a_model_timm_cannot_provide_is_refused_at_validation(tmp_path, model, expected):
    with pytest.raises(ValueError, match="backbone 'timm': model: got") as error:
        check_backbone_options("timm", {"model": model, "checkpoint": "x.safetensors"})
    assert expected in str(error.value)
    grid = yaml.safe_load(FOUNDATION.read_text())
    grid["datasets"][2]["backbone"]["options"]["model"] = model
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    with pytest.raises(GridError) as refused:
        load_grid(path)
    (line,) = [e for e in refused.value.errors if "datasets[2].backbone.options.model" in e]
    assert model in line and expected in line


def test_foundation_yaml_validates_with_each_models_inputs(monkeypatch, tmp_path):
    monkeypatch.setenv("ASVP_CHECKPOINTS", str(tmp_path / "checkpoints"))
    grid = load_grid(FOUNDATION)
    cells = expand_cells(grid)
    models = {cell.config.backbone_options["model"] for cell in cells}
    assert models == set(FOUNDATION_MODELS)
    sizes = {c.dataset_label: c.config.transform.size for c in cells}
    assert sizes["dinov2-vits14"] == sizes["dinov2-vitb14"] == 224  # the grid's override
    assert sizes["siglip-vitb16"] is None  # the model's own (224)


def test_foundation_yaml_preflight_lists_each_missing_checkpoint_and_its_source(
    monkeypatch, tmp_path
):
    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setenv("ASVP_CHECKPOINTS", str(checkpoints))
    monkeypatch.setenv("ASVP_DATA", str(tmp_path / "data"))
    grid = load_grid(FOUNDATION)
    settings = dataclasses.replace(grid.executor, kind="debug")
    found = preflight(grid, settings, f"sqlite:///{tmp_path / 'mlflow.db'}", True)
    missing = {
        problem.where: problem.remedy
        for problem in found.problems
        if problem.item == "checkpoint of backbone 'timm'"
    }
    assert set(missing) == {str(checkpoints / file) for file in FOUNDATION_MODELS.values()}
    for model, file in FOUNDATION_MODELS.items():
        remedy = missing[str(checkpoints / file)]
        assert f"https://huggingface.co/{REPOS[model]}" in remedy
        assert model in remedy
