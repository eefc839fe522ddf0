"""Image transforms as the official code trains and tests, with every random draw reproducible.

What a backbone expects travels with it, as timm's ``pretrained_cfg`` travels with a timm model:
:class:`InputConfig` (input size, interpolation, crop fraction, mean and std). What a dataset
does to its images depends on the dataset and the backbone (``docs/official-code.md`` section
4):

- test (feature extraction, pool scoring, evaluation): images in memory (CIFAR, MNIST) are
  resized whole to the input size ("Resize 224" for CIFAR at 224 px; nothing at 32 px); image
  files (ImageNet, Pets) have their shorter side resized to ``floor(size / crop_pct)`` and are
  centre-cropped (Resize 256 + CenterCrop 224 at ``crop_pct`` 0.875);
- training, :class:`Augmentation`: ``random_resized_crop`` (torchvision's RandomResizedCrop:
  scale 0.08-1, aspect ratio 3/4-4/3, then resized to the input size) + horizontal flip for
  ImageNet, Pets and CIFAR with ImageNet-scale networks; ``random_crop`` (RandomCrop 32 with 4
  px of zero padding) + flip for CIFAR with the CIFAR ResNet-18; ``none``.

Every crop box and flip is drawn here, from a :class:`torch.Generator` that
:func:`batch_generator` derives from (seed, epoch, batch); the seed is the fine-tune's, itself
derived from the cell's seed and round. So a batch's augmentation does not depend on which
process decodes it (loader workers or the main process), on what ran before, or on a resume.
The draws are torchvision's own algorithm in torchvision's order (:func:`random_resized_crop_box`
gives the box ``RandomResizedCrop.get_params`` gives after ``torch.manual_seed`` of the same
seed), applied with torchvision's functional operations on files and with the same tensor
operations on images in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Interpolation = Literal["bilinear", "bicubic"]
"""How an image is resized: torchvision's and timm's names."""

AugmentationKind = Literal["none", "random_resized_crop", "random_crop"]

CropBox = tuple[int, int, int, int]
"""``(top, left, height, width)`` of a crop, as torchvision's ``get_params`` return it."""


@dataclass(frozen=True)
class InputConfig:
    """What a backbone expects: ``size`` x ``size`` inputs, resized with ``interpolation``,
    normalised as ``(x - mean) / std`` on pixels in [0, 1]. An image file is tested at its
    shorter side resized to :attr:`resize_size` and centre-cropped (``crop_pct`` = size /
    resized side, timm's name: 0.875 is Resize 256 + CenterCrop 224)."""

    size: int
    interpolation: Interpolation
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def resize_size(self) -> int:
        """The shorter side before the centre crop, ``floor(size / crop_pct)`` as timm computes
        it (256 for 224 at 0.875); rounded first, so 0.875's binary error cannot floor 256 to
        255."""
        return math.floor(round(self.size / self.crop_pct, 6))


@dataclass(frozen=True)
class Augmentation:
    """The random transform of training images (``kind`` ``none``: the test transform).

    ``random_resized_crop``: a box of ``scale`` x the image's area and aspect ratio in
    ``ratio`` (log-uniform), resized to the input size. ``random_crop``: ``padding`` px of zeros
    on every side, then a crop of the image's own size. ``flip``: left-right with probability
    one half, after the crop.
    """

    kind: AugmentationKind = "none"
    flip: bool = False
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    padding: int = 4

    def __post_init__(self) -> None:
        if self.kind == "none" and self.flip:
            raise ValueError("augmentation 'none' cannot flip; use kind 'none' with flip false")


NO_AUGMENTATION = Augmentation()


@dataclass(frozen=True)
class DatasetImages:
    """What the recipe needs to know of a dataset's images, declared when it is registered
    (nothing is read): ``native_size``, the side of images held in memory (None: files of any
    size); ``statistics``, its own (mean, std), used by backbones trained on it at its native
    size (the CIFAR ResNet-18s, as the official code normalises CIFAR for them); ``flip``,
    whether a left-right flip keeps an image's class (not for digits)."""

    native_size: int | None = None
    statistics: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    flip: bool = True


@dataclass(frozen=True)
class ImageTransform:
    """Everything that turns a dataset's images into a backbone's inputs: the backbone's
    :class:`InputConfig` and the training :class:`Augmentation` (evaluation passes use the test
    transform alone). A cell's transform is part of what its results mean."""

    input: InputConfig
    augmentation: Augmentation = NO_AUGMENTATION

    def describe(self, files: bool) -> str:
        """One line: the test transform (of image ``files``, or of images held in memory), the
        normalisation and the training augmentation."""
        config, augmentation = self.input, self.augmentation
        test = (
            f"test Resize {config.resize_size} + CenterCrop {config.size}"
            if files
            else f"test Resize {config.size}"
        ) + f" ({config.interpolation})"
        norm = f"mean {config.mean}, std {config.std}"
        if augmentation.kind == "none":
            train = "train: no augmentation"
        elif augmentation.kind == "random_crop":
            train = f"train: RandomCrop {config.size} padding {augmentation.padding}"
        else:
            low, high = augmentation.scale
            train = f"train: RandomResizedCrop {config.size} scale ({low}, {high})"
        flip = " + horizontal flip" if augmentation.flip else ""
        return f"{test}; {norm}; {train}{flip}"


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """The generator of one training batch's crops and flips, derived from the fine-tune's
    ``seed``, the ``epoch`` and the ``batch``'s position in it (NumPy's ``SeedSequence``, so
    nearby triples give unrelated streams)."""
    state = np.random.SeedSequence([seed, epoch, batch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return torch.empty(1).uniform_(low, high, generator=generator).item()


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(0, high, size=(1,), generator=generator).item())


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> CropBox:
    """RandomResizedCrop's box for a ``height`` x ``width`` image: up to ten tries of an area
    fraction uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``, the first that
    fits placed uniformly; else the largest centred box of an allowed ratio. The same draws in
    the same order as torchvision's ``RandomResizedCrop.get_params``, from ``generator``."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(float(log_ratio[0]), float(log_ratio[1]), generator))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = _randint(height - h + 1, generator)
            left = _randint(width - w + 1, generator)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_crop_box(height: int, width: int, padding: int, generator: torch.Generator) -> CropBox:
    """RandomCrop's box, in padded coordinates, for an image padded by ``padding`` on every side
    and cropped back to ``height`` x ``width`` (torchvision's ``RandomCrop.get_params`` draws)."""
    if padding == 0:
        return 0, 0, height, width
    top = _randint(2 * padding + 1, generator)
    left = _randint(2 * padding + 1, generator)
    return top, left, height, width


def flip_draw(generator: torch.Generator) -> bool:
    """Whether RandomHorizontalFlip (p = 0.5) flips: ``torch.rand(1) < 0.5``."""
    return bool(torch.rand(1, generator=generator).item() < 0.5)


@dataclass(frozen=True)
class ImageDraw:
    """One training image's random transform: its crop box (None: no crop) and flip."""

    box: CropBox | None
    flip: bool


def draw_images(
    augmentation: Augmentation, sizes: list[tuple[int, int]], generator: torch.Generator
) -> list[ImageDraw]:
    """The draws of one batch, image by image in batch order (box, then flip), for images of
    ``sizes`` (height, width) before any resize."""
    draws = []
    for height, width in sizes:
        box = None
        if augmentation.kind == "random_resized_crop":
            box = random_resized_crop_box(
                height, width, augmentation.scale, augmentation.ratio, generator
            )
        elif augmentation.kind == "random_crop":
            box = random_crop_box(height, width, augmentation.padding, generator)
        flip = flip_draw(generator) if augmentation.flip else False
        draws.append(ImageDraw(box, flip))
    return draws


def resize(images: torch.Tensor, size: int, interpolation: Interpolation) -> torch.Tensor:
    """Float images (..., 3, H, W) resized to ``size`` x ``size`` with antialiasing, as
    torchvision's ``resize`` does on tensors; unchanged when already that size. Bicubic can
    overshoot [0, 1]: clamped back, as torchvision does for images it converts to uint8."""
    if images.shape[-2:] == (size, size):
        return images
    batched = images if images.ndim == 4 else images.unsqueeze(0)
    resized = torch.nn.functional.interpolate(
        batched, size=(size, size), mode=interpolation, antialias=True, align_corners=False
    )
    if interpolation == "bicubic":
        resized = resized.clamp_(0.0, 1.0)
    return resized if images.ndim == 4 else resized.squeeze(0)


def augment_tensor(
    image: torch.Tensor,
    draw: ImageDraw,
    augmentation: Augmentation,
    size: int,
    interpolation: Interpolation,
) -> torch.Tensor:
    """One float image (3, H, W) in [0, 1] through its training draw: the crop (zero padding
    first for ``random_crop``), the resize to ``size`` and the flip."""
    if augmentation.kind == "random_crop" and augmentation.padding:
        pad = augmentation.padding
        image = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    if draw.box is not None:
        top, left, height, width = draw.box
        image = image[:, top : top + height, left : left + width]
    image = resize(image, size, interpolation)
    return image.flip(-1) if draw.flip else image
