"""The two kinds of :class:`~asvp.data.base.ImageSet`: images in memory, images in files.

- :class:`ArrayImageSet` holds uint8 pixels in memory (MNIST, CIFAR) and resizes the whole
  image to S x S (bilinear, antialiased). For CIFAR at 224 px this is the upsampling of the
  official code's test transform ("Resize 224", ``notes/official-code.md`` section 4).
- :class:`FileImageSet` decodes image files with PIL (ImageNet, Pets, own folders) through the
  official evaluation transform: resize the shorter side to round(S * 256 / 224) (256 for
  S = 224; bilinear, antialiased), centre-crop S x S.

Both are used with the same deterministic transform for training, feature extraction and
testing. The official code trains with random-resized-crop + horizontal flip; this project
trains without augmentation (see :class:`~asvp.data.base.ImageSet`). PIL and torchvision are
imported where files are decoded, so that importing :mod:`asvp.data` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from asvp.data.base import ImageSet, check_rows

MAX_DECODE_THREADS = 8
"""Threads that decode one batch of files (PIL releases the GIL while decoding/resizing)."""


def _usable_cpus() -> int:
    """CPUs this process may run on (a SLURM job's allocation, not the whole node)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True, eq=False)
class ArrayImageSet(ImageSet):
    """Images held in memory as uint8 (N, H, W) or (N, H, W, 3), with int64 labels."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        check_rows(self.images, self.labels, "images")

    def pixels(self, indices: np.ndarray, image_size: int) -> torch.Tensor:
        """Grey images are repeated over three channels; the whole image is resized to
        size x size, bilinear with antialiasing (no crop)."""
        pixels = torch.from_numpy(self.images[indices]).float().div_(255.0)
        if pixels.ndim == 3:
            pixels = pixels.unsqueeze(1).expand(-1, 3, -1, -1)
        else:
            pixels = pixels.permute(0, 3, 1, 2)
        if pixels.shape[-1] != image_size or pixels.shape[-2] != image_size:
            pixels = F.interpolate(
                pixels, size=(image_size, image_size), mode="bilinear", antialias=True
            )
        return pixels


def eval_resize_size(image_size: int) -> int:
    """The shorter side before the centre crop: 256 for 224 (Resize 256 + CenterCrop 224)."""
    return round(image_size * 256 / 224)


def decode_eval_image(path: str, image_size: int) -> np.ndarray:
    """One image file through the evaluation transform, as uint8 (size, size, 3).

    Any mode PIL reads (grey, palette, RGBA, CMYK) is converted to RGB first, as torchvision's
    ``ImageFolder`` loader does. Resize and crop are torchvision's own functions on the PIL
    image, i.e. exactly ``Resize(round(S*256/224)) + CenterCrop(S)`` of the official code.
    """
    import torchvision.transforms.functional as TF
    from PIL import Image
    from torchvision.transforms import InterpolationMode

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    rgb = TF.resize(
        rgb, eval_resize_size(image_size), interpolation=InterpolationMode.BILINEAR, antialias=True
    )
    rgb = TF.center_crop(rgb, [image_size, image_size])
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

    def pixels(self, indices: np.ndarray, image_size: int) -> torch.Tensor:
        """The files at ``indices`` decoded, resized (shorter side) and centre-cropped."""
        paths = [self.paths[row] for row in np.asarray(indices).reshape(-1).tolist()]
        if not paths:
            return torch.empty(0, 3, image_size, image_size)
        decode = partial(decode_eval_image, image_size=image_size)
        # inside a data loader worker, the workers are the parallelism: one thread each
        in_worker = torch.utils.data.get_worker_info() is not None
        threads = 1 if in_worker else min(MAX_DECODE_THREADS, _usable_cpus(), len(paths))
        if threads == 1:
            arrays = [decode(path) for path in paths]
        else:
            with ThreadPoolExecutor(max_workers=threads) as executor:
                arrays = list(executor.map(decode, paths))
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
