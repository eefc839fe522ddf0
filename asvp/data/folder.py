"""Class-folder image trees (torchvision ``ImageFolder``), and the ``imagefolder`` dataset.

Row order is ``ImageFolder``'s: classes sorted by folder name, files sorted within each class.
That is the official code's contract (row i of every feature and label array is the i-th
sample of the sorted ``ImageFolder``, ``docs/official-code.md`` section 4), so index files
from the official code name the same images here.

``imagefolder`` is for users' own data, in one of two layouts:

- two folders: ``<path>/<train>/<class>/<image>`` is the pool and
  ``<path>/<test>/<class>/<image>`` the test set (``train`` and ``test`` default to ``train``
  and ``val``); both must have the same class folders;
- one folder with a seeded split (``test_fraction``): ``<path>/<class>/<image>``, of which a
  stratified ``test_fraction`` of each class, drawn with ``split_seed``, is held out as the
  test set and the rest is the pool. Both options are dataset options, so they are in the run
  key; the held-out rows are saved beside every run (artifact ``imagefolder_test_rows``).

torchvision is imported when a folder is scanned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from asvp.data.base import DatasetNotFoundError, Split, register_dataset, resolve_under
from asvp.data.images import FileImageSet
from asvp.data.transforms import DatasetImages
from asvp.options import OptionError, Range

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


def held_out_rows(
    labels: np.ndarray, fraction: float, seed: int, classes: tuple[str, ...] = ()
) -> np.ndarray:
    """The sorted rows of a stratified held-out ``fraction``: of each class's ``n`` rows,
    ``round(fraction * n)`` (half to even) kept within ``[1, n - 1]`` (every class in both
    parts), drawn by a permutation from ``numpy.random.default_rng(seed)``, classes in label
    order. ValueError naming the class (by its name in ``classes`` if given) if one has fewer
    than 2 rows."""
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            name = classes[label] if classes else int(label)
            raise ValueError(
                f"class {name!r} has only {len(members)} image: a held-out test fraction needs "
                "at least 2 images per class (one for the pool, one for the test set)"
            )
        count = min(max(round(fraction * len(members)), 1), len(members) - 1)
        held_out.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(held_out))


def _subset(files: LabelledFiles, rows: np.ndarray) -> LabelledFiles:
    labels = files.labels[rows]
    labels.flags.writeable = False
    return LabelledFiles(tuple(files.paths[i] for i in rows), labels, files.classes)


def _check_layout(options: Mapping[str, Any]) -> None:
    """One layout: a test folder (``test``), or a held-out fraction of one folder, not both."""
    if options["test_fraction"] is None:
        return
    for name in ("train", "test"):
        if options[name] is not None:
            raise OptionError(
                name,
                options[name],
                "no train or test folder with test_fraction: test_fraction holds out part of "
                "the class folders directly under path (drop test_fraction to read a test folder)",
            )


@register_dataset("imagefolder", needs_root=True, images=DatasetImages(), cross_check=_check_layout)
def load_image_folder(
    root: Path,
    download: bool,
    *,
    path: Path,
    train: Path | None = None,
    test: Path | None = None,
    test_fraction: Annotated[float | None, Range(gt=0, lt=1)] = None,
    split_seed: Annotated[int, Range(ge=0)] = 0,
) -> Split:
    """Own data in ``ImageFolder`` layout under ``path`` (absolute, or relative to the data
    root). Without ``test_fraction``: the class-folder trees ``train`` (the pool; default
    ``train``) and ``test`` (default ``val``), each absolute or relative to ``path``. With
    ``test_fraction``: the class folders directly under ``path``, a stratified
    ``test_fraction`` of them held out by ``split_seed`` (:func:`held_out_rows`) as the test
    set. Nothing to download."""
    folder = resolve_under(root, path)
    if test_fraction is not None:
        return _held_out_split(folder, test_fraction, split_seed)
    train_folder = resolve_under(folder, train or "train")
    test_folder = resolve_under(folder, test or "val")
    remedy = (
        f"put the images in {train_folder}/<class>/<image> and {test_folder}/<class>/<image> "
        "(torchvision ImageFolder layout, the same class folders in both), or set the options "
        "path, train and test of the dataset to such folders, or give test_fraction to hold "
        "out part of one folder <path>/<class>/<image>"
    )
    return files_split(
        "imagefolder",
        scan_image_folder("imagefolder", train_folder, remedy),
        scan_image_folder("imagefolder", test_folder, remedy),
    )


def _held_out_split(folder: Path, fraction: float, seed: int) -> Split:
    """One folder's images split into a pool and a held-out test set (rows in folder order)."""
    remedy = (
        f"put the images in {folder}/<class>/<image> (torchvision ImageFolder layout), or set "
        "the option path of the dataset to such a folder"
    )
    files = scan_image_folder("imagefolder", folder, remedy)
    try:
        test_rows = held_out_rows(files.labels, fraction, seed, files.classes)
    except ValueError as error:
        raise ValueError(f"imagefolder at {folder}: {error}") from None
    pool_rows = np.setdiff1d(np.arange(len(files.labels)), test_rows)
    split = files_split("imagefolder", _subset(files, pool_rows), _subset(files, test_rows))
    return dataclasses.replace(split, artifacts={HELD_OUT_ARTIFACT: test_rows})


HELD_OUT_ARTIFACT = "imagefolder_test_rows"
"""The artifact of a held-out split: the folder's rows (``ImageFolder`` order) in the test set."""
