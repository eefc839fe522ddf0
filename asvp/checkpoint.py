"""Round checkpoints: the state a cell needs to continue after its last finished round.

A cell killed at any point (SLURM preemption, a timeout, SIGKILL, a node crash) and started
again continues from its last finished round and ends with exactly the selections and accuracy
curve of an uninterrupted run (DESIGN.md, "Run identity, tracking, resume"). That is possible
because every random stream of a round is derived from the cell's seed and the round index
(:func:`asvp.pipelines.derive_seed`): the only state carried from round to round is the ordered
labelled set, the rounds' records, the ASVP indicator's state (its reference value and random
generator) and the proxy's current features. This module stores that state; what it means is
the pipeline's business (:class:`asvp.pipelines.CellRunner`).

A checkpoint is a directory holding ``state.json`` (the JSON-ready state), written under a
temporary name and renamed, so it is always either the previous round's or this round's. ASVP's
re-extracted features are not copied into it: they are entries of the feature store
(:mod:`asvp.features`, checksummed there), and the state names the entries. A checkpoint whose
state is unreadable, or whose entries are gone, is reported and ignored (the cell then starts
from round 0), never used.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

CHECKPOINT_FORMAT = 2  # 2: no arrays; ASVP features are feature-store entries
STATE_FILE = "state.json"


class RoundCheckpoint:
    """The checkpoint directory of one cell; ``identity`` guards against reading another
    cell's or another configuration's state from the same directory."""

    def __init__(self, directory: str | os.PathLike[str], identity: str) -> None:
        self.directory = Path(directory)
        self.identity = identity

    def read(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none (or it is unreadable: reported).

        Raises ValueError when the directory holds another identity's state: a mix-up that
        must not be papered over by silently starting again.
        """
        path = self.directory / STATE_FILE
        if not path.is_file():
            return None
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            return ignored(f"unreadable {path}: {error}")
        if saved.get("format") != CHECKPOINT_FORMAT:
            return ignored(f"{path} has format {saved.get('format')!r}")
        if saved.get("identity") != self.identity:
            raise ValueError(
                f"checkpoint {path} belongs to {saved.get('identity')!r}, not to "
                f"{self.identity!r}; remove the directory to start this cell again"
            )
        return saved["state"]

    def write(self, state: dict[str, Any]) -> None:
        """Save ``state``, replacing the previous one atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = {"format": CHECKPOINT_FORMAT, "identity": self.identity, "state": state}
        staging = self.directory / f".{STATE_FILE}.{os.getpid()}"
        staging.write_text(json.dumps(payload))
        os.replace(staging, self.directory / STATE_FILE)

    def clear(self) -> None:
        """Remove the checkpoint (the cell finished, or is to start again)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def ignored(reason: str) -> None:
    """Report a checkpoint that is not used; the cell starts from round 0."""
    print(f"round checkpoint ignored, starting from round 0: {reason}", file=sys.stderr)
    return None
