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

Sharing: a cell holds an entry it will need again (:meth:`~FeatureStore.hold`; ASVP's
re-extractions, which identical cells of two grids share) and releases it when done
(:meth:`~FeatureStore.release`); the entry is removed only when no live hold remains
(:mod:`asvp.features.holds`). A store that cannot be written raises
:class:`~asvp.features.errors.FeatureStoreError` naming the store and what to do; a valid entry
of a read-only store is still read.
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

from asvp.features.errors import FeatureStoreError, store_writes
from asvp.features.holds import Holder, is_live
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
    """A directory of feature entries; safe for concurrent use by several processes.

    ``holder`` is who this store object's holds are taken for: a run
    (:meth:`Holder.for_run`, so that a resumed attempt keeps them) or, by default, this
    process alone."""

    def __init__(self, root: str | os.PathLike, holder: Holder | None = None) -> None:
        self.root = Path(root)
        self.holder = holder or Holder.for_process()

    def _entry(self, key: dict[str, Any]) -> tuple[str, Path]:
        digest = _digest({"format": STORE_FORMAT, **key})
        return digest, self.root / digest

    def _hold_file(self, digest: str, name: str) -> Path:
        """The hold file of holder ``name`` (hashed: any name makes a file name)."""
        return self.root / f"{digest}.hold.{_digest(name)[:20]}"

    def _hold_files(self, digest: str) -> list[Path]:
        return sorted(self.root.glob(f"{digest}.hold.*"))

    @contextmanager
    def _locked(self, digest: str) -> Iterator[None]:
        with store_writes(self.root):
            self.root.mkdir(parents=True, exist_ok=True)
            lock = open(self.root / f"{digest}.lock", "w")  # noqa: SIM115  (closed below)
        with lock:
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

    def _read_unlocked(self, entry: Path, error: FeatureStoreError) -> StoredFeatures:
        """A valid entry of a store that cannot be written (so not locked): safe, since entries
        appear by an atomic rename and never change; else ``error``."""
        stored = self._read_valid(entry) if error.read_only else None
        if stored is None:
            raise error
        return stored

    def get(self, key: dict[str, Any]) -> StoredFeatures | None:
        """The valid entry for ``key``, or None (absent, partial or corrupt)."""
        digest, entry = self._entry(key)
        try:
            with self._locked(digest):
                return self._read_valid(entry)
        except FeatureStoreError as error:
            return self._read_unlocked(entry, error) if entry.is_dir() else None

    def get_or_extract(
        self, key: dict[str, Any], extract: Callable[[], torch.Tensor], device: torch.device
    ) -> StoredFeatures:
        """The entry for ``key``; runs ``extract`` (timed) if it is absent or corrupt.

        The lock is held while extracting, so concurrent cells needing the same entry wait
        for the first one and then read its result instead of extracting again. Raises
        :class:`FeatureStoreError` if the entry is to be written and the store cannot be.
        """
        digest, entry = self._entry(key)
        try:
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
                        f"feature-store entry {key}: features not finite in float16 (NaN, or "
                        "beyond +-65504); the network's outputs are unusable as proxy features"
                    )
                self._write(digest, entry, key, features, seconds)
        except FeatureStoreError as error:
            return self._read_unlocked(entry, error)
        return StoredFeatures(np.load(entry / "features.npy", mmap_mode="r"), seconds, False)

    def hold(self, key: dict[str, Any]) -> None:
        """Record that this store's holder needs the entry for ``key`` (present or about to
        be written): :meth:`release` by anyone else leaves it in place meanwhile."""
        digest, _ = self._entry(key)
        with self._locked(digest), store_writes(self.root):
            hold = self._hold_file(digest, self.holder.name)
            staging = hold.with_name(f".{hold.name}.{os.getpid()}")
            staging.write_text(self.holder.to_json())
            os.replace(staging, hold)

    def holders(self, key: dict[str, Any]) -> list[Holder]:
        """The live holders of the entry for ``key`` (stale holds are deleted on the way)."""
        digest, _ = self._entry(key)
        with self._locked(digest):
            return self._live_holders(digest)

    def release(self, key: dict[str, Any]) -> bool:
        """Drop this holder's hold on the entry for ``key`` and delete the entry if no live
        holder remains; True if it was deleted. Stale holds (:mod:`asvp.features.holds`) do
        not keep it."""
        digest, entry = self._entry(key)
        with self._locked(digest), store_writes(self.root):
            self._hold_file(digest, self.holder.name).unlink(missing_ok=True)
            if self._live_holders(digest):
                return False
            shutil.rmtree(entry, ignore_errors=True)
            return True

    def remove(self, key: dict[str, Any]) -> None:
        """Delete the entry for ``key`` if present, whoever holds it."""
        digest, entry = self._entry(key)
        with self._locked(digest):
            shutil.rmtree(entry, ignore_errors=True)
            for hold in self._hold_files(digest):
                hold.unlink(missing_ok=True)

    def _live_holders(self, digest: str) -> list[Holder]:
        """The live holds of an entry (under its lock); stale ones are deleted."""
        live = []
        for path in self._hold_files(digest):
            holder = Holder.from_file(path)
            if holder is not None and is_live(holder):
                live.append(holder)
            else:
                path.unlink(missing_ok=True)
        return live

    def _write(
        self, digest: str, entry: Path, key: dict[str, Any], features: np.ndarray, seconds: float
    ) -> None:
        """Write the entry under a staging name, then rename it into place (atomic); a write
        that fails (full disk) leaves no staging folder behind."""
        staging = self.root / f".staging-{digest}-{os.getpid()}"
        try:
            with store_writes(self.root):
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
                text = json.dumps(manifest, indent=2, sort_keys=True)
                (staging / "manifest.json").write_text(text)
                shutil.rmtree(entry, ignore_errors=True)
                os.replace(staging, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
