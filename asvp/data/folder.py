"""Class-folder image trees (torchvision ``ImageFolder``), and the ``imagefolder`` dataset.

Row order is ``ImageFolder``'s: classes sorted by folder name, files sorted within each class.
That is the official code's contract (row i of every feature and label array is the i-th
sample of the sorted ``ImageFolder``, ``notes/official-code.md`` section 4), so index files
from the official code name the same images here.

``imagefolder`` is for users' own data: ``<path>/<train>/<class>/<image>`` is the pool and
``<path>/<test>/<class>/<image>`` the test set; both must have the same class folders.
torchvision is imported when a folder is scanned.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asvp.data.base import DatasetNotFoundError, Split, register_dataset, resolve_under
from asvp.data.images import FileImageSet
from asvp.data.transforms import DatasetImages

if TYPE_CHECKING:
    from torchvision.datasets import DatasetFolder


@dataclass(frozen=True)
class LabelledFiles:
    """Image files in row order with their int64 labels and the class names by label."""

    paths: tuple[str, ...]
    labels: np.ndarray
    classes: tuple[str, ...]


def labelled_files(dataset: DatasetFolder, classes: list[str] | None = None) -> LabelledFiles:
    """The samples of a torchvision folder dataset, in its order; ``classes`` overrides the
    class names (ImageNet keeps the folder names, its wnids, in ``wnids``)."""
    labels = np.asarray(dataset.targets, dtype=np.int64)
    labels.flags.writeable = False
    return LabelledFiles(
        paths=tuple(path for path, _ in dataset.samples),
        labels=labels,
        classes=tuple(dataset.classes if classes is None else classes),
    )


def scan_image_folder(dataset: str, folder: Path, remedy: str) -> LabelledFiles:
    """The ``ImageFolder`` samples of ``folder``; :class:`DatasetNotFoundError` if it is
    absent or has no class folder or a class folder without images."""
    if not folder.is_dir():
        raise DatasetNotFoundError(dataset, folder, remedy, "no such folder")
    try:
        return _scan_image_folder(str(folder))
    except FileNotFoundError as error:  # ImageFolder: no class folders, or an empty class
        raise DatasetNotFoundError(dataset, folder, remedy, str(error)) from error


@lru_cache(maxsize=16)
def _scan_image_folder(folder: str) -> LabelledFiles:
    """One scan per process and folder (ImageNet's 1.28M files take minutes on NFS)."""
    from torchvision.datasets import ImageFolder

    return labelled_files(ImageFolder(folder))


def files_split(name: str, pool: LabelledFiles, test: LabelledFiles) -> Split:
    """A split of file image sets; the pool and test set must name the same classes."""
    if pool.classes != test.classes:
        only_pool = sorted(set(pool.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(pool.classes))
        raise ValueError(
            f"{name}: the pool and test set must have the same classes; only in the pool: "
            f"{_some(only_pool)}; only in the test set: {_some(only_test)}"
        )
    num_classes = len(pool.classes)
    return Split(
        name=name,
        pool=FileImageSet(pool.paths, pool.labels, num_classes),
        test=FileImageSet(test.paths, test.labels, num_classes),
    )


def _some(names: list[str], limit: int = 10) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@register_dataset("imagefolder", needs_root=True, images=DatasetImages())
def load_image_folder(
    root: Path, download: bool, *, path: Path, train: Path = "train", test: Path = "val"
) -> Split:
    """Own data in ``ImageFolder`` layout: ``path`` (absolute, or relative to the data root)
    holds the class-folder trees ``train`` (the pool) and ``test`` (absolute, or relative to
    ``path``). Nothing to download."""
    folder = resolve_under(root, path)
    train_folder = resolve_under(folder, train)
    test_folder = resolve_under(folder, test)
    remedy = (
        f"put the images in {train_folder}/<class>/<image> and {test_folder}/<class>/<image> "
        "(torchvision ImageFolder layout, the same class folders in both), or set the options "
        "path, train and test of the dataset to such folders"
    )
    return files_split(
        "imagefolder",
        scan_image_folder("imagefolder", train_folder, remedy),
        scan_image_folder("imagefolder", test_folder, remedy),
    )
