"""The batch aggregate: claims and leases, the create's transitions, reconciliation, polling."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import pytest
from sqlalchemy import text

from orchestrator.domain.states import BatchStatus, ItemStatus, JobStatus
from orchestrator.store import batches as batches_module
from orchestrator.store.queries import Store
from orchestrator.store.records import Lease, RequestLine
from tests.unit.store.helpers import (
    ALL_BATCH_STATUSES,
    ENDPOINT,
    OWNER,
    T0,
    TTL,
    at,
    batch_in,
    created_batch,
    creating_batch,
    custom_id,
    ended_batch,
    item_ids,
    item_statuses,
    lease_batch,
    make_job,
    plan_batch,
    remote,
    remote_id_for,
    unknown_batch,
)

ABANDONED = "the worker stopped during the create"


def create_in_flight(store: Store, job_id: int, status: BatchStatus) -> Lease:
    """A leased batch whose create is ``creating`` or ``unknown``."""
    if status is BatchStatus.UNKNOWN:
        return unknown_batch(store, job_id)
    return creating_batch(store, job_id)


# -- claim_batches ----------------------------------------------------------------------


def test_claim_batches_takes_only_the_statuses_asked_for(store: Store) -> None:
    job = make_job(store, 2)
    ids = item_ids(store, job.id)
    plan_batch(store, job.id, ids[:1])
    running = created_batch(store, job.id, ids[1:])

    leases = store.claim_batches([BatchStatus.IN_PROGRESS], OWNER, T0, TTL)

    assert [(lease.row_id, lease.owner) for lease in leases] == [(running, OWNER)]


@pytest.mark.parametrize(
    ("later_s", "taken_over"),
    [
        pytest.param(TTL - 1, False, id="before-expiry"),
        pytest.param(TTL, False, id="at-the-expiry-instant"),
        pytest.param(TTL + 1, True, id="after-expiry"),
    ],
)
def test_claim_batches_skips_a_batch_under_a_live_lease(
    store: Store, later_s: float, taken_over: bool
) -> None:
    batch = plan_batch(store, make_job(store, 1).id)
    [first] = store.claim_batches([BatchStatus.PLANNED], "worker-a", T0, TTL)

    second = store.claim_batches([BatchStatus.PLANNED], "worker-b", at(later_s), TTL)

    if not taken_over:
        assert second == []
    else:
        assert [(lease.row_id, lease.owner) for lease in second] == [(batch, "worker-b")]
        assert second[0].version > first.version


@pytest.mark.parametrize(
    ("now_s", "due"),
    [
        pytest.param(99, False, id="before-next-attempt"),
        pytest.param(100, True, id="at-next-attempt"),
        pytest.param(101, True, id="after-next-attempt"),
    ],
)
def test_claim_batches_waits_for_next_attempt_at(store: Store, now_s: float, due: bool) -> None:
    lease = creating_batch(store, make_job(store, 1).id)
    assert store.return_to_planned(lease, "overloaded", at(100), T0)
    store.release_batch(lease)

    leases = store.claim_batches([BatchStatus.PLANNED], OWNER, at(now_s), TTL)

    assert [claimed.row_id for claimed in leases] == ([lease.row_id] if due else [])


def test_claim_batches_takes_the_oldest_first_up_to_the_limit(store: Store) -> None:
    job = make_job(store, 3)
    planned = [plan_batch(store, job.id, [i]) for i in item_ids(store, job.id)]

    first = store.claim_batches([BatchStatus.PLANNED], "worker-a", T0, TTL, limit=2)
    second = store.claim_batches([BatchStatus.PLANNED], "worker-b", T0, TTL, limit=2)

    assert [lease.row_id for lease in first] == planned[:2]
    assert [lease.row_id for lease in second] == planned[2:]


@pytest.mark.parametrize(
    ("failed_ingests", "claim_order"),
    [
        pytest.param([0, 0, 0], [0, 1, 2], id="none-failed-oldest-first"),
        pytest.param([1, 0, 0], [1, 2, 0], id="a-failing-batch-goes-last"),
        pytest.param([2, 0, 1], [1, 2, 0], id="fewest-failures-first"),
    ],
)
def test_claim_batches_takes_a_batch_whose_ingest_keeps_failing_last(
    store: Store, failed_ingests: list[int], claim_order: list[int]
) -> None:
    job = make_job(store, 3)
    ended = [ended_batch(store, job.id, items=[i]).batch_id for i in item_ids(store, job.id)]
    for batch, failures in zip(ended, failed_ingests, strict=True):
        for _ in range(failures):  # each download fails and is due again at once
            lease = lease_batch(store, batch, now=at(700))
            assert store.defer_ingest(lease, "HTTP 503", at(700), at(700))

    claimed = [
        store.claim_batches([BatchStatus.ENDED], f"worker-{n}", at(700), TTL, limit=1)
        for n in range(3)
    ]

    assert [[lease.row_id for lease in leases] for leases in claimed] == [
        [ended[i]] for i in claim_order
    ]
    assert [store.get_batch(b).ingest_attempts for b in ended] == failed_ingests


def test_claim_batches_for_one_job_leaves_other_jobs_batches(store: Store) -> None:
    mine = plan_batch(store, make_job(store, 1, name="mine").id)
    theirs = plan_batch(store, make_job(store, 1, name="theirs").id)
    job_id = store.get_batch(mine).job_id

    scoped = store.claim_batches([BatchStatus.PLANNED], OWNER, T0, TTL, job_id=job_id)
    rest = store.claim_batches([BatchStatus.PLANNED], "worker-b", T0, TTL)

    assert [lease.row_id for lease in scoped] == [mine]
    assert [lease.row_id for lease in rest] == [theirs]


# -- heartbeat, release_batch, holds_batch ----------------------------------------------


def test_heartbeat_extends_the_lease(store: Store) -> None:
    batch = plan_batch(store, make_job(store, 1).id)
    lease = lease_batch(store, batch)

    assert store.heartbeat(lease, at(TTL - 1), TTL)

    # Without the heartbeat the lease would have expired at T0 + TTL.
    assert store.claim_batches([BatchStatus.PLANNED], "worker-b", at(TTL + 1), TTL) == []
    assert store.holds_batch(lease)


def test_heartbeat_fails_once_the_lease_was_taken_over(store: Store) -> None:
    batch = plan_batch(store, make_job(store, 1).id)
    stale = lease_batch(store, batch)
    [current] = store.claim_batches([BatchStatus.PLANNED], "worker-b", at(TTL + 1), TTL)

    assert store.heartbeat(stale, at(TTL + 2), TTL) is False

    assert not store.holds_batch(stale)
    assert store.holds_batch(current)


def test_release_batch_lets_another_worker_claim_at_once(store: Store) -> None:
    batch = plan_batch(store, make_job(store, 1).id)
    lease = lease_batch(store, batch)

    store.release_batch(lease)

    assert not store.holds_batch(lease)
    [taken] = store.claim_batches([BatchStatus.PLANNED], "worker-b", at(1), TTL)
    assert taken.row_id == batch


def test_release_batch_with_a_stale_lease_leaves_the_new_holder_alone(store: Store) -> None:
    batch = plan_batch(store, make_job(store, 1).id)
    stale = lease_batch(store, batch)
    [current] = store.claim_batches([BatchStatus.PLANNED], "worker-b", at(TTL + 1), TTL)

    store.release_batch(stale)

    assert store.holds_batch(current)
    assert store.claim_batches([BatchStatus.PLANNED], "worker-c", at(TTL + 2), TTL) == []


# -- reading ----------------------------------------------------------------------------


def test_owned_remote_ids_maps_every_remote_batch_to_its_job(store: Store) -> None:
    first = make_job(store, 2, name="first")
    second = make_job(store, 1, name="second")
    ran = created_batch(store, first.id, item_ids(store, first.id)[:1])
    plan_batch(store, first.id)  # planned: no remote id yet
    ended = created_batch(store, second.id, status=BatchStatus.ENDED)

    assert store.owned_remote_ids() == {
        remote_id_for(ran): first.id,
        remote_id_for(ended): second.id,
    }


def test_request_lines_stream_every_request_in_planned_order_across_pages(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches_module, "REQUEST_PAGE_ROWS", 2)
    job = make_job(store, 5)
    params = {p.id: p.params_json for p in store.pending_items(job.id, 0, 10)}
    order = item_ids(store, job.id)[::-1]  # planned in reverse: request order, not item order
    batch = plan_batch(store, job.id, order)

    lines = list(store.request_lines(batch))

    assert lines == [RequestLine(custom_id(store, i), params[i]) for i in order]
    assert all(isinstance(line.params_json, bytes) for line in lines)


def test_request_rows_stream_while_another_connection_holds_the_write_lock(
    store: Store, store_url: str
) -> None:
    """A create's body is read while the worker's other thread writes (plans, ingests):
    the reads take no write lock, so they never wait behind a write transaction."""
    job = make_job(store, 5)
    batch = plan_batch(store, job.id, item_ids(store, job.id))
    writer = Store.open(store_url)
    holding, release, released = threading.Event(), threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        with writer.engine.begin() as conn:  # BEGIN IMMEDIATE on SQLite
            conn.execute(text("UPDATE jobs SET updated_at = updated_at"))
            holding.set()
            release.wait(5)
        released.set()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        assert holding.wait(10)
        rows = list(store.request_rows(batch))
        still_held = not released.is_set()
    finally:
        release.set()
        holder.join()
        writer.close()
    assert len(rows) == 5
    assert still_held  # read while the writer's transaction was open, not after it


# -- mark_creating ----------------------------------------------------------------------


def test_mark_creating_commits_the_intent_before_the_create(store: Store) -> None:
    batch = plan_batch(store, make_job(store, 1).id)
    lease = lease_batch(store, batch)

    assert store.mark_creating(lease, at(5), ENDPOINT)

    got = store.get_batch(batch)
    assert (got.status, got.intent_at, got.remote_id) == (BatchStatus.CREATING, at(5), None)


def test_mark_creating_refuses_without_the_lease(store: Store) -> None:
    batch = plan_batch(store, make_job(store, 1).id)
    stale = lease_batch(store, batch)
    store.claim_batches([BatchStatus.PLANNED], "worker-b", at(TTL + 1), TTL)

    assert store.mark_creating(stale, at(TTL + 2), ENDPOINT) is False

    got = store.get_batch(batch)
    assert (got.status, got.intent_at) == (BatchStatus.PLANNED, None)


def test_mark_creating_moves_only_a_planned_batch(store: Store) -> None:
    lease = creating_batch(store, make_job(store, 1).id)  # intent committed at T0

    assert store.mark_creating(lease, at(5), ENDPOINT) is False

    assert store.get_batch(lease.row_id).intent_at == T0


#: What becomes of the first create before the second one starts: (store, its lease).
Settle = Callable[[Store, Lease], None]


def _still_creating(store: Store, lease: Lease) -> None:
    pass


def _now_unknown(store: Store, lease: Lease) -> None:
    assert store.mark_unknown(lease, "read timeout", T0, None)


def _recorded(store: Store, lease: Lease) -> None:
    assert store.record_created(lease, remote(remote_id_for(lease.row_id)), T0)


def _replanned(store: Store, lease: Lease) -> None:
    assert store.return_to_planned(lease, "overloaded", at(100), T0)


def _rejected(store: Store, lease: Lease) -> None:
    assert store.mark_rejected(lease, "invalid_request_error", "too large", T0)


@pytest.mark.parametrize(
    ("settle", "same_job", "count", "allowed"),
    [
        pytest.param(_still_creating, False, 1, False, id="same-count-other-job"),
        pytest.param(_now_unknown, False, 1, False, id="same-count-other-job-first-unknown"),
        pytest.param(_still_creating, False, 2, True, id="other-count-other-job"),
        pytest.param(_now_unknown, False, 2, True, id="other-count-other-job-first-unknown"),
        pytest.param(_still_creating, True, 2, False, id="same-job-other-count"),
        pytest.param(_now_unknown, True, 2, False, id="same-job-first-unknown"),
        pytest.param(_recorded, False, 1, True, id="same-count-after-first-recorded"),
        pytest.param(_recorded, True, 2, True, id="same-job-after-first-recorded"),
        pytest.param(_replanned, False, 1, True, id="same-count-after-first-replanned"),
        pytest.param(_replanned, True, 2, True, id="same-job-after-first-replanned"),
        pytest.param(_rejected, False, 1, True, id="same-count-after-first-rejected"),
    ],
)
def test_mark_creating_allows_one_create_in_flight_per_request_count_and_per_job(
    store: Store, settle: Settle, same_job: bool, count: int, allowed: bool
) -> None:
    first_job = make_job(store, 3, name="first")
    first_ids = item_ids(store, first_job.id)
    first = creating_batch(store, first_job.id, first_ids[:1])  # one request
    settle(store, first)
    if same_job:
        job_id, ids = first_job.id, first_ids[1:]
    else:
        job_id = make_job(store, 2, name="second").id
        ids = item_ids(store, job_id)
    second = lease_batch(store, plan_batch(store, job_id, ids[:count]), now=at(1))

    assert store.mark_creating(second, at(2), ENDPOINT) is allowed

    got = store.get_batch(second.row_id)
    if allowed:
        assert (got.status, got.intent_at) == (BatchStatus.CREATING, at(2))
    else:
        assert (got.status, got.intent_at) == (BatchStatus.PLANNED, None)
        assert store.holds_batch(second)  # still leased: the worker tries again later
        # Once the first create is recorded, the second one goes out.
        _recorded(store, first)
        assert store.mark_creating(second, at(3), ENDPOINT)


def test_mark_creating_after_the_job_was_canceled_sends_nothing(store: Store) -> None:
    job = make_job(store, 1)
    lease = lease_batch(store, plan_batch(store, job.id))
    assert store.cancel_job(job.id, at(1)) == 0  # the planned batch is dropped

    assert store.mark_creating(lease, at(2), ENDPOINT) is False

    assert store.batches(ALL_BATCH_STATUSES, job.id) == []
    assert set(item_statuses(store, job.id).values()) == {ItemStatus.CANCELED}
    assert store.get_job(job.id).status is JobStatus.CANCELED


# -- record_created, mark_unknown -------------------------------------------------------


@pytest.mark.parametrize("from_status", [BatchStatus.CREATING, BatchStatus.UNKNOWN])
@pytest.mark.parametrize(
    "remote_status", [BatchStatus.IN_PROGRESS, BatchStatus.CANCELING, BatchStatus.ENDED]
)
@pytest.mark.parametrize("adopted", [False, True], ids=["created", "adopted"])
def test_record_created_names_the_remote_batch(
    store: Store, from_status: BatchStatus, remote_status: BatchStatus, adopted: bool
) -> None:
    job = make_job(store, 1)
    lease = create_in_flight(store, job.id, from_status)
    state = remote("msgbatch_01", remote_status, results_url="https://r/results")

    assert store.record_created(lease, state, at(3), adopted=adopted)

    got = store.get_batch(lease.row_id)
    assert (got.status, got.remote_id, got.remote_created_at) == (
        remote_status,
        "msgbatch_01",
        state.created_at,
    )
    assert (got.results_url, got.last_error, got.adopted) == ("https://r/results", None, adopted)
    assert store.owned_remote_ids() == {"msgbatch_01": job.id}


@pytest.mark.parametrize("from_status", [BatchStatus.CREATING, BatchStatus.UNKNOWN])
def test_record_created_refuses_a_remote_batch_another_row_holds(
    store: Store, from_status: BatchStatus
) -> None:
    owner = make_job(store, 1, name="owner")
    taken = remote_id_for(created_batch(store, owner.id))
    job = make_job(store, 2, name="late")
    lease = create_in_flight(store, job.id, from_status)
    before = store.get_batch(lease.row_id)

    # Two reconcilers matched the same listed batch: the second one loses, without a crash.
    assert store.record_created(lease, remote(taken), at(3), adopted=True) is False

    assert store.get_batch(lease.row_id) == before
    assert (before.status, before.remote_id, before.adopted) == (from_status, None, False)
    assert store.owned_remote_ids() == {taken: owner.id}
    # The lease is still good: the create can still be matched to its own batch.
    assert store.record_created(lease, remote("msgbatch_mine"), at(4), adopted=True)
    assert store.owned_remote_ids() == {taken: owner.id, "msgbatch_mine": job.id}


def test_record_created_refuses_a_batch_not_being_created(store: Store) -> None:
    lease = lease_batch(store, plan_batch(store, make_job(store, 1).id))

    assert store.record_created(lease, remote("msgbatch_01"), at(1)) is False

    assert store.get_batch(lease.row_id).status is BatchStatus.PLANNED
    assert store.owned_remote_ids() == {}


def test_record_created_refuses_a_stale_lease(store: Store) -> None:
    stale = creating_batch(store, make_job(store, 1).id)
    store.claim_batches([BatchStatus.CREATING], "worker-b", at(TTL + 1), TTL)

    assert store.record_created(stale, remote("msgbatch_01"), at(TTL + 2)) is False

    assert store.get_batch(stale.row_id).remote_id is None


@pytest.mark.parametrize(
    "reconcile_until",
    [pytest.param(None, id="derived-later"), pytest.param(at(3600), id="given")],
)
def test_mark_unknown_keeps_the_create_for_reconciliation(
    store: Store, reconcile_until: datetime | None
) -> None:
    lease = creating_batch(store, make_job(store, 1).id)

    assert store.mark_unknown(lease, "read timeout", at(1), reconcile_until)

    got = store.get_batch(lease.row_id)
    assert (got.status, got.last_error, got.intent_at) == (BatchStatus.UNKNOWN, "read timeout", T0)
    assert (got.reconcile_until, got.remote_id, got.adopted) == (reconcile_until, None, False)


def test_mark_unknown_only_from_creating(store: Store) -> None:
    lease = lease_batch(store, plan_batch(store, make_job(store, 1).id))

    assert store.mark_unknown(lease, "read timeout", at(1), at(3600)) is False

    got = store.get_batch(lease.row_id)
    assert (got.status, got.last_error, got.reconcile_until) == (BatchStatus.PLANNED, None, None)


# -- a create that made nothing: return_to_planned, drop_canceled_create ----------------


@pytest.mark.parametrize("from_status", [BatchStatus.CREATING, BatchStatus.UNKNOWN])
def test_return_to_planned_sends_the_batch_again_later(
    store: Store, from_status: BatchStatus
) -> None:
    job = make_job(store, 1)
    lease = create_in_flight(store, job.id, from_status)

    assert store.return_to_planned(lease, "overloaded", at(100), at(1))

    got = store.get_batch(lease.row_id)
    assert (got.status, got.intent_at, got.last_error) == (BatchStatus.PLANNED, None, "overloaded")
    assert set(item_statuses(store, job.id).values()) == {ItemStatus.QUEUED}
    # Due again at retry_at (the claim tests pin the exact instant).
    store.release_batch(lease)
    assert store.claim_batches([BatchStatus.PLANNED], OWNER, at(99), TTL) == []
    assert len(store.claim_batches([BatchStatus.PLANNED], OWNER, at(100), TTL)) == 1


@pytest.mark.parametrize("from_status", [BatchStatus.CREATING, BatchStatus.UNKNOWN])
def test_return_to_planned_refuses_a_canceled_create(
    store: Store, from_status: BatchStatus
) -> None:
    job = make_job(store, 1)
    lease = create_in_flight(store, job.id, from_status)
    assert store.cancel_job(job.id, at(1)) == 1
    before = store.get_batch(lease.row_id)

    assert store.return_to_planned(lease, "overloaded", at(100), at(2)) is False

    assert store.get_batch(lease.row_id) == before
    assert (before.status, before.cancel_requested) == (from_status, True)


@pytest.mark.parametrize("from_status", [BatchStatus.CREATING, BatchStatus.UNKNOWN])
def test_drop_canceled_create_deletes_the_batch_and_cancels_its_items(
    store: Store, from_status: BatchStatus
) -> None:
    job = make_job(store, 1)
    lease = create_in_flight(store, job.id, from_status)
    store.cancel_job(job.id, at(1))

    assert store.drop_canceled_create(lease, at(2))

    assert store.batches(ALL_BATCH_STATUSES, job.id) == []
    assert store.request_refs(lease.row_id, 0, 10) == []
    assert set(item_statuses(store, job.id).values()) == {ItemStatus.CANCELED}


def test_drop_canceled_create_refuses_a_create_nobody_canceled(store: Store) -> None:
    job = make_job(store, 1)
    lease = creating_batch(store, job.id)

    assert store.drop_canceled_create(lease, at(1)) is False

    assert store.get_batch(lease.row_id).status is BatchStatus.CREATING
    assert set(item_statuses(store, job.id).values()) == {ItemStatus.QUEUED}


# -- mark_rejected ----------------------------------------------------------------------


def test_mark_rejected_fails_the_batch_items_with_the_api_reason(store: Store) -> None:
    job = make_job(store, 2)
    ids = item_ids(store, job.id)
    lease = creating_batch(store, job.id, ids[:1])

    assert store.mark_rejected(lease, "invalid_request_error", "requests: too large", at(1))

    got = store.get_batch(lease.row_id)
    assert (got.status, got.last_error) == (BatchStatus.REJECTED, "requests: too large")
    rows = list(store.final_results(job.id))
    assert [(r["status"], r["error_type"], r["error_message"]) for r in rows] == [
        (ItemStatus.FAILED, "invalid_request_error", "requests: too large"),
        (ItemStatus.PENDING, None, None),
    ]


def test_mark_rejected_only_from_creating(store: Store) -> None:
    job = make_job(store, 1)
    lease = lease_batch(store, plan_batch(store, job.id))

    assert store.mark_rejected(lease, "invalid_request_error", "too large", at(1)) is False

    assert store.get_batch(lease.row_id).status is BatchStatus.PLANNED
    assert set(item_statuses(store, job.id).values()) == {ItemStatus.QUEUED}


# -- abandoned_creates ------------------------------------------------------------------


def test_abandoned_creates_hands_creates_nobody_works_on_to_reconciliation(store: Store) -> None:
    # Creates in flight together have different request counts (one per count).
    expired = creating_batch(store, make_job(store, 1, name="expired").id)
    released = creating_batch(store, make_job(store, 2, name="released").id)
    store.release_batch(released)
    live = creating_batch(store, make_job(store, 3, name="live").id, now=at(TTL))

    assert store.abandoned_creates(at(TTL + 1)) == 2

    got = {b.id: (b.status, b.last_error) for b in store.batches(ALL_BATCH_STATUSES)}
    assert got == {
        expired.row_id: (BatchStatus.UNKNOWN, ABANDONED),
        released.row_id: (BatchStatus.UNKNOWN, ABANDONED),
        live.row_id: (BatchStatus.CREATING, None),
    }
    assert store.holds_batch(live)
    reconcile = store.claim_batches([BatchStatus.UNKNOWN], "reconciler", at(TTL + 1), TTL)
    assert [lease.row_id for lease in reconcile] == [expired.row_id, released.row_id]


def test_abandoned_creates_for_one_job_leaves_other_jobs_creates(store: Store) -> None:
    mine = creating_batch(store, make_job(store, 1, name="mine").id)
    theirs = creating_batch(store, make_job(store, 2, name="theirs").id)
    job_id = store.get_batch(mine.row_id).job_id

    assert store.abandoned_creates(at(TTL + 1), job_id=job_id) == 1

    assert store.get_batch(mine.row_id).status is BatchStatus.UNKNOWN
    assert store.get_batch(theirs.row_id).status is BatchStatus.CREATING


# -- update_remote_state ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "applied"),
    [
        (BatchStatus.IN_PROGRESS, True),
        (BatchStatus.CANCELING, True),
        (BatchStatus.ENDED, False),
        (BatchStatus.PLANNED, False),
        (BatchStatus.CREATING, False),
        (BatchStatus.UNKNOWN, False),
    ],
)
def test_update_remote_state_applies_only_to_open_remote_batches(
    store: Store, status: BatchStatus, applied: bool
) -> None:
    batch = batch_in(store, make_job(store, 1).id, status)
    before = store.get_batch(batch)
    report = remote(
        remote_id_for(batch),
        BatchStatus.ENDED,
        results_url="https://r/results",
        counts=(1, 0, 0, 0),
    )

    assert store.update_remote_state(batch, report, at(600)) is applied

    after = store.get_batch(batch)
    if applied:
        assert (after.status, after.results_url) == (BatchStatus.ENDED, "https://r/results")
    else:
        assert after == before
