"""One stored batch and its lifecycle (§6.1), computed lazily from the clock.

::

    create ──► in_progress ──(ends_at)───────────────► ended
                   │  └──(expires_at: rest expired)──► ended
                   └─cancel─► canceling ──(cancel_ends_at)──► ended
    ended ──(created_at + retention)──► archived_at set (results 404)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import outcomes
from .ids import rfc3339
from .model import Prompt


@dataclass(slots=True)
class Batch:
    """A batch as stored: per request only its custom_id, a Prompt sketch and a code."""

    id: str
    created_at: float
    expires_at: float
    #: When processing completes on its own (== expires_at when it is too slow, §6.4).
    ends_at: float
    custom_ids: list[str]
    prompts: list[Prompt]
    #: outcomes.* code per request if the batch runs to completion.
    scripted: bytearray
    cancel_initiated_at: float | None = None
    cancel_ends_at: float | None = None
    ended_at: float | None = None
    #: Final outcome code per request, set when the batch ends.
    outcomes: bytearray | None = None
    counts: dict[str, int] = field(default_factory=dict)
    #: The seed the batch was created under (replies stay stable if knobs change).
    seed: int = 0

    @property
    def processing_status(self) -> str:
        if self.ended_at is not None:
            return "ended"
        return "in_progress" if self.cancel_initiated_at is None else "canceling"

    @property
    def times_out(self) -> bool:
        return self.ends_at >= self.expires_at

    def due_end(self) -> float | None:
        """When this batch ends if nothing else happens (None once ended)."""
        if self.ended_at is not None:
            return None
        return min(self.ends_at, self.cancel_ends_at or self.ends_at)

    def request_counts(self) -> dict[str, int]:
        """§2.2: processing == N until ended, then the four buckets (sum == N)."""
        if self.outcomes is None:
            counts = dict.fromkeys(("succeeded", "errored", "canceled", "expired"), 0)
            return {"processing": len(self.custom_ids), **counts}
        return self.counts

    def archived_at(self, now: float, archive_seconds: float) -> float | None:
        """§5.6: archived once created_at + retention has passed (and it has ended)."""
        if self.ended_at is None:
            return None
        moment = max(self.created_at + archive_seconds, self.ended_at)
        return moment if now >= moment else None

    def to_json(self, now: float, archive_seconds: float, base_url: str) -> dict[str, Any]:
        """§2.1: all ten fields, nullable ones as null."""
        ended = self.ended_at is not None
        archived = self.archived_at(now, archive_seconds)
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.processing_status,
            "request_counts": self.request_counts(),
            "ended_at": _stamp(self.ended_at),
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "archived_at": _stamp(archived),
            "cancel_initiated_at": _stamp(self.cancel_initiated_at),
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results" if ended else None,
        }


def _stamp(moment: float | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def finish(batch: Batch, inflight: list[bool]) -> list[str]:
    """End the batch at its due time; returns the custom_ids that succeeded (billed, §5.4)."""
    end = batch.due_end()
    assert end is not None
    canceled = batch.cancel_ends_at is not None and batch.cancel_ends_at < batch.ends_at
    if canceled:
        final = bytes(
            outcomes.canceled_outcome(c, f) for c, f in zip(batch.scripted, inflight, strict=True)
        )
    elif batch.times_out:
        final = bytes(outcomes.expired_outcome(code) for code in batch.scripted)
    else:
        final = bytes(batch.scripted)
    batch.outcomes = bytearray(final)
    batch.ended_at = end
    batch.counts = _counts(batch.outcomes)
    return [
        cid for cid, code in zip(batch.custom_ids, final, strict=True) if code == outcomes.SUCCEEDED
    ]


def _counts(codes: bytearray) -> dict[str, int]:
    expired, canceled, succeeded = (
        codes.count(c) for c in (outcomes.EXPIRED, outcomes.CANCELED, outcomes.SUCCEEDED)
    )
    errored = len(codes) - expired - canceled - succeeded
    return {
        "processing": 0,
        "succeeded": succeeded,
        "errored": errored,
        "canceled": canceled,
        "expired": expired,
    }
