"""Round checkpoints: the state a cell needs to continue after its last finished round.

A cell killed at any point (SLURM preemption, a timeout, SIGKILL, a node crash) and started
again continues from its last finished round and ends with exactly the selections and accuracy
curve of an uninterrupted run (DESIGN.md, "Run identity, tracking, resume"). That is possible
because every random stream of a round is derived from the cell's seed and the round index
(:func:`asvp.pipelines.derive_seed`): the only state carried from round to round is the ordered
labelled set, the rounds' records, the ASVP indicator's state (its reference value and random
generator) and the proxy's current features. This module stores that state; what it means is
the pipeline's business (:class:`asvp.pipelines.CellRunner`).

A checkpoint is a directory: ``state.json`` (the JSON-ready state) plus arrays as ``.npy``
files (ASVP's re-extracted pool features, one file per feature version). Arrays are written
before the state that names them, each under a temporary name renamed when complete, and the
state records each array's SHA-256; a checkpoint whose state is unreadable or whose arrays do
not match is reported and ignored (the cell then starts from round 0), never used.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from asvp.hashing import file_sha256

CHECKPOINT_FORMAT = 1
STATE_FILE = "state.json"


class RoundCheckpoint:
    """The checkpoint directory of one cell; ``identity`` guards against reading another
    cell's or another configuration's state from the same directory."""

    def __init__(self, directory: str | os.PathLike[str], identity: str) -> None:
        self.directory = Path(directory)
        self.identity = identity
        self._array_sha256: dict[str, str] = {}

    def read(self) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The saved state and its arrays (memory-mapped), or None when there is none.

        Raises ValueError when the directory holds another identity's state: a grid bug that
        must not be papered over by silently starting again.
        """
        path = self.directory / STATE_FILE
        if not path.is_file():
            return None
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            return self._ignored(f"unreadable {path}: {error}")
        if saved.get("format") != CHECKPOINT_FORMAT:
            return self._ignored(f"{path} has format {saved.get('format')!r}")
        if saved.get("identity") != self.identity:
            raise ValueError(
                f"checkpoint {path} belongs to {saved.get('identity')!r}, not to "
                f"{self.identity!r}; remove the directory to start this cell again"
            )
        arrays = {}
        for name, digest in saved["arrays"].items():
            array_path = self.directory / name
            if not array_path.is_file() or file_sha256(array_path) != digest:
                return self._ignored(f"array {array_path} is missing or does not match its SHA-256")
            arrays[name] = np.load(array_path, mmap_mode="r")
        self._array_sha256 = dict(saved["arrays"])
        return saved["state"], arrays

    def write(self, state: dict[str, Any], arrays: Mapping[str, Callable[[], np.ndarray]]) -> None:
        """Save ``state`` with the arrays named in ``arrays`` (file name -> a function giving
        the array, called only when that name is not saved yet: a pool's features are written
        once, not every round); saved arrays no longer named are removed after the state."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, array in arrays.items():
            if name not in self._array_sha256:
                self._array_sha256[name] = self._write_array(name, array())
        kept = {name: self._array_sha256[name] for name in arrays}
        payload = {
            "format": CHECKPOINT_FORMAT,
            "identity": self.identity,
            "arrays": kept,
            "state": state,
        }
        staging = self.directory / f".{STATE_FILE}.{os.getpid()}"
        staging.write_text(json.dumps(payload))
        os.replace(staging, self.directory / STATE_FILE)
        for name in set(self._array_sha256) - set(kept):
            (self.directory / name).unlink(missing_ok=True)
        self._array_sha256 = kept

    def clear(self) -> None:
        """Remove the checkpoint (the cell finished, or is to start again)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self._array_sha256 = {}

    def _write_array(self, name: str, array: np.ndarray) -> str:
        staging = self.directory / f".{name}.{os.getpid()}"
        with open(staging, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array))
        digest = file_sha256(staging)
        os.replace(staging, self.directory / name)
        return digest

    def _ignored(self, reason: str) -> None:
        print(f"round checkpoint ignored, starting from round 0: {reason}", file=sys.stderr)
        return None
