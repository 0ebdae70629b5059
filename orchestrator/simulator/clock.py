"""Clocks the simulator reads time from.

The lifecycle (§6) is computed lazily from ``clock.now()`` on every access, so a test
drives a batch from ``in_progress`` to ``ended`` (or archived) by advancing a
:class:`ManualClock` instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

#: 2026-11-21T00:00:00Z, the default start of a ManualClock (seconds since the epoch).
MANUAL_CLOCK_START_S = 1_795_219_200.0


class Clock(Protocol):
    """Anything that tells the time in seconds since the Unix epoch (UTC)."""

    def now(self) -> float: ...


class RealClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; safe to advance from another thread."""

    def __init__(self, start: float = MANUAL_CLOCK_START_S) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("a ManualClock only moves forward")
        with self._lock:
            self._now += seconds
            return self._now
