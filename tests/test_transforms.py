"""The transforms of :mod:`asvp.data.transforms` against torchvision's own: the same crop boxes
and flips from the same seed, the same pixels from the same box, and batch generators that
depend on (seed, epoch, batch) alone (issue 15, items 1-2)."""

import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode, RandomCrop, RandomResizedCrop

from asvp.data.transforms import (
    Augmentation,
    ImageDraw,
    InputConfig,
    augment_tensor,
    batch_generator,
    draw_images,
    flip_draw,
    random_crop_box,
    random_resized_crop_box,
    resize,
)

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def _image(height=32, width=40, seed=0):
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shape", [(32, 32), (375, 500), (500, 333)])
def test_random_resized_crop_draws_torchvision_s_box(seed, shape):
    torch.manual_seed(seed)
    expected = RandomResizedCrop.get_params(torch.zeros(3, *shape), list(SCALE), list(RATIO))
    generator = torch.Generator().manual_seed(seed)
    assert random_resized_crop_box(*shape, SCALE, RATIO, generator) == expected


def test_random_resized_crop_falls_back_to_a_centred_box_like_torchvision():
    """A strip no allowed box fits in ten tries: the centred box of the extreme ratio."""
    shape, scale = (10, 400), (0.9, 1.0)
    torch.manual_seed(3)
    expected = RandomResizedCrop.get_params(torch.zeros(3, *shape), list(scale), list(RATIO))
    box = random_resized_crop_box(*shape, scale, RATIO, torch.Generator().manual_seed(3))
    assert box == expected == (0, (400 - 13) // 2, 10, 13)


@pytest.mark.parametrize("seed", range(4))
def test_random_crop_and_flip_draw_as_torchvision(seed):
    torch.manual_seed(seed)
    expected = RandomCrop.get_params(torch.zeros(3, 40, 40), (32, 32))  # 32 padded by 4
    expected_flip = bool(torch.rand(1) < 0.5)
    generator = torch.Generator().manual_seed(seed)
    assert random_crop_box(32, 32, 4, generator) == expected
    assert flip_draw(generator) == expected_flip


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_a_resized_crop_and_flip_are_torchvision_s_pixels(interpolation):
    image = _image(60, 80)
    augmentation = Augmentation("random_resized_crop", flip=True)
    draw = ImageDraw(box=(5, 7, 40, 50), flip=True)
    ours = augment_tensor(image, draw, augmentation, 24, interpolation)
    theirs = TF.resized_crop(image, 5, 7, 40, 50, [24, 24], MODES[interpolation], antialias=True)
    theirs = TF.hflip(theirs)
    if interpolation == "bicubic":
        theirs = theirs.clamp(0.0, 1.0)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_a_padded_random_crop_is_torchvision_s_pixels():
    image = _image(32, 32)
    augmentation = Augmentation("random_crop", flip=False, padding=4)
    draw = ImageDraw(box=(1, 6, 32, 32), flip=False)
    ours = augment_tensor(image, draw, augmentation, 32, "bilinear")
    theirs = TF.crop(TF.pad(image, 4, fill=0), 1, 6, 32, 32)
    assert torch.equal(ours, theirs)
    assert torch.equal(ours[:, :3, :], torch.zeros(3, 3, 32))  # the padding's zeros


def test_resize_matches_torchvision_and_leaves_the_right_size_alone():
    image = _image(28, 28)
    torch.testing.assert_close(
        resize(image, 48, "bilinear"),
        TF.resize(image, [48, 48], InterpolationMode.BILINEAR, antialias=True),
        rtol=0,
        atol=1e-6,
    )
    assert resize(image, 28, "bicubic") is image


def test_batch_generators_depend_on_seed_epoch_and_batch_only():
    def stream(*key):
        return torch.rand(4, generator=batch_generator(*key))

    assert torch.equal(stream(7, 2, 3), stream(7, 2, 3))
    others = [stream(8, 2, 3), stream(7, 3, 3), stream(7, 2, 4), stream(7, 3, 2)]
    assert all(not torch.equal(stream(7, 2, 3), other) for other in others)


def test_a_batch_draws_box_then_flip_image_by_image():
    augmentation = Augmentation("random_resized_crop", flip=True)
    sizes = [(32, 32), (60, 40)]
    draws = draw_images(augmentation, sizes, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    expected = []
    for height, width in sizes:
        box = random_resized_crop_box(height, width, SCALE, RATIO, generator)
        expected.append(ImageDraw(box, flip_draw(generator)))
    assert draws == expected
    assert draw_images(Augmentation(), sizes, generator) == [ImageDraw(None, False)] * 2


def test_the_input_config_s_resize_side_and_a_flip_without_augmentation():
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert InputConfig(224, "bilinear", 0.875, *imagenet).resize_size == 256
    assert InputConfig(224, "bicubic", 0.9, *imagenet).resize_size == 248  # timm: floor
    with pytest.raises(ValueError, match="cannot flip"):
        Augmentation("none", flip=True)
