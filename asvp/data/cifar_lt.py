"""CIFAR-10-LT: a long-tailed subset of the CIFAR-10 training set, as in the official code.

Class c (0..9) keeps ``int(n_max * f ** (c / 9))`` training images, ``f`` the
``imbalance_factor`` (default 0.1) and ``n_max`` the size of the smallest class in the training
set (5,000 for CIFAR-10, so 5000, 3871, ..., 500: 20,431 of 50,000 images, the official count,
``docs/official-code.md`` section 4). Which images a class keeps is a random subset drawn with
``imbalance_seed``, or read from ``kept_indices_file``: a ``.npy`` of CIFAR-10 training indices
like the official ``allidx_imb.npy`` (then the factor and the seed are not used). The test set
is the balanced 10,000-image CIFAR-10 test set.

Pool row i is training image ``kept[i]`` with ``kept`` sorted; ``kept`` is saved with every
run as the split's artifact ``cifar10_lt_kept_indices``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np

from asvp.data.base import DatasetNotFoundError, Split, register_dataset, resolve_under
from asvp.data.cifar import CIFAR10_IMAGES, read_cifar
from asvp.data.images import ArrayImageSet
from asvp.options import Range

KEPT_INDICES_ARTIFACT = "cifar10_lt_kept_indices"


def long_tail_counts(n_max: int, num_classes: int, imbalance_factor: float) -> np.ndarray:
    """Images kept per class: ``int(n_max * f ** (c / (num_classes - 1)))`` for class c."""
    exponents = np.arange(num_classes) / max(num_classes - 1, 1)
    return np.array([int(n_max * imbalance_factor**e) for e in exponents], dtype=np.int64)


def long_tail_indices(
    labels: np.ndarray, num_classes: int, imbalance_factor: float, seed: int
) -> np.ndarray:
    """The kept row indices (sorted): per class a random subset of :func:`long_tail_counts`
    size, drawn class by class from one generator seeded with ``seed``."""
    sizes = np.bincount(labels, minlength=num_classes)
    counts = long_tail_counts(int(sizes.min()), num_classes, imbalance_factor)
    rng = np.random.default_rng(seed)
    kept = [
        rng.permutation(np.flatnonzero(labels == cls))[:count]
        for cls, count in enumerate(counts.tolist())
    ]
    return np.sort(np.concatenate(kept)).astype(np.int64)


def _read_kept_indices(path: Path, train_size: int) -> np.ndarray:
    """A saved subset: a 1-D array of distinct integer training indices."""
    if not path.is_file():
        raise DatasetNotFoundError(
            "cifar10_lt",
            path,
            "kept_indices_file must name a .npy of CIFAR-10 training indices (like the official "
            "allidx_imb.npy), absolute or relative to the data root; leave it unset to draw "
            "the subset with imbalance_seed",
        )
    kept = np.load(path, allow_pickle=False)
    expected = f"a 1-D array of distinct integers in 0..{train_size - 1}"
    if kept.ndim != 1 or not np.issubdtype(kept.dtype, np.integer) or len(kept) == 0:
        raise ValueError(
            f"cifar10_lt: kept_indices_file {path} holds {kept.dtype} "
            f"{kept.shape}; expected {expected}"
        )
    if kept.min() < 0 or kept.max() >= train_size or len(np.unique(kept)) != len(kept):
        raise ValueError(f"cifar10_lt: kept_indices_file {path}: expected {expected}")
    return np.sort(kept).astype(np.int64)


@register_dataset("cifar10_lt", needs_root=True, images=CIFAR10_IMAGES)
def load_cifar10_lt(
    root: Path,
    download: bool,
    *,
    imbalance_factor: Annotated[float, Range(gt=0, le=1)] = 0.1,
    imbalance_seed: Annotated[int, Range(ge=0)] = 0,
    kept_indices_file: Path | None = None,
) -> Split:
    """CIFAR-10-LT: pool = the long-tailed training subset, test = the balanced test set.

    ``kept_indices_file`` is absolute or relative to the data root.
    """
    arrays = read_cifar("cifar10_lt", "cifar10", root, download)
    if kept_indices_file is None:
        kept = long_tail_indices(
            arrays.train_labels, arrays.num_classes, imbalance_factor, imbalance_seed
        )
    else:
        kept = _read_kept_indices(resolve_under(root, kept_indices_file), len(arrays.train_labels))
    return Split(
        name="cifar10_lt",
        pool=ArrayImageSet(
            arrays.train_images[kept], arrays.train_labels[kept], arrays.num_classes
        ),
        test=ArrayImageSet(arrays.test_images, arrays.test_labels, arrays.num_classes),
        artifacts={KEPT_INDICES_ARTIFACT: kept},
    )
