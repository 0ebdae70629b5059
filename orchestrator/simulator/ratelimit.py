"""§7.4: requests per minute across the batch endpoints, as a sliding 60-second window."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

#: The RPM window length.
WINDOW_S = 60.0
#: §7.4 Start tier, reported as the limit when no rpm_limit is configured.
NOMINAL_RPM = 1_000


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of one call against the window."""

    admitted: bool
    limit: int
    remaining: int
    reset_at: float

    def retry_after(self, now: float) -> int:
        """Whole seconds until a slot frees (at least 1)."""
        return max(1, math.ceil(self.reset_at - now))


class RpmWindow:
    """Admits at most ``limit`` calls in any 60 seconds of simulator time."""

    def __init__(self) -> None:
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self, now: float, limit: int | None) -> Admission:
        with self._lock:
            while self._calls and self._calls[0] <= now - WINDOW_S:
                self._calls.popleft()
            if limit is None:
                return Admission(True, NOMINAL_RPM, NOMINAL_RPM, now + WINDOW_S)
            admitted = len(self._calls) < limit
            if admitted:
                self._calls.append(now)
            reset_at = self._calls[0] + WINDOW_S if self._calls else now
            return Admission(admitted, limit, limit - len(self._calls), reset_at)
