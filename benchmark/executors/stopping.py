"""Stopping a grid on SIGINT or SIGTERM (Ctrl-C, ``kill``), so that the next ``run`` resumes it.

Two handlers, each for both signals, installed only for as long as they are needed:

- :func:`stop_requests`, around a driver's loop over cells: it notes the first signal and raises
  nothing, so that the driver stops starting cells at a point of its choosing (never halfway
  through recording a result) and tells the running ones to stop.
- :func:`interruptible`, around a running cell: it raises :class:`CellInterrupted` in the cell
  at once, unless the cell is inside the tracking store's code (MLflow, SQLAlchemy, sqlite3):
  an exception there would leave a database transaction open and its write lock held (MLflow
  rolls back on ``Exception`` only), and recording the stop would then wait on that lock and
  fail. There the raise waits for the store's call to return, checked every
  :data:`DEFER_SECONDS` (SIGALRM). The job records its run as killed
  (:meth:`benchmark.tracking.CellLogger.killed`); its round checkpoint holds every finished
  round, so a later attempt continues from there. Only the first signal raises: one sent while
  the stop is being recorded (a terminal's Ctrl-C reaches the cell, then the driver's SIGTERM
  follows) is ignored.

Standard library only.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["STOP_SIGNALS", "CellInterrupted", "StopRequests", "interruptible", "stop_requests"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEFER_SECONDS = 0.05
_STORE_PACKAGES = frozenset({"mlflow", "sqlalchemy", "sqlite3"})

_Handler = Callable[[int, FrameType | None], object]


class CellInterrupted(BaseException):
    """Raised in a running cell by SIGINT or SIGTERM. A ``BaseException``, like
    ``KeyboardInterrupt``, so that no ``except Exception`` in the cell's code records it as a
    failure or retries through it."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")


class StopRequests:
    """The driver's handler: remembers the first stop signal (``signal_name``; None while none
    came) and raises nothing."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name


@contextmanager
def stop_requests() -> Iterator[StopRequests]:
    """SIGINT and SIGTERM noted, not raised, for the duration (in the main thread; elsewhere
    signals cannot be handled and nothing is installed)."""
    requests = StopRequests()
    with _handling(requests):
        yield requests


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`CellInterrupted` here, the first one only, once the cell
    is outside the tracking store's code."""
    received: list[int] = []

    def raise_when_safe(frame: FrameType | None) -> None:
        if _inside_store(frame):
            signal.setitimer(signal.ITIMER_REAL, DEFER_SECONDS)
            return
        raise CellInterrupted(received[0])

    def stop(signum: int, frame: FrameType | None) -> None:
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        received.append(signum)
        raise_when_safe(frame)

    def retry(signum: int, frame: FrameType | None) -> None:
        raise_when_safe(frame)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    alarm = signal.signal(signal.SIGALRM, retry)
    try:
        with _handling(stop):
            yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, alarm)


def _inside_store(frame: FrameType | None) -> bool:
    """Whether ``frame`` or a caller of it runs code of the tracking store's packages."""
    while frame is not None:
        package = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        if package in _STORE_PACKAGES:
            return True
        frame = frame.f_back
    return False


@contextmanager
def _handling(handler: _Handler) -> Iterator[None]:
    """``handler`` for both stop signals for the duration, the previous handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, before)
