"""The paper's backbones load their checkpoint formats exactly, and refuse anything else.

Checkpoints are written by :mod:`checkpoint_fixtures` in each real format from random weights;
full-size ViT-B files (about 170-340 MB) are written once per module.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from checkpoint_fixtures import (
    openai_clip_state,
    write_byol_eman_checkpoint,
    write_clip_checkpoint,
    write_simclr_checkpoint,
    write_simsiam_checkpoint,
)
from torch import Tensor, nn
from torchvision.models import ResNet, resnet18

from asvp.hashing import file_sha256
from asvp.models.backbones import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    backbone_checkpoint,
    backbone_input,
    backbone_option_names,
    check_backbone_options,
    load_backbone,
)
from asvp.models.resnet import resnet18_cifar_features, resnet50_features

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
IMAGENET_MEAN = (0.485, 0.456, 0.406)


def _features(network: torch.nn.Module, size: int) -> Tensor:
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return network.eval()(images)


def _assert_state_equals(network: torch.nn.Module, expected: dict[str, Tensor]) -> None:
    loaded = network.state_dict()
    assert loaded.keys() == expected.keys()
    for key, tensor in expected.items():
        assert loaded[key].dtype == tensor.dtype, key
        assert torch.equal(loaded[key], tensor), key


def _assert_features_of(backbone, build, expected: dict[str, Tensor], size: int) -> None:
    """The backbone computes what a network from ``build`` holding ``expected`` computes."""
    reference = build()
    reference.load_state_dict(expected)
    features = _features(backbone.network, size)
    assert features.shape == (2, backbone.num_features)
    torch.testing.assert_close(features, _features(reference, size))


# --- ResNets -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def byol_eman(tmp_path_factory) -> tuple[Path, dict[str, Tensor]]:
    path = tmp_path_factory.mktemp("byol") / "res50_byol_eman_200ep.pth.tar"
    return path, write_byol_eman_checkpoint(path)


@pytest.fixture(scope="module")
def simsiam(tmp_path_factory) -> tuple[Path, dict[str, Tensor]]:
    path = tmp_path_factory.mktemp("simsiam") / "simsiam-cifar10.pth"
    return path, write_simsiam_checkpoint(path)


def test_byol_eman_loads_the_online_backbone_bit_for_bit(byol_eman):
    path, expected = byol_eman
    backbone = load_backbone("resnet50_byol_eman", checkpoint=str(path))
    _assert_state_equals(backbone.network, expected)
    assert backbone.name == "resnet50_byol_eman"
    assert backbone.num_features == 2048
    assert backbone_input("resnet50_byol_eman").config.mean == IMAGENET_MEAN
    assert backbone.weights_sha256 == file_sha256(path)
    _assert_features_of(backbone, resnet50_features, expected, 64)


def test_simsiam_loads_the_cifar_resnet18_bit_for_bit(simsiam):
    path, expected = simsiam
    backbone = load_backbone("resnet18_cifar_simsiam", checkpoint=path)
    _assert_state_equals(backbone.network, expected)
    declared = backbone_input("resnet18_cifar_simsiam")
    assert (backbone.num_features, declared.config.mean) == (512, CIFAR10_MEAN)
    assert declared.config.std == (0.2470, 0.2435, 0.2616) and declared.dataset_statistics
    assert backbone.weights_sha256 == file_sha256(path)
    _assert_features_of(backbone, resnet18_cifar_features, expected, 32)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"wrapped": True, "with_classifier": True},
        {"key_prefix": "encoder.module."},
    ],
)
def test_simclr_kuangliu_names_map_to_torchvision(tmp_path, options):
    path = tmp_path / "simclr.pt"
    expected = write_simclr_checkpoint(path, seed=3, **options)
    prefix = options.get("key_prefix")
    backbone = load_backbone(
        "resnet18_cifar_simclr", checkpoint=path, **({"key_prefix": prefix} if prefix else {})
    )
    _assert_state_equals(backbone.network, expected)
    assert any(".downsample." in key for key in expected)
    assert backbone.num_features == 512
    assert backbone_input("resnet18_cifar_simclr").config.mean == CIFAR10_MEAN
    suffix = f"[key_prefix={prefix}]" if prefix else ""
    assert backbone.name == "resnet18_cifar_simclr" + suffix
    _assert_features_of(backbone, resnet18_cifar_features, expected, 32)


def test_the_resnet_builders_are_the_papers_architectures():
    """Pinned here, not by a second copy of the builders (the fixtures write checkpoints with
    them): torchvision ResNets without classifier; the CIFAR ResNet-18 (SimSiam's
    ``resnet18_cifar_variant1``) has a 3x3 stride-1 stem and no max-pool."""
    resnet50 = resnet50_features()
    assert isinstance(resnet50, ResNet) and isinstance(resnet50.fc, nn.Identity)
    assert [len(layer) for layer in (resnet50.layer1, resnet50.layer2, resnet50.layer3)] == [
        3,
        4,
        6,
    ]
    assert _features(resnet50, 64).shape == (2, 2048)
    cifar = resnet18_cifar_features()
    stem = cifar.conv1
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride) == (
        3,
        64,
        (3, 3),
        (1, 1),
    )
    assert (stem.padding, stem.bias) == ((1, 1), None)
    assert isinstance(cifar.maxpool, nn.Identity) and isinstance(cifar.fc, nn.Identity)
    plain = {k: v.shape for k, v in resnet18(weights=None).state_dict().items()}
    assert {k: v.shape for k, v in cifar.state_dict().items() if k != "conv1.weight"} == {
        k: shape for k, shape in plain.items() if k != "conv1.weight" and not k.startswith("fc.")
    }
    assert _features(cifar, 32).shape == (2, 512)


def test_two_loads_return_independent_networks(simsiam):
    path, expected = simsiam
    first = load_backbone("resnet18_cifar_simsiam", checkpoint=path)
    second = load_backbone("resnet18_cifar_simsiam", checkpoint=path)
    assert first.network is not second.network
    with torch.no_grad():
        first.network.conv1.weight.add_(1.0)
    assert torch.equal(second.network.conv1.weight, expected["conv1.weight"])
    third = load_backbone("resnet18_cifar_simsiam", checkpoint=path)
    assert torch.equal(third.network.conv1.weight, expected["conv1.weight"])


def test_a_rewritten_file_is_read_again(tmp_path):
    path = tmp_path / "simsiam.pth"
    write_simsiam_checkpoint(path, seed=0)
    load_backbone("resnet18_cifar_simsiam", checkpoint=path)
    expected = write_simsiam_checkpoint(path, seed=1)
    later = path.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))
    _assert_state_equals(load_backbone("resnet18_cifar_simsiam", checkpoint=path).network, expected)


# --- strict key mapping ----------------------------------------------------------------------


def _edited_simsiam(tmp_path: Path, source: Path, edit) -> Path:
    stored = torch.load(source, weights_only=True)
    edit(stored["state_dict"])
    path = tmp_path / "edited.pth"
    torch.save(stored, path)
    return path


def _refusal(path: Path, name: str = "resnet18_cifar_simsiam", **options) -> str:
    with pytest.raises(CheckpointFormatError) as caught:
        load_backbone(name, checkpoint=path, **options)
    return str(caught.value)


def test_unexpected_keys_are_listed_with_their_count(tmp_path, simsiam):
    def add(state):
        for i in range(12):
            state[f"backbone.extra{i:02d}.weight"] = torch.zeros(1)

    message = _refusal(_edited_simsiam(tmp_path, simsiam[0], add))
    assert "12 unexpected keys: extra00.weight" in message
    assert "extra09.weight, ... (2 more)" in message
    assert "expected a PatrickHua/SimSiam checkpoint" in message
    assert "missing" not in message


def test_missing_keys_are_listed(tmp_path, simsiam):
    def drop(state):
        del state["backbone.layer1.0.conv1.weight"]
        del state["backbone.bn1.running_var"]

    message = _refusal(_edited_simsiam(tmp_path, simsiam[0], drop))
    assert "2 missing keys: bn1.running_var, layer1.0.conv1.weight" in message


def test_misshaped_keys_are_listed_with_both_shapes(tmp_path, simsiam):
    def reshape(state):
        state["backbone.conv1.weight"] = torch.zeros(64, 3, 7, 7)

    message = _refusal(_edited_simsiam(tmp_path, simsiam[0], reshape))
    assert "1 shape mismatches: conv1.weight (64, 3, 7, 7) in the file" in message
    assert "(64, 3, 3, 3) in the network" in message


def test_absent_batchnorm_counters_are_the_only_tolerated_gap(tmp_path, simsiam):
    def drop_counters(state):
        for key in [k for k in state if k.endswith("num_batches_tracked")]:
            del state[key]

    path = _edited_simsiam(tmp_path, simsiam[0], drop_counters)
    network = load_backbone("resnet18_cifar_simsiam", checkpoint=path).network
    expected = simsiam[1]
    for key, value in network.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert int(value) == 0
        else:
            assert torch.equal(value, expected[key]), key


def test_a_wrong_prefix_lists_the_prefixes_found(tmp_path, simsiam):
    message = _refusal(simsiam[0], "resnet18_cifar_simclr", key_prefix="model.")
    assert "no key starts with 'model.'" in message
    count = len(simsiam[1])
    assert f"'backbone.' ({count} keys), 'encoder.0.' ({count} keys)" in message

    def add_module_prefix(state):
        for key in list(state):
            state["module." + key] = state.pop(key)

    message = _refusal(_edited_simsiam(tmp_path, simsiam[0], add_module_prefix))
    assert "no key starts with 'backbone.'" in message
    assert "'module.backbone.'" in message


BYOL_EXPECTED = (
    "expected a BYOL-EMAN checkpoint: a dict with 'state_dict' whose keys start with "
    "'module.online_net.backbone.'"
)


def _zip_of_text(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not weights")


def _truncated(path: Path, zipped: bool = True) -> None:
    state = {"state_dict": {"w": torch.zeros(1000)}}
    torch.save(state, path, _use_new_zipfile_serialization=zipped)
    path.write_bytes(path.read_bytes()[: 300 if zipped else 40])


@pytest.mark.parametrize(
    ("write", "found"),
    [
        (lambda path: path.write_bytes(b""), "found an empty file (0 bytes"),
        (
            lambda path: path.write_bytes(b"\x00\x13garbage\xff" * 20),
            "found a file of 200 bytes that is not a pickle, zip or safetensors file: "
            "b'\\x00\\x13garbage\\xff",
        ),
        (
            lambda path: path.write_text("<html>Google Drive: virus scan warning</html>"),
            "not a pickle, zip or safetensors file: text starting '<html>Google Drive",
        ),
        (_zip_of_text, "found a zip archive that is not a PyTorch checkpoint (it holds notes.txt)"),
        (_truncated, "found a zip file that cannot be opened, a truncated or corrupt one?"),
        (
            lambda path: _truncated(path, zipped=False),
            "found a pickle that cannot be read to the end (EOFError): a truncated or corrupt",
        ),
        (
            lambda path: torch.save({"model": {"w": torch.zeros(1)}, "epoch": 3}, path),
            "found a dict with top-level keys ['epoch', 'model'] (dicts under ['model']",
        ),
        (
            lambda path: torch.save({"conv.weight": torch.zeros(1)}, path),
            "found a dict of 1 tensor (first keys: ['conv.weight'])",
        ),
    ],
    ids=[
        "empty",
        "garbage",
        "html",
        "zip",
        "truncated-zip",
        "truncated-pickle",
        "wrong-top-level",
        "tensors",
    ],
)
def test_an_unusable_file_is_named_with_what_it_holds_and_the_format_expected(
    tmp_path, write, found
):
    path = tmp_path / "model.pth"
    write(path)
    message = _refusal(path, "resnet50_byol_eman")
    assert message.startswith(f"{path}: ")
    assert found in message
    assert BYOL_EXPECTED in message  # the format this backbone accepts
    assert "EOFError: )" not in message


def test_a_dict_that_matches_no_parameter_names_every_accepted_format(tmp_path):
    path = tmp_path / "trainer.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "optimizer": {}, "epoch": 3}, path)
    message = _refusal(path, "clip_vit_b32")  # format auto: OpenAI's and timm's
    assert "found a dict with top-level keys ['epoch', 'model', 'optimizer']" in message
    assert "none of its keys is a parameter of this network" in message
    assert "expected OpenAI CLIP weights" in message and "or a timm state dict" in message
    message = _refusal(path, "resnet18_cifar_simclr")
    assert (
        "no key starts with 'backbone.'" in message and "['epoch', 'model', 'optimizer']" in message
    )
    assert "expected a SimCLR CIFAR ResNet-18 state dict" in message
    path.write_bytes(b"")
    assert "found an empty file" in _refusal(path, "clip_vit_b32")
    assert "or a timm state dict" in _refusal(path, "clip_vit_b32")


def test_pickled_objects_need_trust_checkpoint(tmp_path, simsiam):
    stored = torch.load(simsiam[0], weights_only=True)
    stored["args"] = argparse.Namespace(arch="resnet18")
    path = tmp_path / "with-args.pth"
    torch.save(stored, path)
    message = _refusal(path)
    assert "argparse.Namespace" in message and "trust_checkpoint: true" in message
    loaded = load_backbone("resnet18_cifar_simsiam", checkpoint=path, trust_checkpoint=True)
    _assert_state_equals(loaded.network, simsiam[1])


# --- missing files and option checking -------------------------------------------------------


def test_a_missing_file_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointNotFoundError) as caught:
        load_backbone("resnet50_byol_eman", checkpoint="weights/res50.pth.tar")
    error = caught.value
    assert isinstance(error, FileNotFoundError)
    assert error.backbone == "resnet50_byol_eman"
    assert error.path == tmp_path.resolve() / "weights" / "res50.pth.tar"
    assert "res50_byol_eman_200ep.pth.tar" in error.remedy
    assert "exponential-moving-average-normalization" in error.remedy
    for part in (error.backbone, str(error.path), error.remedy):
        assert part in str(error)
    with pytest.raises(CheckpointNotFoundError, match="ViT-B-16.pt"):
        backbone_checkpoint("clip_vit_b16", {"checkpoint": tmp_path / "ViT-B-16.pt"})


def test_backbone_checkpoint_resolves_the_file(tmp_path, monkeypatch):
    (tmp_path / "simsiam.pth").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    path = backbone_checkpoint("resnet18_cifar_simsiam", {"checkpoint": "simsiam.pth"})
    assert path == tmp_path.resolve() / "simsiam.pth"
    assert backbone_checkpoint("efficientnet_lite0", {}) is None


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("clip_vit_b32", {}, r"checkpoint: got '<missing>'; expected a file path \(required\)"),
        (
            "clip_vit_b32",
            {"checkpoint": "x", "embedding": "cls"},
            "embedding: got 'cls'; expected one of: pooled, projected",
        ),
        (
            "clip_vit_b32",
            {"checkpoint": "x", "format": "onnx"},
            "format: got 'onnx'; expected one of: auto, openai, timm",
        ),
        (
            "resnet50_byol_eman",
            {"checkpoint": "x", "prefix": "a."},
            r"prefix: got 'a.'; expected a known option; allowed: checkpoint \(required\), "
            r"trust_checkpoint \(default False\)",
        ),
        ("resnet50_byol_eman", {"checkpoint": 5}, "checkpoint: got 5; expected a file path"),
        (
            "resnet18_cifar_simclr",
            {"checkpoint": "x", "trust_checkpoint": "yes"},
            "trust_checkpoint: got 'yes'; expected true or false",
        ),
        (
            "efficientnet_lite0",
            {"checkpoint": "x"},
            "checkpoint: got 'x'; expected a known option; allowed: none",
        ),
        ("resnet101", {}, "unknown backbone 'resnet101'"),
    ],
)
def test_option_errors_name_the_option_and_what_is_expected(name, options, match):
    with pytest.raises(ValueError, match=match):
        check_backbone_options(name, options)


def test_option_checking_reads_no_file():
    canonical = check_backbone_options("clip_vit_b16", {"checkpoint": "/nonexistent/ViT-B-16.pt"})
    assert canonical == {
        "checkpoint": "/nonexistent/ViT-B-16.pt",
        "embedding": "projected",
        "format": "auto",
        "trust_checkpoint": False,
    }
    assert backbone_option_names("resnet18_cifar_simclr") == {
        "checkpoint",
        "key_prefix",
        "trust_checkpoint",
    }


# --- CLIP ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_b32(tmp_path_factory) -> tuple[dict[str, Path], dict[str, Tensor]]:
    """The same ViT-B/32 weights as a timm dict, an OpenAI-keyed dict and a TorchScript
    archive, and the state dict the timm network must hold."""
    folder = tmp_path_factory.mktemp("clip_b32")
    paths = {fmt: folder / f"{fmt}.pt" for fmt in ("timm", "openai", "openai_jit")}
    expected = [write_clip_checkpoint(path, "b32", fmt, seed=0) for fmt, path in paths.items()]
    return paths, expected[0]


def _openai_encode_image(state: dict[str, Tensor], images: Tensor, patch: int) -> Tensor:
    """OpenAI CLIP's ``encode_image``, written out from its published architecture."""
    weights = {key: value.float() for key, value in state.items() if key.startswith("visual.")}

    def norm(x: Tensor, name: str) -> Tensor:
        return F.layer_norm(x, (768,), weights[name + ".weight"], weights[name + ".bias"])

    def linear(x: Tensor, name: str) -> Tensor:
        return x @ weights[name + ".weight"].t() + weights[name + ".bias"]

    x = F.conv2d(images, weights["visual.conv1.weight"], stride=patch).flatten(2).transpose(1, 2)
    cls = weights["visual.class_embedding"].expand(len(images), 1, 768)
    x = norm(torch.cat([cls, x], 1) + weights["visual.positional_embedding"], "visual.ln_pre")
    for block in range(12):
        p = f"visual.transformer.resblocks.{block}."
        h = norm(x, p + "ln_1")
        qkv = h @ weights[p + "attn.in_proj_weight"].t() + weights[p + "attn.in_proj_bias"]
        q, k, v = (t.unflatten(-1, (12, 64)).transpose(1, 2) for t in qkv.chunk(3, -1))
        attended = torch.softmax(q @ k.transpose(-1, -2) / 8.0, -1) @ v
        x = x + linear(attended.transpose(1, 2).flatten(2), p + "attn.out_proj")
        h = linear(norm(x, p + "ln_2"), p + "mlp.c_fc")
        x = x + linear(h * torch.sigmoid(1.702 * h), p + "mlp.c_proj")
    return norm(x[:, 0], "visual.ln_post") @ weights["visual.proj"]


def test_clip_formats_load_the_same_weights_bit_for_bit(clip_b32):
    paths, expected = clip_b32
    features = {}
    for fmt, path in paths.items():
        backbone = load_backbone("clip_vit_b32", checkpoint=path)
        _assert_state_equals(backbone.network, expected)
        assert (backbone.name, backbone.num_features) == ("clip_vit_b32", 512)
        assert backbone_input("clip_vit_b32").config.mean == CLIP_MEAN
        assert backbone.weights_sha256 == file_sha256(path)
        features[fmt] = _features(backbone.network, 224)
    assert features["timm"].shape == (2, 512)
    assert torch.equal(features["timm"], features["openai"])
    assert torch.equal(features["timm"], features["openai_jit"])
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    reference = _openai_encode_image(torch.load(paths["openai"]), images, patch=32)
    torch.testing.assert_close(features["openai"], reference, rtol=1e-4, atol=1e-4)

    pooled = load_backbone("clip_vit_b32", checkpoint=paths["timm"], embedding="pooled")
    assert (pooled.name, pooled.num_features) == ("clip_vit_b32[embedding=pooled]", 768)
    pooled_features = _features(pooled.network, 224)
    assert pooled_features.shape == (2, 768)
    projection = expected["head.weight"].t()
    torch.testing.assert_close(pooled_features @ projection, features["timm"])


def test_clip_b16_from_an_openai_archive(tmp_path):
    path = tmp_path / "ViT-B-16.pt"
    expected = write_clip_checkpoint(path, "b16", "openai_jit", seed=1)
    backbone = load_backbone("clip_vit_b16", checkpoint=path, format="openai")
    _assert_state_equals(backbone.network, expected)
    assert backbone.num_features == 512
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    reference = _openai_encode_image(openai_clip_state(expected), images, patch=16)
    torch.testing.assert_close(_features(backbone.network, 224), reference, rtol=1e-4, atol=1e-4)


def test_clip_format_errors(tmp_path, clip_b32):
    paths = clip_b32[0]
    message = _refusal(paths["openai_jit"], "clip_vit_b32", format="timm")
    assert "TorchScript archive" in message
    message = _refusal(paths["timm"], "clip_vit_b32", format="openai")
    assert "no key starts with 'visual.'" in message and "'' (153 keys)" in message
    path = tmp_path / "b16-patches.pt"
    torch.save({"visual.conv1.weight": torch.zeros(768, 3, 16, 16), "logit_scale": 0.0}, path)
    message = _refusal(path, "clip_vit_b32")
    assert "152 missing keys" in message and "expected OpenAI CLIP weights" in message
    assert "patch_embed.proj.weight (768, 3, 16, 16) in the file, (768, 3, 32, 32)" in message
