"""The dataset interface the pipelines use, and the dataset registry.

A dataset is loaded as a :class:`Split` of two :class:`ImageSet` s: the unlabelled *pool*
that active learning selects from, and the *test* set every accuracy is measured on (as in
the official code, which has no validation split). Pool indices are positions in the pool.

Loaders register under a name with :func:`register_dataset`; :func:`load_dataset` checks the
options against the loader's signature (unknown or missing options name themselves), resolves
the data root for loaders that read files, and calls the loader. The data root and the
``download`` flag say where data lives and how to get it, not what it is: they are never part
of a run's identity.
"""

from __future__ import annotations

import inspect
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEFAULT_DATA_ROOT = Path("data")

_ARTIFACT_KEY = re.compile(r"[A-Za-z0-9_.-]+")


class ImageSet(ABC):
    """Labelled images that the pipelines read in batches.

    ``labels`` are int64 class indices in ``0..num_classes-1``, one per image; row ``i`` of
    ``labels`` is the image that ``batch([i], ...)`` returns. Every batch goes through one
    deterministic transform, for training as well as for feature extraction and testing: the
    project trains without augmentation, unlike the official code's random-resized-crop +
    horizontal-flip training transform (``notes/official-code.md`` section 4).
    """

    labels: np.ndarray
    num_classes: int

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def batch(
        self,
        indices: np.ndarray,
        image_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> torch.Tensor:
        """The images at ``indices`` as a normalised float32 batch (B, 3, size, size).

        Pixels are scaled to [0, 1], then normalised per channel: ``(x - mean) / std``.
        """


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


@dataclass(frozen=True)
class _Registered:
    loader: Callable[..., Split]
    needs_root: bool


_REGISTRY: dict[str, _Registered] = {}
_ROOT_PARAMETERS = ("root", "download")


def register_dataset(
    name: str, *, needs_root: bool = False
) -> Callable[[Callable[..., Split]], Callable[..., Split]]:
    """Register a loader under ``name``.

    A loader with ``needs_root`` reads files: it is called as ``f(root=Path, download=bool,
    **options)`` with the resolved absolute data root. Otherwise it is called as
    ``f(**options)`` and the root and download flag are ignored.
    """

    def decorate(loader: Callable[..., Split]) -> Callable[..., Split]:
        _REGISTRY[name] = _Registered(loader, needs_root)
        return loader

    return decorate


def available_datasets() -> list[str]:
    return sorted(_REGISTRY)


def dataset_needs_root(name: str) -> bool:
    """Whether the named dataset reads files under the data root."""
    return _registered(name).needs_root


def resolve_data_root(root: str | os.PathLike | None) -> Path:
    """The absolute data root; ``./data`` when none is given."""
    return Path(DEFAULT_DATA_ROOT if root is None else root).expanduser().resolve()


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    download: bool = False,
    **options: Any,
) -> Split:
    """Load the named dataset with its options (as written in the grid file).

    ``root`` is the data root (default ``./data``) and ``download`` lets torchvision download
    datasets that it can; both are ignored by datasets that read no files (``mnist5k``).
    Raises :class:`DatasetNotFoundError` when the data is missing, TypeError for an unknown,
    missing or wrongly typed option and ValueError for a bad option value.
    """
    registered = _registered(name)
    if not isinstance(download, bool):
        raise TypeError(f"dataset {name!r}: download={download!r}; expected true or false")
    _check_option_names(name, registered, options)
    if not registered.needs_root:
        return registered.loader(**options)
    if root is not None and not isinstance(root, str | os.PathLike):
        raise TypeError(f"dataset {name!r}: root={root!r}; expected a path")
    return registered.loader(root=resolve_data_root(root), download=download, **options)


def _registered(name: str) -> _Registered:
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return _REGISTRY[name]


def _check_option_names(name: str, registered: _Registered, options: dict[str, Any]) -> None:
    """Unknown and missing options, named, with the options the dataset accepts."""
    parameters = inspect.signature(registered.loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    hidden = _ROOT_PARAMETERS if registered.needs_root else ()
    accepted = [key for key in parameters if key not in hidden]
    expected = ", ".join(accepted) if accepted else "none"
    for key, value in options.items():
        if key not in accepted:
            raise TypeError(
                f"dataset {name!r}: unknown option {key!r} (value {value!r}); "
                f"expected options: {expected}"
            )
    for key in accepted:
        if parameters[key].default is inspect.Parameter.empty and key not in options:
            raise TypeError(f"dataset {name!r}: option {key!r} is required")
