"""The paper's training recipe (issue 15, items 1, 2 and 4): each dataset x backbone family
resolves to the official code's transforms (``docs/official-code.md`` section 4), whose
training images are those of torchvision's own transforms after ``torch.manual_seed`` of the
same seed; grids override the backbone's inputs only when they say so."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from data_fixtures import write_cifar10, write_pets
from PIL import Image

from asvp.config import CellConfig, TransformConfig
from asvp.data import load_dataset
from asvp.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NO_AUGMENTATION,
    Augmentation,
    ImageTransform,
)
from asvp.recipe import resolve_transform
from benchmark.grid import expand_cells, load_grid

ROOT = Path(__file__).resolve().parents[1]
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
RRC_FLIP = Augmentation("random_resized_crop", flip=True)
CROP_FLIP = Augmentation("random_crop", flip=True, padding=4)
RRC_NO_FLIP = Augmentation("random_resized_crop")  # digits: no flip


def _resolved(dataset: str, backbone: str, **transform) -> ImageTransform:
    config = CellConfig(
        dataset=dataset,
        backbone=backbone,
        pipeline="random",
        strategy="random",
        train_method="ft",
        seed=0,
        budgets=(10,),
        transform=TransformConfig(**transform),
    )
    return resolve_transform(config)


@pytest.mark.parametrize(
    ("dataset", "backbone", "size", "resize", "augmentation", "mean"),
    [
        ("imagenet", "resnet50_byol_eman", 224, 256, RRC_FLIP, IMAGENET_MEAN),
        ("pets", "resnet50_byol_eman", 224, 256, RRC_FLIP, IMAGENET_MEAN),
        ("cifar10", "resnet50_byol_eman", 224, 256, RRC_FLIP, IMAGENET_MEAN),
        ("cifar10_lt", "resnet50_byol_eman", 224, 256, RRC_FLIP, IMAGENET_MEAN),
        ("imagenet", "clip_vit_b16", 224, 256, RRC_FLIP, CLIP_MEAN),
        ("cifar10", "resnet18_cifar_simsiam", 32, 32, CROP_FLIP, CIFAR10_STATS[0]),
        ("cifar100", "resnet18_cifar_simclr", 32, 32, CROP_FLIP, CIFAR100_STATS[0]),
        ("cifar10_lt", "resnet18_cifar_simsiam", 32, 32, CROP_FLIP, CIFAR10_STATS[0]),
        (
            "mnist5k",
            "efficientnet_lite0",
            224,
            256,
            Augmentation("random_resized_crop"),
            (0.5,) * 3,
        ),
    ],
)
def test_each_dataset_and_backbone_family_resolves_to_the_official_transform(
    dataset, backbone, size, resize, augmentation, mean
):
    transform = _resolved(dataset, backbone)
    assert transform.input.size == size
    assert transform.input.resize_size == resize  # files: Resize 256 + CenterCrop 224
    assert transform.augmentation == augmentation
    assert transform.input.mean == mean


def test_augment_none_and_the_grid_s_overrides():
    plain = _resolved("pets", "resnet50_byol_eman", augment="none")
    assert plain.augmentation == NO_AUGMENTATION
    tuned = _resolved(
        "cifar10",
        "resnet18_cifar_simsiam",
        size=40,
        interpolation="bicubic",
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    assert (tuned.input.size, tuned.input.interpolation) == (40, "bicubic")
    assert (tuned.input.mean, tuned.input.std) == ((0.5,) * 3, (0.25,) * 3)
    # fed above its native 32 px, CIFAR gets the random resized crop, not the padded crop
    assert tuned.augmentation == RRC_FLIP


def test_table2_resolves_every_dataset_to_the_official_transform():
    cells = expand_cells(load_grid(ROOT / "experiments" / "table2.yaml"))
    resolved = {c.config.dataset: resolve_transform(c.config) for c in cells}
    assert set(resolved) == {"imagenet", "cifar10", "cifar100", "cifar10_lt", "pets"}
    for transform in resolved.values():  # ResNet-50 BYOL-EMAN everywhere
        assert transform.augmentation == RRC_FLIP
        assert (transform.input.size, transform.input.resize_size) == (224, 256)
        assert (transform.input.interpolation, transform.input.mean) == ("bilinear", IMAGENET_MEAN)
        assert transform.input.std == IMAGENET_STD


def _official_images(official, images: list[Image.Image], seed: int) -> torch.Tensor:
    torch.manual_seed(seed)  # torchvision's transforms draw from the global generator
    return torch.stack([official(image) for image in images])


def test_cifar_resnet18_training_images_are_the_official_transform_s(tmp_path):
    """RandomCrop(32, padding=4) + flip + CIFAR statistics, image for image."""
    write_cifar10(tmp_path, train_per_class=2, test_per_class=1, seed=1)
    pool = load_dataset("cifar10", root=tmp_path).pool
    transform = _resolved("cifar10", "resnet18_cifar_simsiam")
    rows = np.arange(8)
    official = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(*CIFAR10_STATS),
        ]
    )
    expected = _official_images(official, [Image.fromarray(pool.images[r]) for r in rows], 11)
    ours = pool.batch(rows, transform, torch.Generator().manual_seed(11))
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)
    test = T.Compose([T.ToTensor(), T.Normalize(*CIFAR10_STATS)])  # 32 px: no resize
    torch.testing.assert_close(
        pool.batch(rows, transform),
        torch.stack([test(Image.fromarray(pool.images[r])) for r in rows]),
        rtol=0,
        atol=1e-6,
    )


def test_file_training_images_are_the_official_transform_s(tmp_path):
    """ImageNet and Pets: RandomResizedCrop(224) + flip + ImageNet statistics, on the PIL
    image, image for image (at 64 px, to stay small)."""
    write_pets(tmp_path, classes=2, trainval_per_class=3, test_per_class=1, seed=4)
    pool = load_dataset("pets", root=tmp_path).pool
    transform = _resolved("pets", "resnet50_byol_eman", size=64)
    official = T.Compose(
        [
            T.RandomResizedCrop(64),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    rows = np.arange(len(pool))
    images = [Image.open(pool.paths[r]).convert("RGB") for r in rows]
    expected = _official_images(official, images, 5)
    ours = pool.batch(rows, transform, torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)
    again = pool.batch(rows, transform, torch.Generator().manual_seed(5))
    assert torch.equal(ours, again)
    other = pool.batch(rows, transform, torch.Generator().manual_seed(6))
    assert not torch.equal(ours, other)


def _probe_then_tune(augmentation: Augmentation, features: str) -> dict[str, torch.Tensor]:
    from transform_data import transform_of

    from asvp.config import FineTuneConfig, LinearProbeConfig
    from asvp.data.images import ArrayImageSet
    from asvp.models.backbones import load_backbone
    from asvp.training import fine_tune

    rng = np.random.default_rng(2)
    data = ArrayImageSet(
        rng.integers(0, 256, (12, 20, 20, 3), dtype=np.uint8), rng.integers(0, 3, 12), 3
    )
    model = fine_tune(
        load_backbone("efficientnet_lite0"),
        data,
        np.arange(12),
        "lpft",
        FineTuneConfig(epochs=1, batch_size=6, milestones=()),
        LinearProbeConfig(epochs=2, batch_size=6, features=features),
        transform_of(16, (0.5,) * 3, (0.5,) * 3, augmentation),
        seed=1,
        device=torch.device("cpu"),
    )
    return {k: v.clone() for k, v in model.head.state_dict().items()}


def test_with_augmentation_the_linear_probe_re_encodes_augmented_images_every_epoch():
    """LP-FT as the official training_mode 3: ``auto`` is ``per_epoch`` when training images
    are augmented, and differs from the cheaper probe on features extracted once."""
    augmented = Augmentation("random_resized_crop", flip=True)
    auto = _probe_then_tune(augmented, "auto")
    per_epoch = _probe_then_tune(augmented, "per_epoch")
    once = _probe_then_tune(augmented, "once")
    assert all(torch.equal(auto[k], per_epoch[k]) for k in auto)
    assert not all(torch.equal(auto[k], once[k]) for k in auto)
    plain_auto = _probe_then_tune(NO_AUGMENTATION, "auto")
    plain_once = _probe_then_tune(NO_AUGMENTATION, "once")
    assert all(torch.equal(plain_auto[k], plain_once[k]) for k in plain_auto)
