"""Wall-clock time per phase, measured, never estimated.

A :class:`PhaseTimer` adds the seconds spent inside ``with timer.phase(name):`` blocks to a
per-phase total. On CUDA it synchronises the device on entry and exit, so asynchronous kernels
are charged to the phase that launched them. Costs (:mod:`asvp.costs`) multiply these seconds
by the number of devices a cell ran on.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class PhaseTimer:
    """Accumulates wall seconds per named phase."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._synchronize()
            self.seconds[name] += time.perf_counter() - start

    def take(self) -> dict[str, float]:
        """Return the totals so far and start again from zero (one call per AL round)."""
        totals, self.seconds = dict(self.seconds), defaultdict(float)
        return totals
