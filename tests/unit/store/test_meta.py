"""Store-wide facts: the tag in every custom_id, the shared API back-off, and the
leases of each worker as a whole (listed, freed when it is gone, renewed while it lives)."""

from __future__ import annotations

import re

import pytest

from orchestrator.domain.states import BatchStatus
from orchestrator.store.queries import Store
from orchestrator.store.records import BackoffState
from tests.unit.store.helpers import T0, TTL, at, item_ids, lease_batch, make_job, plan_batch


def test_store_tag_is_made_once_per_store(store: Store, store_url: str) -> None:
    tag = store.store_tag()

    again = Store.open(store_url)  # another process on the same database
    try:
        assert again.store_tag() == tag
    finally:
        again.close()
    assert re.fullmatch(r"[a-z0-9]{6}", tag)


def test_there_is_no_back_off_until_one_is_set(store: Store) -> None:
    assert store.backoff_until("messages") is None
    assert store.backoff("messages") is None


def test_set_backoff_upserts_one_deadline_per_scope(store: Store) -> None:
    store.set_backoff("messages", at(30), "429 rate_limit_error")
    store.set_backoff("messages", at(90), "529 overloaded_error")
    store.set_backoff("other", at(10), "429 rate_limit_error")

    assert store.backoff_until("messages") == at(90)
    assert store.backoff("messages") == BackoffState(at(90), "529 overloaded_error")
    assert store.backoff_until("other") == at(10)


def test_the_last_back_off_written_wins_even_when_it_is_earlier(store: Store) -> None:
    store.set_backoff("messages", at(90), "529 overloaded_error")
    store.set_backoff("messages", at(30), "429 retry-after: 30")

    assert store.backoff_until("messages") == at(30)


# -- leases by holder ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now_s", "holders"),
    [
        pytest.param(1, {"planner", "worker-a"}, id="both-live"),
        pytest.param(TTL - 1, {"planner", "worker-a"}, id="before-the-job-lease-expires"),
        pytest.param(TTL + 1, {"worker-a"}, id="job-lease-expired"),
        pytest.param(30 + TTL + 1, set(), id="all-expired"),
    ],
)
def test_lease_holders_lists_workers_with_a_live_lease_on_a_job_or_a_batch(
    store: Store, now_s: float, holders: set[str]
) -> None:
    job = make_job(store, 2)
    ids = item_ids(store, job.id)
    batch_a, batch_b = plan_batch(store, job.id, ids[:1]), plan_batch(store, job.id, ids[1:])
    store.release_batch(lease_batch(store, batch_b, owner="worker-b"))  # released: holds nothing
    lease_batch(store, batch_a, owner="worker-a", now=at(30))
    assert store.claim_job(job.id, "planner", T0, TTL) is not None

    assert store.lease_holders(at(now_s)) == holders


def test_release_holder_frees_every_lease_of_a_gone_worker_at_once(store: Store) -> None:
    gone_job = make_job(store, 2, name="gone")
    gone_batches = [plan_batch(store, gone_job.id, [i]) for i in item_ids(store, gone_job.id)]
    alive_job = make_job(store, 1, name="alive")
    plan_batch(store, alive_job.id)
    gone = store.claim_batches([BatchStatus.PLANNED], "gone", T0, TTL, job_id=gone_job.id)
    [alive] = store.claim_batches([BatchStatus.PLANNED], "alive", T0, TTL, job_id=alive_job.id)
    assert store.claim_job(gone_job.id, "gone", T0, TTL) is not None

    assert store.release_holder("gone") == 3  # its job lease and its two batches

    assert store.lease_holders(at(1)) == {"alive"}
    assert not any(store.holds_batch(lease) for lease in gone)  # its old leases write nothing
    assert store.holds_batch(alive)
    # Long before the leases would have expired, another worker takes over.
    taken = store.claim_batches([BatchStatus.PLANNED], "worker-c", at(1), TTL)
    assert [lease.row_id for lease in taken] == gone_batches
    assert store.claim_job(gone_job.id, "worker-c", at(1), TTL) is not None
    assert store.release_holder("nobody") == 0


def test_renew_leases_extends_every_lease_the_worker_still_holds(store: Store) -> None:
    job = make_job(store, 3)
    ids = item_ids(store, job.id)
    kept, released, others = (plan_batch(store, job.id, [i]) for i in ids)
    kept_lease = lease_batch(store, kept, owner="worker-a")
    store.release_batch(lease_batch(store, released, owner="worker-a"))
    lease_batch(store, others, owner="worker-b")
    assert store.claim_job(job.id, "worker-a", T0, TTL) is not None

    assert store.renew_leases("worker-a", at(50), TTL) == 2  # the job and the kept batch

    # The old expiry passes: only what worker-a still holds stays out of reach.
    free = store.claim_batches([BatchStatus.PLANNED], "worker-c", at(TTL + 1), TTL)
    assert sorted(lease.row_id for lease in free) == [released, others]
    assert store.claim_job(job.id, "worker-c", at(TTL + 1), TTL) is None
    assert store.holds_batch(kept_lease)
    # Until the renewed expiry.
    [late] = store.claim_batches([BatchStatus.PLANNED], "worker-d", at(50 + TTL + 1), TTL)
    assert late.row_id == kept
    assert store.renew_leases("nobody", at(51), TTL) == 0
