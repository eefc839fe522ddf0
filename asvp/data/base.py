"""The dataset interface the pipelines use, and the dataset registry.

A dataset is loaded as a :class:`Split` of two :class:`ImageSet` s: the unlabelled *pool*
that active learning selects from, and the *test* set every accuracy is measured on (as in
the official code, which has no validation split). Pool indices are positions in the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ImageSet:
    """Images held in memory as uint8 (N, H, W) or (N, H, W, 3), with int64 labels."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def batch(
        self,
        indices: np.ndarray,
        image_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> torch.Tensor:
        """The images at ``indices`` as a normalised float batch (B, 3, size, size).

        Grey images are repeated over three channels; resizing is bilinear with antialiasing.
        """
        pixels = torch.from_numpy(self.images[indices]).float().div_(255.0)
        if pixels.ndim == 3:
            pixels = pixels.unsqueeze(1).expand(-1, 3, -1, -1)
        else:
            pixels = pixels.permute(0, 3, 1, 2)
        if pixels.shape[-1] != image_size or pixels.shape[-2] != image_size:
            pixels = F.interpolate(
                pixels, size=(image_size, image_size), mode="bilinear", antialias=True
            )
        mean_t = torch.tensor(mean).view(1, 3, 1, 1)
        std_t = torch.tensor(std).view(1, 3, 1, 1)
        return (pixels - mean_t) / std_t


@dataclass(frozen=True)
class Split:
    """A dataset's pool (selected from) and test set (evaluated on)."""

    name: str
    pool: ImageSet
    test: ImageSet


_REGISTRY: dict[str, Callable[..., Split]] = {}


def register_dataset(name: str) -> Callable[[Callable[..., Split]], Callable[..., Split]]:
    """Register a loader ``f(**options) -> Split`` under ``name``."""

    def decorate(loader: Callable[..., Split]) -> Callable[..., Split]:
        _REGISTRY[name] = loader
        return loader

    return decorate


def available_datasets() -> list[str]:
    return sorted(_REGISTRY)


def load_dataset(name: str, **options: Any) -> Split:
    """Load the named dataset with its options (as written in the grid file)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return _REGISTRY[name](**options)
