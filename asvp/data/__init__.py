"""Datasets behind one registry: the embedded default and the paper's datasets.

``mnist5k`` ships inside a wheel (no files, no download). The others read files under a data
root: ``cifar10``, ``cifar100``, ``cifar10_lt`` (in memory), ``imagenet``, ``pets`` and
``imagefolder`` (decoded from files). Importing this package registers all of them; it does
not import torchvision (the loaders do, when they read data), so that checking a grid's
dataset options (:func:`check_dataset_options`) is fast.
"""

from asvp.data import cifar, cifar_lt, embedded, folder, imagenet, pets  # noqa: F401  (register)
from asvp.data.base import (
    DatasetNotFoundError,
    ImageSet,
    Split,
    available_datasets,
    check_dataset_options,
    dataset_images,
    dataset_needs_root,
    load_dataset,
    register_dataset,
    resolve_data_root,
)
from asvp.data.images import ArrayImageSet, FileImageSet

__all__ = [
    "ArrayImageSet",
    "DatasetNotFoundError",
    "FileImageSet",
    "ImageSet",
    "Split",
    "available_datasets",
    "check_dataset_options",
    "dataset_images",
    "dataset_needs_root",
    "load_dataset",
    "register_dataset",
    "resolve_data_root",
]
