"""Peak anonymous memory of this process, sampled from ``/proc/self/status``.

``ru_maxrss`` counts every resident page, including the pages of memory-mapped files that
the page cache holds for the process; a pool read from the feature store's memory map would
then look like private memory. ``RssAnon`` counts only anonymous pages (heap, tensors,
arrays): what the process itself allocated. The kernel keeps no peak of it, so a
background thread samples it (torch and numpy release the GIL during their work, so the
thread keeps sampling while they run). A spike shorter than the interval can be missed;
the sampled peak is a lower bound within that resolution.
"""

from __future__ import annotations

import threading
from pathlib import Path

SAMPLE_SECONDS = 0.005


def status_bytes(field: str) -> int:
    """The size ``field`` (``RssAnon``, ``VmRSS``, ...) of ``/proc/self/status`` in bytes; 0
    where ``/proc`` does not exist."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def anonymous_bytes() -> int:
    """``RssAnon`` of this process now, in bytes (0 where ``/proc`` does not exist)."""
    return status_bytes("RssAnon")


class AnonymousPeak:
    """``with AnonymousPeak() as peak: ...``; afterwards ``peak.bytes`` is the largest
    ``RssAnon`` seen while the block ran (its start and end included)."""

    def __init__(self, interval: float = SAMPLE_SECONDS) -> None:
        self.interval = interval
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.bytes = max(self.bytes, anonymous_bytes())

    def __enter__(self) -> AnonymousPeak:
        self.bytes = anonymous_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop sampling (on an exception too, which propagates) and take a last sample."""
        self._stop.set()
        self._thread.join()
        self.bytes = max(self.bytes, anonymous_bytes())
