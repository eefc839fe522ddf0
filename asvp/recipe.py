"""The paper's training recipe for one cell: the image transform a dataset x backbone gets.

As the official code trains (``docs/official-code.md`` section 4), with the backbone's own
input configuration (:func:`asvp.models.backbones.backbone_input`) and what the dataset
declares of its images (:func:`asvp.data.dataset_images`):

- images held at their native size and fed at it (CIFAR with the CIFAR ResNet-18 at 32 px):
  ``RandomCrop(size, padding=4)`` + horizontal flip, normalised with the dataset's statistics
  where the backbone asks for them;
- every other case (ImageNet, Pets, own folders; CIFAR with an ImageNet-scale network at
  224 px): ``RandomResizedCrop(size)`` + horizontal flip;
- MNIST-5k, which the official code does not have: the same, without the flip (a flipped digit
  is another symbol or none; the official code's flip of SVHN digits is one of its bugs).

The test transform (feature extraction, pool scoring, evaluation) is the backbone's input
configuration. A grid's ``transform`` section overrides any of it (:class:`TransformConfig`).
Nothing here reads data or weights, so a grid's run keys can hold the resolved transform.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from asvp.config import CellConfig, TransformConfig
from asvp.data import dataset_images
from asvp.data.transforms import (
    NO_AUGMENTATION,
    Augmentation,
    DatasetImages,
    ImageTransform,
    InputConfig,
)
from asvp.models.backbones import backbone_input

RANDOM_CROP_PADDING = 4
"""Pixels of zero padding around a native-size image before its random crop (official)."""


def official_augmentation(images: DatasetImages, size: int) -> Augmentation:
    """The official code's training augmentation for images like ``images`` fed at ``size``
    px: a padded random crop at the native size, else a random resized crop; flipped when the
    dataset allows it."""
    if images.native_size is not None and images.native_size == size:
        return Augmentation("random_crop", flip=images.flip, padding=RANDOM_CROP_PADDING)
    return Augmentation("random_resized_crop", flip=images.flip)


def input_config(
    dataset: str,
    backbone: str,
    transform: TransformConfig,
    backbone_options: Mapping[str, Any] | None = None,
) -> InputConfig:
    """The backbone's declared inputs for ``dataset`` (its statistics where the backbone
    normalises with them), with ``transform``'s overrides. ``backbone_options`` are the
    cell's: the ``timm`` backbone's inputs are its ``model``'s pretrained config."""
    declared = backbone_input(backbone, backbone_options)
    config = declared.config
    statistics = dataset_images(dataset).statistics
    if declared.dataset_statistics and statistics is not None:
        config = dataclasses.replace(config, mean=statistics[0], std=statistics[1])
    overrides = {
        name: getattr(transform, name)
        for name in ("size", "interpolation", "crop_pct", "mean", "std")
        if getattr(transform, name) is not None
    }
    return dataclasses.replace(config, **overrides)


def resolve_transform(config: CellConfig) -> ImageTransform:
    """The image transform of the cell ``config``: its input configuration and, with
    ``augment: official``, :func:`official_augmentation`."""
    inputs = input_config(
        config.dataset, config.backbone, config.transform, config.backbone_options
    )
    if config.transform.augment == "none":
        return ImageTransform(inputs, NO_AUGMENTATION)
    images = dataset_images(config.dataset)
    return ImageTransform(inputs, official_augmentation(images, inputs.size))
