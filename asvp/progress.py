"""Progress lines for long loops (feature extraction over ImageNet takes many minutes).

Written to stderr, so they land in a cell's log file (local executor) or its SLURM output, at
most every ``interval`` seconds plus once at the end: enough to see a job is alive and when it
will finish, without flooding a log with one line per batch.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts processed items of a known total and prints rate and remaining time."""

    def __init__(
        self, what: str, total: int, interval: float = 30.0, stream: TextIO | None = None
    ) -> None:
        self.what = what
        self.total = total
        self.interval = interval
        self.stream = stream or sys.stderr
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
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        remaining = (self.total - self.done) / rate if rate > 0 else float("inf")
        percent = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{self.what}: {self.done:,}/{self.total:,} ({percent:.0f}%), {rate:,.1f}/s, "
            f"{elapsed:,.0f} s elapsed, about {remaining:,.0f} s left"
        )
