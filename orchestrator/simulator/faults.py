"""Fault injection per HTTP call (§11): 408, 429 with retry-after, 500, 529, scripted faults.

Each API call consumes exactly one draw from a seeded generator, so a run with the same
seed and the same sequence of calls sees the same faults. ``inject(...)`` queues exact
statuses for the next calls, e.g. ``sim.state.faults.inject(429)`` for "the first call
is rate limited, the retry succeeds".
"""

from __future__ import annotations

import random
import threading
from collections import deque

from .config import SimulatorConfig
from .ids import digest64

#: §7.1: the error type that goes with each injectable status.
ERROR_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
MESSAGES = {
    408: "Simulated request timeout.",
    429: "Simulated rate limit: please retry after the retry-after delay.",
    500: "Simulated internal server error.",
    529: "Simulated overload.",
}


class Faults:
    """Decides, call by call, whether to answer with an injected error status."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(digest64(seed, "faults"))
        self._draws = random.Random(digest64(seed, "fault-draws"))
        self._queue: deque[int] = deque()
        self._lock = threading.Lock()

    def inject(self, *statuses: int) -> None:
        """Answer the next API calls with these statuses, in order."""
        unknown = [s for s in statuses if s not in ERROR_TYPE_BY_STATUS]
        if unknown:
            raise ValueError(f"cannot inject statuses {unknown}")
        with self._lock:
            self._queue.extend(statuses)

    def next_status(self, config: SimulatorConfig) -> int | None:
        """The injected status for this call, or None to serve it normally."""
        with self._lock:
            draw = self._rng.random()
            if self._queue:
                return self._queue.popleft()
        edge = 0.0
        for status, share in (
            (408, config.fault_408_share),
            (429, config.fault_429_share),
            (500, config.fault_500_share),
            (529, config.fault_529_share),
        ):
            edge += share
            if draw < edge:
                return status
        return None

    def chance(self, share: float) -> bool:
        """A seeded coin for per-response faults (lost create, cut results)."""
        with self._lock:
            draw = self._draws.random()
        return draw < share

    def cut_point(self, lines: int) -> int:
        """How many complete lines a cut results stream delivers before dropping."""
        with self._lock:
            return self._draws.randrange(max(lines, 1))
