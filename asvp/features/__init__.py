"""Pool features: extraction through a backbone, the content-addressed store, and its keys.

- :mod:`asvp.features.extract`: image passes through a backbone (pooled features, embeddings).
- :mod:`asvp.features.store`: :class:`FeatureStore`, entries extracted once per grid.
- :mod:`asvp.features.keys`: what names an entry (pre-trained features, ASVP's re-extractions).
- :mod:`asvp.features.holds`: who still needs a shared entry, so that removal waits for them.
- :mod:`asvp.features.errors`: :class:`FeatureStoreError`, a store that cannot be written.
"""

from asvp.features.errors import FeatureStoreError
from asvp.features.extract import embedding_batches, extract_features, image_batches
from asvp.features.holds import Holder
from asvp.features.keys import cell_digest, pretrained_key, update_key
from asvp.features.store import STORE_FORMAT, FeatureStore, StoredFeatures

__all__ = [
    "STORE_FORMAT",
    "FeatureStore",
    "FeatureStoreError",
    "Holder",
    "StoredFeatures",
    "cell_digest",
    "embedding_batches",
    "extract_features",
    "image_batches",
    "pretrained_key",
    "update_key",
]
