"""Holds on feature-store entries: who still needs an entry, so that its removal waits for the
last one.

ASVP's re-extractions are keyed by the cell's config (:func:`asvp.features.keys.update_key`),
so two grids running the same cell config at once share those entries, and each cell removes
its re-extractions when it ends. Without holds, the first cell to end removed entries the other
was still using, and the other, resumed after an interruption, found its checkpoint's features
gone and started again from round 0.

A hold is a small JSON file ``<root>/<digest>.hold.<holder name>`` (beside the entry's lock
file) written atomically, under the entry's lock, before a cell uses the entry. Releasing
deletes the cell's own hold and removes the entry only when no *live* hold remains. A hold is
live while

- its run can still resume from it: the holder names a round checkpoint, and that checkpoint
  still exists and belongs to the holder (:class:`asvp.checkpoint.RoundCheckpoint`; it is
  cleared when the run finishes or a fresh run replaces it), or
- its process runs: on this host, the pid is alive and started when the hold says (a reused pid
  is not the holder); a hold taken on another host, whose process cannot be seen from here,
  counts as live.

Holds of dead processes without a resumable checkpoint are stale: ignored and deleted. The
price of the conservative rules is disk, never work: an entry held by a crashed run that is
never resumed stays until that run's checkpoint is cleared (a fresh run of the cell clears it).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Holder:
    """Who holds entries: a run (named by its run id, with its round checkpoint file) or a
    process (named uniquely per store object); ``host``, ``pid`` and ``started`` identify the
    process that took the hold."""

    name: str
    host: str
    pid: int
    started: str
    checkpoint: str | None = None

    @classmethod
    def for_process(cls) -> Holder:
        """A holder for this process alone: its holds are live while the process runs."""
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"process-{host}-{pid}-{uuid.uuid4().hex[:8]}", host, pid, _start_time(pid))

    @classmethod
    def for_run(cls, run_id: str, checkpoint: str | os.PathLike[str]) -> Holder:
        """A holder for the run ``run_id`` whose round checkpoint is the file ``checkpoint``:
        its holds stay live while the run can resume, and a later attempt of the same run
        (requeued, resumed on another node) takes them over under the same name."""
        host, pid = socket.gethostname(), os.getpid()
        return cls(run_id, host, pid, _start_time(pid), str(checkpoint))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> Holder | None:
        """The holder a hold file records (None if it is unreadable: a hold being written)."""
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def is_live(holder: Holder) -> bool:
    """Whether ``holder`` may still need what it holds (see the module docstring)."""
    if holder.checkpoint is not None and _checkpoint_belongs_to(holder.checkpoint, holder.name):
        return True
    if holder.host != socket.gethostname():
        return True  # its process cannot be seen from here
    return _process_alive(holder.pid, holder.started)


def _process_alive(pid: int, started: str) -> bool:
    """Whether process ``pid``, started at ``started`` ("" where that was not known), runs."""
    if started:
        return _start_time(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _checkpoint_belongs_to(path: str, identity: str) -> bool:
    """Whether the round checkpoint file ``path`` exists and was written by ``identity``
    (the ``identity`` field of :meth:`asvp.checkpoint.RoundCheckpoint.write`)."""
    try:
        return json.loads(Path(path).read_text()).get("identity") == identity
    except (OSError, ValueError, AttributeError):
        return False


def _start_time(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat``
    field 22), "" if there is no such process (or no ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # fields after the command name start at 3
