"""Progress lines: what a cell is doing, for the person waiting on it.

Written to stderr, so they land in a cell's log file (local executor) or its SLURM output,
each starting with :data:`PROGRESS_PREFIX`, so that a driver following a log (``asvp-bench run``
with the local executor) picks them out of everything else there and prints them
(:func:`progress_message`). :func:`announce` writes one such line (a cell started, a round
ended); :class:`Progress` counts a long loop (feature extraction over ImageNet takes many
minutes) and writes one at most every ``interval`` seconds and once at the end: enough to see
that a job is alive and when it will finish, without one line per batch.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["PROGRESS_PREFIX", "Progress", "announce", "progress_message"]

PROGRESS_PREFIX = "[progress] "
"""How a progress line starts in a cell's log."""


def announce(message: str, stream: TextIO | None = None) -> None:
    """Write ``message`` as a progress line to ``stream`` (default: stderr), at once."""
    print(f"{PROGRESS_PREFIX}{message}", file=stream or sys.stderr, flush=True)


def progress_message(line: str) -> str | None:
    """The message of a progress line of a log, or None for any other line."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    return line[len(PROGRESS_PREFIX) :].rstrip()


class Progress:
    """Counts processed items of a known total and prints rate and remaining time: as progress
    lines on stderr, or as bare lines on ``stream`` if one is given."""

    def __init__(
        self, what: str, total: int, interval: float = 10.0, stream: TextIO | None = None
    ) -> None:
        self.what = what
        self.total = total
        self.interval = interval
        self.stream = stream or sys.stderr
        self.prefix = PROGRESS_PREFIX if stream is None else ""
        self.done = 0
        self._start = time.perf_counter()
        self._last = self._start

    def advance(self, count: int) -> None:
        """Add ``count`` processed items; print a line if ``interval`` has passed or all are
        done."""
        self.done += count
        now = time.perf_counter()
        if now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            print(f"{self.prefix}{self.line(now)}", file=self.stream, flush=True)

    def line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        remaining = (self.total - self.done) / rate if rate > 0 else float("inf")
        percent = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{self.what}: {self.done:,}/{self.total:,} ({percent:.0f}%), {rate:,.1f}/s, "
            f"{elapsed:,.0f} s elapsed, about {remaining:,.0f} s left"
        )
