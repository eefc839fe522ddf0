"""The two kinds of :class:`~asvp.data.base.ImageSet`: images in memory, images in files.

- :class:`ArrayImageSet` holds uint8 pixels in memory (MNIST, CIFAR). Its test transform
  resizes the whole image to the input size (antialiased); for CIFAR at 224 px this is the
  upsampling of the official code's test transform ("Resize 224", ``docs/official-code.md``
  section 4). Training crops and flips are tensor operations on the native image.
- :class:`FileImageSet` decodes image files with PIL (ImageNet, Pets, own folders). Its test
  transform is the official evaluation transform: the shorter side resized to the input
  config's ``resize_size`` (256 for 224 at crop fraction 0.875), centre-cropped to the input
  size. Training crops and flips are torchvision's functional operations on the PIL image.

The random draws of both come from :mod:`asvp.data.transforms`. PIL and torchvision are
imported where files are decoded, so that importing :mod:`asvp.data` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch

from asvp.compute import usable_cpus
from asvp.data.base import ImageSet, check_rows
from asvp.data.transforms import (
    Augmentation,
    ImageDraw,
    ImageTransform,
    InputConfig,
    augment_tensor,
    draw_images,
    resize,
)

if TYPE_CHECKING:
    from PIL import Image
    from torchvision.transforms import InterpolationMode

MAX_DECODE_THREADS = 8
"""Threads that decode one batch of files (PIL releases the GIL while decoding/resizing)."""


@dataclass(frozen=True, eq=False)
class ArrayImageSet(ImageSet):
    """Images held in memory as uint8 (N, H, W) or (N, H, W, 3), with int64 labels."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        check_rows(self.images, self.labels, "images")

    def pixels(
        self,
        indices: np.ndarray,
        transform: ImageTransform,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Grey images are repeated over three channels. Test transform: the whole image
        resized to the input size (no crop). Training: each image's crop, resize and flip
        (:func:`~asvp.data.transforms.augment_tensor`), drawn image by image from
        ``generator``."""
        pixels = torch.from_numpy(self.images[indices]).float().div_(255.0)
        if pixels.ndim == 3:
            pixels = pixels.unsqueeze(1).expand(-1, 3, -1, -1)
        else:
            pixels = pixels.permute(0, 3, 1, 2)
        config, augmentation = transform.input, transform.augmentation
        if generator is None or augmentation.kind == "none" or len(pixels) == 0:
            return resize(pixels, config.size, config.interpolation)
        height, width = pixels.shape[-2:]
        draws = draw_images(augmentation, [(height, width)] * len(pixels), generator)
        return torch.stack(
            [
                augment_tensor(image, draw, augmentation, config.size, config.interpolation)
                for image, draw in zip(pixels, draws, strict=True)
            ]
        )


def _interpolation(name: str) -> InterpolationMode:
    """torchvision's enum for an :data:`~asvp.data.transforms.Interpolation` name."""
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(name)


def _rgb(path: str) -> Image.Image:
    """The file as an RGB PIL image: any mode PIL reads (grey, palette, RGBA, CMYK) converted,
    as torchvision's ``ImageFolder`` loader does."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def image_size_of(path: str) -> tuple[int, int]:
    """The (height, width) of an image file, read from its header (nothing decoded)."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    return height, width


def decode_eval_image(path: str, config: InputConfig) -> np.ndarray:
    """One image file through the test transform, as uint8 (size, size, 3): torchvision's
    ``Resize(config.resize_size) + CenterCrop(config.size)`` with the config's interpolation
    (antialiased), on the PIL image."""
    import torchvision.transforms.functional as TF

    rgb = TF.resize(
        _rgb(path), config.resize_size, interpolation=_interpolation(config.interpolation)
    )
    rgb = TF.center_crop(rgb, [config.size, config.size])
    return np.asarray(rgb, dtype=np.uint8)


def decode_train_image(
    path: str, draw: ImageDraw, augmentation: Augmentation, config: InputConfig
) -> np.ndarray:
    """One image file through its training draw, as uint8 (size, size, 3): torchvision's
    functional crop (zero padding first for ``random_crop``), resize to the input size and
    horizontal flip, on the PIL image."""
    import torchvision.transforms.functional as TF

    rgb = _rgb(path)
    if augmentation.kind == "random_crop" and augmentation.padding:
        rgb = TF.pad(rgb, augmentation.padding, fill=0)
    if draw.box is not None:
        rgb = TF.crop(rgb, *draw.box)
    rgb = TF.resize(
        rgb, [config.size, config.size], interpolation=_interpolation(config.interpolation)
    )
    if draw.flip:
        rgb = TF.hflip(rgb)
    return np.asarray(rgb, dtype=np.uint8)


@dataclass(frozen=True, eq=False)
class FileImageSet(ImageSet):
    """Images read from files (JPEG, PNG, any mode PIL opens) with int64 labels.

    ``paths[i]`` is the file of row ``i``. A batch is decoded by a small thread pool
    (at most :data:`MAX_DECODE_THREADS`, and no more than the usable CPUs) through
    :func:`decode_eval_image`; in a data loader worker process (:mod:`asvp.loading`) by that
    worker alone, so that workers x threads does not oversubscribe the CPUs.
    """

    paths: Sequence[str]
    labels: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        check_rows(self.paths, self.labels, "paths")

    def pixels(
        self,
        indices: np.ndarray,
        transform: ImageTransform,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The files at ``indices`` through the test transform (:func:`decode_eval_image`) or,
        with ``generator``, their training draws (:func:`decode_train_image`; the draws are
        made in batch order from the files' headers before any decoding, so they do not
        depend on the decoding threads)."""
        paths = [self.paths[row] for row in np.asarray(indices).reshape(-1).tolist()]
        config, augmentation = transform.input, transform.augmentation
        if not paths:
            return torch.empty(0, 3, config.size, config.size)
        if generator is None or augmentation.kind == "none":
            decoders = [partial(decode_eval_image, path, config) for path in paths]
        else:
            draws = draw_images(augmentation, [image_size_of(p) for p in paths], generator)
            decoders = [
                partial(decode_train_image, path, draw, augmentation, config)
                for path, draw in zip(paths, draws, strict=True)
            ]
        # inside a data loader worker, the workers are the parallelism: one thread each
        in_worker = torch.utils.data.get_worker_info() is not None
        threads = 1 if in_worker else min(MAX_DECODE_THREADS, usable_cpus(), len(paths))
        if threads == 1:
            arrays = [decode() for decode in decoders]
        else:
            with ThreadPoolExecutor(max_workers=threads) as executor:
                arrays = list(executor.map(lambda decode: decode(), decoders))
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
