"""Datasets: the embedded default and (later) the paper's datasets, behind one registry."""

from asvp.data import embedded  # noqa: F401  (registers mnist5k)
from asvp.data.base import ImageSet, Split, available_datasets, load_dataset, register_dataset

__all__ = ["ImageSet", "Split", "available_datasets", "load_dataset", "register_dataset"]
