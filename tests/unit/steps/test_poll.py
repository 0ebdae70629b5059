"""poll's listing rule: read newest-first pages until every open batch was seen, or the
listing has gone past the oldest of them (what it missed is retrieved by id)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.domain.states import BatchStatus
from orchestrator.steps.poll import listing_cutoff, listing_done
from orchestrator.store.records import BatchRecord

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def open_batch(batch_id: int, created: datetime | None) -> BatchRecord:
    return BatchRecord(
        id=batch_id,
        job_id=1,
        status=BatchStatus.IN_PROGRESS,
        remote_id=f"msgbatch_{batch_id}",
        request_count=10,
        body_bytes=1000,
        intent_at=None,
        remote_created_at=created,
        results_url=None,
        cancel_requested=False,
        ingest_attempts=0,
        last_error=None,
    )


@pytest.mark.parametrize(
    ("created", "cutoff"),
    [
        ([T0, T0 + timedelta(hours=1)], T0 - timedelta(seconds=30)),
        ([T0 + timedelta(hours=1), None], T0 + timedelta(hours=1) - timedelta(seconds=30)),
        ([None], None),
        ([], None),
    ],
)
def test_cutoff_is_the_oldest_known_creation_less_the_skew(
    created: list[datetime | None], cutoff: datetime | None
) -> None:
    batches = [open_batch(i, c) for i, c in enumerate(created, start=1)]
    assert listing_cutoff(batches, skew_s=30) == cutoff


@pytest.mark.parametrize(
    ("found", "wanted", "listed_at", "cutoff", "done"),
    [
        (3, 3, T0, None, True),  # all seen
        (2, 3, T0, None, False),  # no cutoff: keep reading
        (2, 3, T0 - timedelta(seconds=1), T0, True),  # listing went past the oldest
        (2, 3, T0, T0, False),  # exactly at the cutoff: still in range
        (0, 1, T0 + timedelta(days=1), T0, False),
    ],
)
def test_listing_done(
    found: int, wanted: int, listed_at: datetime, cutoff: datetime | None, done: bool
) -> None:
    assert listing_done(found, wanted, listed_at, cutoff) is done
