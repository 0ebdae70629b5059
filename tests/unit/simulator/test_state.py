"""The lifecycle state machine on a ManualClock (§2.2, §6)."""

from __future__ import annotations

import pytest

from orchestrator.simulator import ManualClock
from orchestrator.simulator.ids import rfc3339
from orchestrator.simulator.state import NotFound, RateLimited
from orchestrator.simulator.validation import InvalidRequest

from .conftest import make_state, pairs

BASE = "http://sim"


def _counts_sum(counts: dict[str, int]) -> int:
    return sum(counts.values())


def test_counts_stay_processing_until_ended_then_sum_to_n(clock: ManualClock) -> None:
    state = make_state(clock, errored_share={"api_error": 0.3}, expired_share=0.2)
    batch = state.create_batch(pairs(50), frozenset())
    clock.advance(99.9)
    counts = state.get(batch.id).request_counts()
    assert counts["processing"] == 50
    assert _counts_sum(counts) == 50
    clock.advance(0.2)
    ended = state.batch_json(state.get(batch.id), BASE)
    assert ended["processing_status"] == "ended"
    assert ended["request_counts"]["processing"] == 0
    assert _counts_sum(ended["request_counts"]) == 50
    assert ended["ended_at"] == rfc3339(batch.created_at + 100)
    assert ended["results_url"] == f"{BASE}/v1/messages/batches/{batch.id}/results"


def test_processing_time_jitter_is_seeded_and_bounded(clock: ManualClock) -> None:
    state = make_state(clock, processing_jitter=0.5)
    ends = [state.create_batch(pairs(1), frozenset()).ends_at - clock.now() for _ in range(20)]
    assert all(50 <= end <= 150 for end in ends)
    assert len(set(ends)) > 1


def test_expires_exactly_24h_after_creation(clock: ManualClock) -> None:
    state = make_state(clock)
    body = state.batch_json(state.create_batch(pairs(1), frozenset()), BASE)
    assert body["expires_at"] == rfc3339(clock.now() + 86_400)
    assert body["created_at"].endswith("Z")
    assert len(body["created_at"]) == 27


def test_too_slow_batch_ends_at_expiry_with_everything_expired(clock: ManualClock) -> None:
    state = make_state(clock, processing_seconds=500.0, expiry_seconds=60.0)
    batch = state.create_batch(
        [*pairs(3), ("bad", {"model": "nope", "max_tokens": 1})], frozenset()
    )
    clock.advance(60)
    counts = state.get(batch.id).request_counts()
    assert counts == {"processing": 0, "succeeded": 0, "errored": 1, "canceled": 0, "expired": 3}
    assert state.get(batch.id).ended_at == batch.expires_at


def test_cancel_lifecycle(clock: ManualClock) -> None:
    state = make_state(clock, cancel_seconds=5.0, cancel_inflight_share=0.3)
    batch = state.create_batch(pairs(100), frozenset())
    state.cancel(batch.id)
    assert batch.processing_status == "canceling"
    assert batch.cancel_initiated_at == clock.now()
    assert batch.request_counts()["processing"] == 100  # §6.3: counts unchanged while canceling
    clock.advance(1)
    state.cancel(batch.id)
    assert batch.cancel_initiated_at == clock.now() - 1  # second cancel: unchanged
    clock.advance(4)
    counts = state.get(batch.id).request_counts()
    assert batch.processing_status == "ended"
    assert counts["canceled"] + counts["succeeded"] == 100
    assert 15 <= counts["succeeded"] <= 45
    with pytest.raises(InvalidRequest):
        state.cancel(batch.id)


def test_natural_end_before_cancel_completes_wins(clock: ManualClock) -> None:
    state = make_state(clock, cancel_seconds=50.0)
    batch = state.create_batch(pairs(10), frozenset())
    clock.advance(90)
    state.cancel(batch.id)
    clock.advance(10)
    assert state.get(batch.id).request_counts()["succeeded"] == 10


def test_delete_only_when_ended_then_404(clock: ManualClock) -> None:
    state = make_state(clock)
    batch = state.create_batch(pairs(2), frozenset())
    with pytest.raises(InvalidRequest, match="in_progress"):
        state.delete(batch.id)
    clock.advance(100)
    state.delete(batch.id)
    with pytest.raises(NotFound):
        state.get(batch.id)
    with pytest.raises(NotFound):
        state.delete(batch.id)
    assert state.list_page(None, None, 20) == ([], False)


def test_archived_after_retention_from_created_at(clock: ManualClock) -> None:
    state = make_state(clock, retention_seconds=1000.0)
    batch = state.create_batch(pairs(1), frozenset())
    clock.advance(999)
    assert not state.is_archived(state.get(batch.id))
    clock.advance(1)
    assert state.is_archived(batch)
    assert state.batch_json(batch, BASE)["archived_at"] == rfc3339(batch.created_at + 1000)
    state.configure(archive_after_seconds=5000.0)
    assert not state.is_archived(batch)


def test_queue_limit_is_a_429_with_retry_after(clock: ManualClock) -> None:
    state = make_state(clock, queue_limit=10)
    state.create_batch(pairs(8), frozenset())
    with pytest.raises(RateLimited) as raised:
        state.create_batch(pairs(3, "q"), frozenset())
    assert raised.value.retry_after == 100
    clock.advance(100)
    assert state.create_batch(pairs(3, "q"), frozenset()).id


def test_paid_counts_only_succeeded(clock: ManualClock) -> None:
    state = make_state(clock, expired_share=0.5)
    state.create_batch(pairs(40), frozenset())
    clock.advance(100)
    state.batches()
    succeeded = state.batches()[0].request_counts()["succeeded"]
    assert sum(state.ledger.paid.values()) == succeeded
    assert state.ledger.submissions["r0"] == 1


def test_configure_validates_and_replaces(clock: ManualClock) -> None:
    state = make_state(clock)
    assert state.configure(fault_500_share=0.5).fault_500_share == 0.5
    with pytest.raises(ValueError, match="errored_share"):
        state.configure(errored_share={"bogus_error": 0.1})
