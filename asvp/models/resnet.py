"""Self-supervised ResNet backbones of the paper, from the checkpoints their authors released.

- ``resnet50_byol_eman``: torchvision ResNet-50 (``fc`` = Identity, 2048-d pooled features)
  with the BYOL-EMAN ImageNet weights (amazon-science/exponential-moving-average-normalization,
  200 epochs). The file is a training checkpoint: ``["state_dict"]`` holds the whole BYOL
  model under ``module.`` (DataParallel); the backbone is the **online** network's,
  ``module.online_net.backbone.<torchvision key>`` (as the official ASVP code takes it);
  target network, neck (projector), predictor, ``epoch``, ``optimizer`` are ignored.
- ``resnet18_cifar_simsiam``: the SimSiam CIFAR variant of ResNet-18 (PatrickHua/SimSiam
  ``resnet18_cifar_variant1``: torchvision layout with a 3x3 stride-1 stem and no max-pool,
  512-d). File: ``["state_dict"]`` with the backbone under ``backbone.`` (the same tensors also
  appear under ``encoder.0.``, ignored).
- ``resnet18_cifar_simclr``: the same network from a SimCLR checkpoint with kuangliu-style
  names (``layerX.Y.shortcut.0/1`` for torchvision's ``downsample.0/1``, ``linear`` for
  ``fc``), a raw state dict or one under ``state_dict``. The official code strips 9
  characters without saying which prefix; here it is the option ``key_prefix`` (default
  ``"backbone."``, 9 characters).

After the prefix and renaming, a ResNet classifier (``fc.weight``, ``fc.bias``), which the
backbone replaces by Identity, is ignored like the other parts; every other key must match
the network exactly (:func:`asvp.models.checkpoints.load_strict`). Preprocessing: ImageNet
statistics for ResNet-50; for the CIFAR ResNet-18 the CIFAR-10 statistics the official code
uses for ``res18`` (``docs/official-code.md`` section 4).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from asvp.data.transforms import IMAGENET_MEAN, IMAGENET_STD, InputConfig
from asvp.hashing import file_sha256
from asvp.models.checkpoints import load_strict, read_checkpoint, require_mapping, select_prefixed
from asvp.models.registry import Backbone, register_backbone, variant_name

RESNET50_INPUT = InputConfig(224, "bilinear", 0.875, IMAGENET_MEAN, IMAGENET_STD)
"""torchvision's ImageNet evaluation (Resize 256 + CenterCrop 224, bilinear), the official
code's transform for the ResNet-50."""
CIFAR_RESNET18_INPUT = InputConfig(
    32, "bilinear", 1.0, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
)
"""32 px CIFAR images, no resize; normalised with the dataset's statistics (these are
CIFAR-10's, for a dataset without its own), as the official code does for the ResNet-18."""
_CLASSIFIER_KEYS = ("fc.weight", "fc.bias")
SIMCLR_KEY_PREFIX = "backbone."


def resnet50_features() -> nn.Module:
    """torchvision ResNet-50 without its classifier: (N, 3, S, S) -> (N, 2048)."""
    from torchvision.models import resnet50

    network = resnet50(weights=None)
    network.fc = nn.Identity()
    return network


def resnet18_cifar_features() -> nn.Module:
    """CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool, no classifier): -> (N, 512)."""
    from torchvision.models import resnet18

    network = resnet18(weights=None)
    network.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    network.maxpool = nn.Identity()
    network.fc = nn.Identity()
    return network


def _kuangliu_to_torchvision(key: str) -> str:
    key = key.replace(".shortcut.", ".downsample.")
    return "fc." + key[len("linear.") :] if key.startswith("linear.") else key


def _resnet_backbone(
    name: str,
    network: nn.Module,
    checkpoint: Path,
    *,
    trust: bool,
    wrapper: str | None,
    prefix: str,
    expected: str,
    num_features: int,
    rename: Callable[[str], str] = lambda key: key,
) -> Backbone:
    """``network`` with the backbone weights of ``checkpoint`` (under ``wrapper``, if any, and
    ``prefix``, keys renamed by ``rename``), a ResNet classifier in the file ignored."""
    stored = read_checkpoint(checkpoint, trust=trust, expected=expected)
    if wrapper is None and isinstance(stored, dict) and "state_dict" in stored:
        wrapper = "state_dict"
    state = require_mapping(stored, wrapper, source=checkpoint, expected=expected)
    selected = select_prefixed(
        state, prefix, network, source=checkpoint, expected=expected, rename=rename
    )
    backbone_state = {k: v for k, v in selected.items() if k not in _CLASSIFIER_KEYS}
    load_strict(network, backbone_state, source=checkpoint, expected=expected)
    return Backbone(
        name=name,
        network=network,
        num_features=num_features,
        weights_sha256=file_sha256(checkpoint),
    )


@register_backbone(
    "resnet50_byol_eman",
    input_config=RESNET50_INPUT,
    remedy="res50_byol_eman_200ep.pth.tar from "
    "github.com/amazon-science/exponential-moving-average-normalization "
    "(BYOL-EMAN 200 ep ImageNet)",
    architecture=lambda options: resnet50_features(),
)
def resnet50_byol_eman(*, checkpoint: Path, trust_checkpoint: bool = False) -> Backbone:
    """ResNet-50, BYOL-EMAN ImageNet weights (online network), 2048-d, ImageNet statistics."""
    return _resnet_backbone(
        "resnet50_byol_eman",
        resnet50_features(),
        checkpoint,
        trust=trust_checkpoint,
        wrapper="state_dict",
        prefix="module.online_net.backbone.",
        expected="expected a BYOL-EMAN checkpoint: a dict with 'state_dict' whose keys start "
        "with 'module.online_net.backbone.' followed by torchvision ResNet-50 names",
        num_features=2048,
    )


@register_backbone(
    "resnet18_cifar_simsiam",
    input_config=CIFAR_RESNET18_INPUT,
    dataset_statistics=True,
    remedy="the CIFAR-10 ResNet-18 SimSiam checkpoint (resnet18_cifar_variant1, 800 epochs) "
    "linked from the README of github.com/PatrickHua/SimSiam",
    architecture=lambda options: resnet18_cifar_features(),
)
def resnet18_cifar_simsiam(*, checkpoint: Path, trust_checkpoint: bool = False) -> Backbone:
    """CIFAR ResNet-18, PatrickHua/SimSiam weights, 512-d, CIFAR-10 statistics."""
    return _resnet_backbone(
        "resnet18_cifar_simsiam",
        resnet18_cifar_features(),
        checkpoint,
        trust=trust_checkpoint,
        wrapper="state_dict",
        prefix="backbone.",
        expected="expected a PatrickHua/SimSiam checkpoint: a dict with 'state_dict' whose "
        "keys start with 'backbone.' followed by CIFAR ResNet-18 names in torchvision naming "
        "(conv1, bn1, layer1-4 with downsample)",
        num_features=512,
    )


@register_backbone(
    "resnet18_cifar_simclr",
    input_config=CIFAR_RESNET18_INPUT,
    dataset_statistics=True,
    remedy="a SimCLR CIFAR ResNet-18 checkpoint with kuangliu-style names "
    "(layerX.Y.shortcut.*); the official ASVP code does not name its source. Set key_prefix "
    "to the prefix of its backbone keys",
    architecture=lambda options: resnet18_cifar_features(),
)
def resnet18_cifar_simclr(
    *, checkpoint: Path, key_prefix: str = SIMCLR_KEY_PREFIX, trust_checkpoint: bool = False
) -> Backbone:
    """CIFAR ResNet-18, SimCLR weights (kuangliu naming), 512-d, CIFAR-10 statistics."""
    distinguishing = {} if key_prefix == SIMCLR_KEY_PREFIX else {"key_prefix": key_prefix}
    return _resnet_backbone(
        variant_name("resnet18_cifar_simclr", **distinguishing),
        resnet18_cifar_features(),
        checkpoint,
        trust=trust_checkpoint,
        wrapper=None,
        prefix=key_prefix,
        rename=_kuangliu_to_torchvision,
        expected=f"expected a SimCLR CIFAR ResNet-18 state dict (raw or under 'state_dict') "
        f"whose keys start with key_prefix {key_prefix!r} followed by kuangliu-style "
        "ResNet-18 names (layerX.Y.shortcut.0/1 for downsample, linear for fc)",
        num_features=512,
    )
