"""What the simulator did, so tests can prove nothing was submitted or paid twice.

Shape (``Ledger.to_json()`` and ``GET /_simulator/ledger``)::

    {"batches": [{"id", "created_at", "request_count", "custom_ids": [...],
                  "response_lost": bool, "api_version", "betas": [...]}],
     "submissions": {custom_id: times submitted across all batches},
     "served": [{"batch_id", "custom_id", "type"}],   # every result line fully sent
     "calls": {endpoint: n},                           # every HTTP call, faulted or not
     "responses": {"endpoint status": n},              # e.g. "create 429"
     "paid": {custom_id: succeeded results across ended batches}}
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .ids import rfc3339


@dataclass(frozen=True, slots=True)
class LedgerBatch:
    """One created batch (including creates whose response was lost)."""

    id: str
    created_at: float
    request_count: int
    custom_ids: tuple[str, ...]
    #: The create's anthropic-version and anthropic-beta values.
    api_version: str = ""
    betas: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServedLine:
    """One result line that was completely written to a client."""

    batch_id: str
    custom_id: str
    type: str


@dataclass
class Ledger:
    """Append-only record of batches, submissions, served lines and calls."""

    batches: list[LedgerBatch] = field(default_factory=list)
    submissions: Counter[str] = field(default_factory=Counter)
    served: list[ServedLine] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)
    paid: Counter[str] = field(default_factory=Counter)
    lost_responses: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_batch(self, batch: LedgerBatch) -> None:
        with self._lock:
            self.batches.append(batch)
            self.submissions.update(batch.custom_ids)

    def record_call(self, endpoint: str) -> None:
        with self._lock:
            self.calls[endpoint] += 1

    def record_response(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.responses[f"{endpoint} {status}"] += 1

    def record_served(self, lines: list[ServedLine]) -> None:
        with self._lock:
            self.served.extend(lines)

    def record_paid(self, custom_ids: list[str]) -> None:
        """§5.4: only succeeded requests are billed; called once when a batch ends."""
        with self._lock:
            self.paid.update(custom_ids)

    def served_count(self, batch_id: str) -> int:
        with self._lock:
            return sum(1 for line in self.served if line.batch_id == batch_id)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "batches": [_batch_json(b, b.id in self.lost_responses) for b in self.batches],
                "submissions": dict(self.submissions),
                "served": [
                    {"batch_id": s.batch_id, "custom_id": s.custom_id, "type": s.type}
                    for s in self.served
                ],
                "calls": dict(self.calls),
                "responses": dict(self.responses),
                "paid": dict(self.paid),
            }


def _batch_json(batch: LedgerBatch, lost: bool) -> dict[str, Any]:
    return {
        "id": batch.id,
        "created_at": rfc3339(batch.created_at),
        "request_count": batch.request_count,
        "custom_ids": list(batch.custom_ids),
        "response_lost": lost,
        "api_version": batch.api_version,
        "betas": list(batch.betas),
    }
