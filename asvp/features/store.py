"""The content-addressed feature store: pre-trained pool features, extracted once per grid.

An entry is keyed by everything that determines the features: the weights' SHA-256, the model name,
the input configuration (size, interpolation, crop, mean, std), the dataset with its options, the
split and a hash of the row indices. It is a directory ``<root>/<digest>/`` holding
``features.npy`` (float16, read memory-mapped) and ``manifest.json`` (the key, shape, the file's
SHA-256 and the measured extraction seconds). Entries are written under a temporary name and
renamed when complete, under an exclusive file lock, so concurrent cells extract once; an entry
whose size or checksum does not match the manifest (a partial copy, a truncated file) is rebuilt,
never used. ASVP's re-extracted features are entries of their own, keyed by the cell and the
labelled set they were extracted for. The keys are built in :mod:`asvp.features.keys`.

The manifest's extraction seconds are charged to every cell that uses the entry, so a cell's
cost does not depend on whether its features were already cached (docs/design.md, costs).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asvp.hashing import file_sha256
from asvp.timing import PhaseTimer

STORE_FORMAT = 2  # 2: manifests record the array's size in bytes


@dataclass(frozen=True)
class StoredFeatures:
    """Features read from the store, and the seconds their extraction took when measured."""

    features: np.ndarray
    extract_seconds: float
    from_cache: bool


def _digest(payload: Any) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


class FeatureStore:
    """A directory of feature entries; safe for concurrent use by several processes."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def _entry(self, key: dict[str, Any]) -> tuple[str, Path]:
        digest = _digest({"format": STORE_FORMAT, **key})
        return digest, self.root / digest

    @contextmanager
    def _locked(self, digest: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{digest}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_valid(self, entry: Path) -> StoredFeatures | None:
        """The entry if it is complete and its array matches the manifest's size and checksum
        (a partial copy, a truncated or an altered file is not used)."""
        manifest_path, array_path = entry / "manifest.json", entry / "features.npy"
        if not (manifest_path.is_file() and array_path.is_file()):
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            return None
        if manifest.get("bytes") != array_path.stat().st_size:
            return None
        if manifest.get("sha256") != file_sha256(array_path):
            return None
        features = np.load(array_path, mmap_mode="r")
        return StoredFeatures(features, float(manifest["extract_seconds"]), from_cache=True)

    def get(self, key: dict[str, Any]) -> StoredFeatures | None:
        """The valid entry for ``key``, or None (absent, partial or corrupt)."""
        digest, entry = self._entry(key)
        with self._locked(digest):
            return self._read_valid(entry)

    def get_or_extract(
        self, key: dict[str, Any], extract: Callable[[], torch.Tensor], device: torch.device
    ) -> StoredFeatures:
        """The entry for ``key``; runs ``extract`` (timed) if it is absent or corrupt.

        The lock is held while extracting, so concurrent cells needing the same entry wait
        for the first one and then read its result instead of extracting again.
        """
        digest, entry = self._entry(key)
        with self._locked(digest):
            stored = self._read_valid(entry)
            if stored is not None:
                return stored
            if entry.exists():
                print(f"feature store: rebuilding invalid entry {entry}", file=sys.stderr)
            timer = PhaseTimer(device)
            with timer.phase("extract"):
                features = extract().to(torch.float16).cpu().numpy()
            seconds = timer.take()["extract"]
            if not np.isfinite(features).all():
                raise FloatingPointError(
                    f"feature-store entry {key}: features not finite in float16 (NaN, or beyond "
                    "+-65504); the network's outputs are unusable as proxy features"
                )
            self._write(digest, entry, key, features, seconds)
        return StoredFeatures(np.load(entry / "features.npy", mmap_mode="r"), seconds, False)

    def remove(self, key: dict[str, Any]) -> None:
        """Delete the entry for ``key`` if present (ASVP's per-cell re-extractions)."""
        digest, entry = self._entry(key)
        with self._locked(digest):
            shutil.rmtree(entry, ignore_errors=True)

    def _write(
        self, digest: str, entry: Path, key: dict[str, Any], features: np.ndarray, seconds: float
    ) -> None:
        """Write the entry under a staging name, then rename it into place (atomic)."""
        staging = self.root / f".staging-{digest}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        np.save(staging / "features.npy", features)
        manifest = {
            "key": key,
            "shape": list(features.shape),
            "dtype": "float16",
            "bytes": (staging / "features.npy").stat().st_size,
            "sha256": file_sha256(staging / "features.npy"),
            "extract_seconds": seconds,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(staging, entry)
