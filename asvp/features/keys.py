"""Feature-store keys: everything that determines an entry's features, and nothing else.

A pre-trained entry is shared by every cell that reads the same pool through the same frozen
backbone (weights, model, input configuration, dataset with its options, split, row indices).
An ASVP re-extraction is made by a model fine-tuned inside one cell, so its key names the cell
(:func:`cell_digest`), the update's number and the labelled set: an entry per cell, never
shared with another cell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from asvp.hashing import index_hash

if TYPE_CHECKING:
    from asvp.config import CellConfig
    from asvp.data.transforms import InputConfig
    from asvp.models.backbones import Backbone


def pretrained_key(
    backbone: Backbone, inputs: InputConfig, config: CellConfig, pool_size: int
) -> dict[str, Any]:
    """The key of the pool features of ``backbone`` (frozen, pre-trained) for ``config``'s
    dataset through the test transform of ``inputs``: every row of the pool, in order.
    Augmentation is not in it: extraction never augments."""
    return {
        "weights_sha256": backbone.weights_sha256,
        "model": backbone.name,
        "inputs": dataclasses.asdict(inputs),
        "dataset": config.dataset,
        "dataset_options": config.dataset_options,
        "split": "pool",
        "indices": index_hash(np.arange(pool_size)),
    }


def update_key(config: CellConfig, version: int, labeled: np.ndarray) -> dict[str, Any]:
    """The key of the cell's ``version``-th ASVP re-extraction, made by the model fine-tuned
    on ``labeled``."""
    return {
        "kind": "asvp_update",
        "cell": cell_digest(config),
        "version": version,
        "labeled": index_hash(labeled),
    }


def cell_digest(config: CellConfig) -> str:
    """A hash of everything in ``config`` that determines results (paths and storage choices
    left out): names the cell's own feature-store entries."""
    fields = dataclasses.asdict(config)
    for where in ("data_root", "download", "keep_updated_features"):
        fields.pop(where)
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
