"""The pool features a cell's proxy and strategy read, kept in the feature store.

First the frozen pre-trained backbone's (an entry shared by every cell that reads the same pool
through the same backbone), then each ASVP update's: the pool re-extracted by the model
fine-tuned in that round, an entry of this cell's config (identical cells of two grids share
it), held while the cell may need it and released when the cell ends unless the grid keeps
them: the last holder's release removes it (:mod:`asvp.features.holds`). Entries are float16,
so a resumed cell reads bit for bit what an uninterrupted cell holds in memory. Keys:
:mod:`asvp.features.keys`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from asvp.features import FeatureStore
from asvp.pool import PoolFeatures

Extract = Callable[[], torch.Tensor]


class CellFeatures:
    """The current pool features (``pool``) and how many updates replaced them (``version``);
    ``update_keys`` are the store keys of this cell's updates, in order."""

    def __init__(self, store: FeatureStore, device: torch.device, pool: PoolFeatures) -> None:
        self.store = store
        self.device = device
        self.pool = pool
        self.version = 0
        self.update_keys: list[dict[str, Any]] = []

    @classmethod
    def pretrained(
        cls, store: FeatureStore, key: dict[str, Any], extract: Extract, device: torch.device
    ) -> tuple[CellFeatures, float]:
        """The pre-trained features (extracted if the store lacks them) and the seconds their
        extraction took, charged even when read from the store."""
        stored = store.get_or_extract(key, extract, device)
        return cls(store, device, PoolFeatures(stored.features, device)), stored.extract_seconds

    def update(self, key: dict[str, Any], extract: Extract) -> float:
        """Replace the features by the entry for ``key`` (held first, then extracted unless an
        identical cell already wrote it) and return the extraction's seconds."""
        self.store.hold(key)
        self.update_keys.append(key)
        stored = self.store.get_or_extract(key, extract, self.device)
        self.pool = PoolFeatures(stored.features, self.device)
        self.version += 1
        return stored.extract_seconds

    def restore(self, version: int, update_keys: list[dict[str, Any]]) -> bool:
        """Put back the features of a checkpoint's last update, holding the checkpoint's
        entries again (False, and none held, if the last is no longer valid in the store);
        version 0 needs nothing."""
        if version == 0:
            return True
        if not update_keys:
            return False
        for key in update_keys:
            self.store.hold(key)
        stored = self.store.get(update_keys[-1])
        if stored is None:
            for key in update_keys:
                self.store.release(key)
            return False
        self.update_keys = list(update_keys)
        self.pool = PoolFeatures(stored.features, self.device)
        self.version = version
        return True

    def remove_updates(self) -> None:
        """Release this cell's re-extractions: each is deleted unless another live cell (an
        identical cell of another grid) still holds it."""
        for key in self.update_keys:
            self.store.release(key)
