"""CIFAR-10 and CIFAR-100 through torchvision's dataset classes, held in memory.

Pool = the 50,000 training images, test = the 10,000 test images, in torchvision's order
(the batches' order), as in the official code (``docs/official-code.md`` section 4). On disk:
``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` and
``<root>/cifar-100-python/{train,test,meta}`` (pickled dicts of uint8 N x 3072 rows).

Integrity: torchvision checks the MD5 of every file before reading. With ``download`` and
files missing, torchvision downloads the archive and verifies it. Files already on disk are
read through a subclass of the torchvision class that only checks the files are present:
re-packed copies of CIFAR (and the test fixtures) are valid data with other checksums.
torchvision is imported when a CIFAR variant is first read, not when the loaders register.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asvp.data.base import DatasetNotFoundError, Split, register_dataset
from asvp.data.images import ArrayImageSet
from asvp.data.transforms import DatasetImages

CIFAR10_IMAGES = DatasetImages(
    native_size=32, statistics=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
)
"""CIFAR-10's images: 32 px, the official code's CIFAR-10 statistics (also CIFAR-10-LT's)."""
CIFAR100_IMAGES = DatasetImages(
    native_size=32, statistics=((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
)
"""CIFAR-100's images: 32 px, the official code's CIFAR-100 statistics."""

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10


def _torchvision_class(variant: str) -> type[CIFAR10]:
    """torchvision's class of a CIFAR variant (``cifar10`` or ``cifar100``)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    return {"cifar10": CIFAR10, "cifar100": CIFAR100}[variant]


@cache
def _presence_checked(variant: str) -> type[CIFAR10]:
    """The torchvision class with every checksum removed (``check_integrity`` with no MD5
    only checks that the file exists)."""
    dataset_class = _torchvision_class(variant)
    return type(
        f"PresenceChecked{dataset_class.__name__}",
        (dataset_class,),
        {
            "train_list": [[name, None] for name, _ in dataset_class.train_list],
            "test_list": [[name, None] for name, _ in dataset_class.test_list],
            "meta": {**dataset_class.meta, "md5": None},
        },
    )


@dataclass(frozen=True)
class CifarArrays:
    """A CIFAR variant in memory: uint8 (N, 32, 32, 3) images and int64 labels (read-only)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int


def cifar_folder(variant: str, root: Path) -> Path:
    """Where a CIFAR variant's files live under the data root."""
    return root / _torchvision_class(variant).base_folder


def read_cifar(dataset: str, variant: str, root: Path, download: bool) -> CifarArrays:
    """The CIFAR variant (``cifar10`` or ``cifar100``) under ``root``, downloaded if allowed.

    ``dataset`` is the name errors are reported under (``cifar10_lt`` reads ``cifar10``).
    Raises :class:`DatasetNotFoundError` when files are missing and cannot be downloaded.
    """
    dataset_class = _torchvision_class(variant)
    folder = cifar_folder(variant, root)
    remedy = (
        f"set download: true in the grid (download=True), or download {dataset_class.url} and "
        f"extract it into {root} (the archive holds the folder {dataset_class.base_folder})"
    )
    missing = _missing_files(dataset_class, folder)
    if missing:
        if not download:
            raise DatasetNotFoundError(dataset, folder, remedy, "missing " + ", ".join(missing))
        try:
            dataset_class(str(root), train=False, download=True)
        except OSError as error:  # urllib's URLError included
            raise DatasetNotFoundError(
                dataset, folder, remedy, f"download of {dataset_class.url} failed: {error}"
            ) from error
    return _cifar_arrays(variant, str(root))


def _missing_files(dataset_class: type[CIFAR10], folder: Path) -> list[str]:
    names = [name for name, _ in dataset_class.train_list + dataset_class.test_list]
    names.append(dataset_class.meta["filename"])
    return [name for name in names if not (folder / name).is_file()]


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@lru_cache(maxsize=2)
def _cifar_arrays(variant: str, root: str) -> CifarArrays:
    """Parsed once per process and data root (about 1 s for the 60,000 images)."""
    dataset_class = _presence_checked(variant)
    train = dataset_class(root, train=True)
    test = dataset_class(root, train=False)
    return CifarArrays(
        train_images=_read_only(np.ascontiguousarray(train.data)),
        train_labels=_read_only(np.asarray(train.targets, dtype=np.int64)),
        test_images=_read_only(np.ascontiguousarray(test.data)),
        test_labels=_read_only(np.asarray(test.targets, dtype=np.int64)),
        num_classes=len(train.classes),
    )


def _load_cifar(variant: str, root: Path, download: bool) -> Split:
    arrays = read_cifar(variant, variant, root, download)
    return Split(
        name=variant,
        pool=ArrayImageSet(arrays.train_images, arrays.train_labels, arrays.num_classes),
        test=ArrayImageSet(arrays.test_images, arrays.test_labels, arrays.num_classes),
    )


@register_dataset("cifar10", needs_root=True, images=CIFAR10_IMAGES)
def load_cifar10(root: Path, download: bool) -> Split:
    """CIFAR-10: pool = 50,000 training images, test = 10,000 test images, 10 classes."""
    return _load_cifar("cifar10", root, download)


@register_dataset("cifar100", needs_root=True, images=CIFAR100_IMAGES)
def load_cifar100(root: Path, download: bool) -> Split:
    """CIFAR-100 (fine labels): pool = 50,000 training images, test = 10,000, 100 classes."""
    return _load_cifar("cifar100", root, download)
