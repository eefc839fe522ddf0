"""Round checkpoints: the state a cell needs to continue after its last finished round.

A cell killed at any point (SLURM preemption, a timeout, SIGKILL, a node crash) and started
again continues from its last finished round and ends with exactly the selections and accuracy
curve of an uninterrupted run (docs/design.md, "Run identity, tracking, resume"). That is possible
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

:class:`RoundLog` keeps a cell's finished rounds: it restores the state an earlier attempt saved
(:class:`CellState`), saves it after every round, and hands the rounds to the cell's
``on_round`` in order, at least once: a round whose ``on_round`` raises (the tracking server is
down) stays queued in the checkpoint and is handed over again after the next round, and the run
raises only if some round still cannot be handed over at its end; a restarted cell hands over
what its previous attempt could not.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass
class CellState:
    """What a cell carries from round to round, JSON-ready: the feature-store keys of its
    ASVP re-extractions, its rounds' records (``dataclasses.asdict``), the labelled set in the
    order it was labelled, the indicator's state and the current features' version."""

    update_keys: list[dict[str, Any]]
    rounds: list[dict[str, Any]]
    labeled_order: list[int]
    rule: dict[str, Any] | None
    feature_version: int

    @classmethod
    def from_saved(cls, state: dict[str, Any]) -> CellState:
        """The cell state of a checkpoint's saved ``state`` (``update_keys`` may be absent)."""
        return cls(
            update_keys=list(state.get("update_keys") or []),
            rounds=list(state["rounds"]),
            labeled_order=list(state["labeled_order"]),
            rule=state["rule"],
            feature_version=state["feature_version"],
        )


class RoundLog:
    """A cell's finished rounds: saved to ``checkpoint`` (when there is one) and handed to
    ``on_round`` in order. ``state`` says the cell's current state whenever it is saved."""

    def __init__(
        self,
        checkpoint: RoundCheckpoint | None,
        on_round: Callable[[Any], None],
        state: Callable[[], CellState],
    ) -> None:
        self.checkpoint = checkpoint
        self.on_round = on_round
        self.state = state
        self.delivered = 0  # rounds handed to on_round

    def restore(self, restore_features: Callable[[CellState], bool]) -> CellState | None:
        """The state an earlier attempt saved, or None for a fresh start. ``restore_features``
        puts back the features of the state's last update and says whether it could (False:
        their feature-store entry is gone or invalid; the checkpoint is ignored)."""
        saved = self.checkpoint.read() if self.checkpoint is not None else None
        if saved is None:
            return None
        state = CellState.from_saved(saved)
        if not restore_features(state):
            return ignored("the feature-store entries of its updated features are gone")
        self.delivered = saved["delivered"]
        return state

    def save(self) -> None:
        """Write the cell's current state (no-op without a checkpoint)."""
        if self.checkpoint is None:
            return
        state = self.state()
        self.checkpoint.write(
            {
                "update_keys": state.update_keys,
                "rounds": state.rounds,
                "labeled_order": state.labeled_order,
                "rule": state.rule,
                "feature_version": state.feature_version,
                "delivered": self.delivered,
            }
        )

    def deliver(self, rounds: Sequence[Any], final: bool = False) -> None:
        """Hand the finished ``rounds`` not yet handed over to ``on_round``, in order; a
        failure is reported and retried at the next call, and raised when ``final``."""
        delivered_before = self.delivered
        while self.delivered < len(rounds):
            try:
                self.on_round(rounds[self.delivered])
            except Exception as error:
                if final:
                    raise
                print(
                    f"round {self.delivered} not recorded yet ({error!r}); "
                    "retrying after the next round",
                    file=sys.stderr,
                    flush=True,
                )
                break
            self.delivered += 1
        if self.delivered != delivered_before:
            self.save()
