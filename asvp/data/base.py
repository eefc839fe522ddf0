"""The dataset interface the pipelines use, and the dataset registry.

A dataset is loaded as a :class:`Split` of two :class:`ImageSet` s: the unlabelled *pool*
that active learning selects from, and the *test* set every accuracy is measured on (as in
the official code, which has no validation split). Pool indices are positions in the pool.

Loaders register under a name with :func:`register_dataset`. A loader declares its options
once, as keyword-only parameters whose ``Annotated`` types carry their ranges
(:mod:`asvp.options`); :func:`check_dataset_options` checks given options against those
declarations alone (it reads no file, so the grid validator calls it), and
:func:`load_dataset` checks them the same way, resolves the data root for loaders that read
files, and calls the loader. The data root and the ``download`` flag say where data lives and
how to get it, not what it is: they are never part of a run's identity.

This module and the package's registry import neither torchvision nor PIL: the loaders and
image sets import them where they read data, so that checking a grid stays fast.
"""

from __future__ import annotations

import inspect
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asvp.data.transforms import DatasetImages, ImageTransform
from asvp.options import Option, OptionError, OptionsError, check_options, declared_options

DEFAULT_DATA_ROOT = Path("data")

_ARTIFACT_KEY = re.compile(r"[A-Za-z0-9_.-]+")


class ImageSet(ABC):
    """Labelled images that the pipelines read in batches.

    ``labels`` are int64 class indices in ``0..num_classes-1``, one per image; row ``i`` of
    ``labels`` is the image that ``batch([i], ...)`` returns. A batch goes through the test
    transform of an :class:`~asvp.data.transforms.ImageTransform` (feature extraction, pool
    scoring, evaluation) or, given a generator, through its training augmentation, every crop
    and flip drawn from that generator (:mod:`asvp.data.transforms`). A subclass says how its
    images become pixels (:meth:`pixels`); the normalisation is the same for all.
    """

    labels: np.ndarray
    num_classes: int

    def __len__(self) -> int:
        return len(self.labels)

    def batch(
        self,
        indices: np.ndarray,
        transform: ImageTransform,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The images at ``indices`` as a normalised float32 batch (B, 3, size, size).

        Pixels are scaled to [0, 1] (:meth:`pixels`), then normalised per channel with the
        transform's input config: ``(x - mean) / std``. Without ``generator``, the test
        transform; with one, the training augmentation drawn from it.
        """
        config = transform.input
        mean_t = torch.tensor(config.mean).view(1, 3, 1, 1)
        std_t = torch.tensor(config.std).view(1, 3, 1, 1)
        return (self.pixels(indices, transform, generator) - mean_t) / std_t

    @abstractmethod
    def pixels(
        self,
        indices: np.ndarray,
        transform: ImageTransform,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The images at ``indices`` as float32 (B, 3, size, size) in [0, 1], in that order:
        the test transform without ``generator``, the training augmentation with one."""


def check_rows(rows: Sized, labels: np.ndarray, what: str) -> None:
    """One label per image: ValueError naming both counts otherwise."""
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} {what} but {len(labels)} labels")


@dataclass(frozen=True)
class Split:
    """A dataset's pool (selected from) and test set (evaluated on).

    ``artifacts`` are arrays every run using the split must save beside its results (logged
    as ``<key>.npy``), because they define the data: e.g. the CIFAR-10 train indices that
    CIFAR-10-LT keeps.
    """

    name: str
    pool: ImageSet
    test: ImageSet
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pool.num_classes != self.test.num_classes:
            raise ValueError(
                f"{self.name}: the pool has {self.pool.num_classes} classes but the test set "
                f"has {self.test.num_classes}"
            )
        for key in self.artifacts:
            if not _ARTIFACT_KEY.fullmatch(key):
                raise ValueError(
                    f"{self.name}: artifact key {key!r} is not a plain file name "
                    "(letters, digits, '_', '.', '-')"
                )


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing: names the dataset, the path looked at and the remedy.

    ``path`` is the resolved absolute path that was expected to hold the data; ``remedy`` says
    what to download or configure; ``detail`` (optional) says what exactly is missing.
    """

    def __init__(
        self, dataset: str, path: str | os.PathLike, remedy: str, detail: str = ""
    ) -> None:
        self.dataset = dataset
        self.path = Path(path)
        self.remedy = remedy
        self.detail = detail
        missing = f" ({detail})" if detail else ""
        super().__init__(f"dataset {dataset!r}: no data at {self.path}{missing}. To fix: {remedy}")

    def __reduce__(self) -> tuple[type, tuple[str, Path, str, str]]:
        # exceptions are pickled through their args; keep all four fields (submitit jobs)
        return type(self), (self.dataset, self.path, self.remedy, self.detail)


CrossCheck = Callable[[Mapping[str, Any]], None]
"""Checks options against each other (all of them, defaults filled in); raises OptionError."""


@dataclass(frozen=True)
class RegisteredDataset:
    """What :func:`register_dataset` recorded for a name: the loader, whether it reads files
    under the data root, its declared options, their cross-check and its images."""

    loader: Callable[..., Split]
    needs_root: bool
    options: dict[str, Option]
    cross_check: CrossCheck | None
    images: DatasetImages


_REGISTRY: dict[str, RegisteredDataset] = {}
_ROOT_PARAMETERS = ("root", "download")


def register_dataset(
    name: str,
    *,
    images: DatasetImages,
    needs_root: bool = False,
    cross_check: CrossCheck | None = None,
) -> Callable[[Callable[..., Split]], Callable[..., Split]]:
    """Register a loader under ``name``; its keyword-only parameters are its options.

    ``images`` says what the training recipe needs to know of its images (their native size,
    statistics, whether they may be flipped; :mod:`asvp.recipe`). A loader with
    ``needs_root`` reads files: it is called as ``f(root=Path, download=bool, **options)``
    with the resolved absolute data root. Otherwise it is called as ``f(**options)`` and the
    root and download flag are ignored. ``cross_check`` checks options that limit each other
    (see :data:`CrossCheck`).
    """

    def decorate(loader: Callable[..., Split]) -> Callable[..., Split]:
        parameters = inspect.signature(loader).parameters.values()
        positional = tuple(p.name for p in parameters if p.kind is not p.KEYWORD_ONLY)
        expected = _ROOT_PARAMETERS if needs_root else ()
        if positional != expected:
            raise TypeError(
                f"dataset {name!r}: the loader takes {positional} before its keyword-only "
                f"options; expected {expected}"
            )
        _REGISTRY[name] = RegisteredDataset(
            loader, needs_root, declared_options(loader), cross_check, images
        )
        return loader

    return decorate


def available_datasets() -> list[str]:
    return sorted(_REGISTRY)


def dataset_images(name: str) -> DatasetImages:
    """What the named dataset declared about its images (:class:`DatasetImages`)."""
    return registered_dataset(name).images


def dataset_needs_root(name: str) -> bool:
    """Whether the named dataset reads files under the data root."""
    return registered_dataset(name).needs_root


def resolve_data_root(root: str | os.PathLike | None) -> Path:
    """The absolute data root; ``./data`` when none is given."""
    return Path(DEFAULT_DATA_ROOT if root is None else root).expanduser().resolve()


def resolve_under(base: Path, path: str | os.PathLike) -> Path:
    """A path option made absolute: ``path`` itself, or ``base / path`` for a relative one."""
    return (base / Path(path).expanduser()).resolve()


def check_dataset_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The named dataset's ``options`` checked against its loader's declarations alone.

    Returns the given options converted to their declared types (an integer given for a
    number option becomes a float; defaults are not filled in). Reads no file and loads no
    data. Raises ValueError (:class:`~asvp.options.OptionsError`) naming the dataset and, for
    each unknown, missing, mistyped or out-of-range option, its value and what is expected.
    """
    registered = registered_dataset(name)
    owner = f"dataset {name!r}"
    try:
        checked = check_options(registered.options, options, owner)
    except OptionsError as error:
        raise OptionsError(owner, [_root_hint(problem) for problem in error.problems]) from None
    if registered.cross_check is not None:
        defaults = {key: option.default for key, option in registered.options.items()}
        try:
            registered.cross_check({**defaults, **checked})
        except OptionError as error:
            raise OptionsError(owner, [error]) from None
    return checked


def _root_hint(problem: OptionError) -> OptionError:
    """An unknown ``root`` or ``download`` option, said to be a grid key (a guess users make)."""
    if problem.key not in _ROOT_PARAMETERS:
        return problem
    hint = f"; the {problem.key} of every dataset is the grid's {_GRID_KEYS[problem.key]} key"
    return OptionError(problem.key, problem.value, problem.expected + hint)


_GRID_KEYS = {"root": "data_root", "download": "download"}


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    download: bool = False,
    **options: Any,
) -> Split:
    """Load the named dataset with its options (as written in the grid file).

    ``root`` is the data root (default ``./data``) and ``download`` lets torchvision download
    datasets that it can; both are ignored by datasets that read no files (``mnist5k``).
    Raises :class:`DatasetNotFoundError` when the data is missing, ValueError for a bad
    option (:func:`check_dataset_options`) and TypeError for a root or download flag of the
    wrong type.
    """
    registered = registered_dataset(name)
    if not isinstance(download, bool):
        raise TypeError(f"dataset {name!r}: download={download!r}; expected true or false")
    checked = check_dataset_options(name, options)
    if not registered.needs_root:
        return registered.loader(**checked)
    if root is not None and not isinstance(root, str | os.PathLike):
        raise TypeError(f"dataset {name!r}: root={root!r}; expected a path")
    return registered.loader(root=resolve_data_root(root), download=download, **checked)


def registered_dataset(name: str) -> RegisteredDataset:
    """The registration of dataset ``name``; unknown names list the available ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return _REGISTRY[name]
