"""The adoption aggregate: claims on remote batches, and what the results prove
(``disown``: foreign, handed to its owner, or the next watched match)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orchestrator.domain.states import BatchStatus, DuplicateStatus, ItemStatus
from orchestrator.store.queries import Store
from orchestrator.store.records import Claim, Lease
from tests.unit.store.helpers import (
    T0,
    TTL,
    adopted_batch,
    at,
    created_batch,
    creating_batch,
    custom_id,
    item_batch_id,
    item_ids,
    item_statuses,
    make_job,
    plan_batch,
    remote,
    remote_id_for,
    unknown_batch,
)

NOT_OURS = "results carry custom_ids of another store"
THEIRS = "its results are the requests of another batch"


# -- remote_claims, batch_of_requests ---------------------------------------------------


def test_remote_claims_tell_proven_from_tentative(store: Store) -> None:
    job = make_job(store, 3)
    ids = item_ids(store, job.id)
    created = created_batch(store, job.id, ids[:1])
    adopted = adopted_batch(store, job.id, ids[1:2])
    store.add_duplicates(adopted.row_id, ["msgbatch_watched"], at(5))
    store.release_batch(adopted)
    foreign = adopted_batch(store, job.id, ids[2:])
    assert store.disown(foreign, NOT_OURS, at(6)) is BatchStatus.UNKNOWN

    claims = store.remote_claims()

    assert claims[remote_id_for(created)] == Claim(created, T0, settled=True)
    assert claims[remote_id_for(adopted.row_id)] == Claim(adopted.row_id, T0, settled=False)
    assert claims["msgbatch_watched"] == Claim(adopted.row_id, at(5), settled=False)
    assert claims[remote_id_for(foreign.row_id)] == Claim(None, None, settled=True)
    assert len(claims) == 4


def test_batch_of_requests_names_the_batch_holding_most_of_them(store: Store) -> None:
    job = make_job(store, 3)
    ids = item_ids(store, job.id)
    first = plan_batch(store, job.id, ids[:1])
    second = plan_batch(store, job.id, ids[1:])

    assert store.batch_of_requests([custom_id(store, i) for i in ids]) == second
    assert store.batch_of_requests([custom_id(store, ids[0])]) == first
    assert store.batch_of_requests(["other0-1-1", custom_id(store, ids[0], attempt=2)]) is None
    assert store.batch_of_requests([]) is None


# -- disown: foreign ---------------------------------------------------------------------


@pytest.mark.parametrize("remote_status", [BatchStatus.IN_PROGRESS, BatchStatus.ENDED])
def test_a_foreign_batch_makes_the_create_unknown_again_and_is_remembered(
    store: Store, remote_status: BatchStatus
) -> None:
    job = make_job(store, 2)
    lease = adopted_batch(store, job.id, status=remote_status)
    wrong = remote_id_for(lease.row_id)
    assert store.foreign_remote_ids() == set()

    assert store.disown(lease, NOT_OURS, at(700)) is BatchStatus.UNKNOWN

    got = store.get_batch(lease.row_id)
    assert (got.status, got.remote_id, got.adopted, got.last_error) == (
        BatchStatus.UNKNOWN,
        None,
        False,
        NOT_OURS,
    )
    assert (got.results_url, got.remote_created_at, got.intent_at) == (None, None, T0)
    assert store.foreign_remote_ids() == {wrong}
    assert store.owned_remote_ids() == {}
    # Its items wait in it, untouched: none fails and none is sent a second time.
    assert set(item_statuses(store, job.id).values()) == {ItemStatus.QUEUED}
    assert {item_batch_id(store, i) for i in item_ids(store, job.id)} == {lease.row_id}
    # Reconciled again, it can be matched to its real batch.
    assert store.record_created(lease, remote("msgbatch_real"), at(701), adopted=True)
    assert store.owned_remote_ids() == {"msgbatch_real": job.id}


def _created_not_adopted(store: Store, job_id: int) -> Lease:
    return lease_of(store, created_batch(store, job_id, status=BatchStatus.ENDED))


def lease_of(store: Store, batch_id: int) -> Lease:
    leases = store.claim_batches([BatchStatus.ENDED], "worker-a", T0, TTL, limit=10)
    return next(lease for lease in leases if lease.row_id == batch_id)


def _adopted_then_taken_over(store: Store, job_id: int) -> Lease:
    stale = adopted_batch(store, job_id)
    store.claim_batches([BatchStatus.ENDED], "worker-b", at(TTL + 1), TTL)
    return stale


def _adopted_then_released(store: Store, job_id: int) -> Lease:
    lease = adopted_batch(store, job_id)
    store.release_batch(lease)
    return lease


@pytest.mark.parametrize(
    "make_lease",
    [
        pytest.param(_created_not_adopted, id="not-adopted"),
        pytest.param(_adopted_then_taken_over, id="lease-taken-over"),
        pytest.param(_adopted_then_released, id="lease-released"),
    ],
)
def test_disown_only_an_adopted_batch_under_its_lease(
    store: Store, make_lease: Callable[[Store, int], Lease]
) -> None:
    job = make_job(store, 1)
    lease = make_lease(store, job.id)
    before = store.get_batch(lease.row_id)

    assert store.disown(lease, NOT_OURS, at(TTL + 2)) is None

    assert store.get_batch(lease.row_id) == before
    assert store.foreign_remote_ids() == set()
    assert store.owned_remote_ids() == {remote_id_for(lease.row_id): job.id}


@pytest.mark.parametrize(
    ("same_job", "count", "undone"),
    [
        pytest.param(False, 1, False, id="same-count-other-job"),
        pytest.param(False, 2, True, id="other-count-other-job"),
        pytest.param(True, 2, False, id="same-job-other-count"),
    ],
)
def test_disown_waits_while_the_create_cannot_go_back_in_flight(
    store: Store, same_job: bool, count: int, undone: bool
) -> None:
    job = make_job(store, 3, name="adopter")
    ids = item_ids(store, job.id)
    lease = adopted_batch(store, job.id, ids[:1])  # one request
    if same_job:
        blocker_job, blocker_ids = job.id, ids[1:]
    else:
        blocker_job = make_job(store, 2, name="other").id
        blocker_ids = item_ids(store, blocker_job)
    blocker = creating_batch(store, blocker_job, blocker_ids[:count], now=at(1))
    before = store.get_batch(lease.row_id)

    assert store.disown(lease, NOT_OURS, at(700)) is (BatchStatus.UNKNOWN if undone else None)

    # Foreign either way, at once: no other create waits on it.
    assert store.foreign_remote_ids() == {before.remote_id}
    if undone:
        assert store.get_batch(lease.row_id).status is BatchStatus.UNKNOWN
    else:
        # The batch itself is unchanged: the worker tries again later.
        assert store.get_batch(lease.row_id) == before
        assert store.holds_batch(lease)
    assert store.get_batch(blocker.row_id).status is BatchStatus.CREATING


def test_a_blocked_disown_moves_to_the_next_watched_match(store: Store) -> None:
    job = make_job(store, 3)
    ids = item_ids(store, job.id)
    lease = adopted_batch(store, job.id, ids[:1])
    store.add_duplicates(lease.row_id, ["msgbatch_foreign", "msgbatch_next"], at(5))
    blocker = creating_batch(store, job.id, ids[1:], now=at(6))  # the job's create in flight
    # A watched match already proven foreign (by another batch) is skipped.
    other = adopted_batch(store, make_job(store, 1, name="other").id)
    store.release_batch(other)

    assert store.disown(lease, NOT_OURS, at(700)) is BatchStatus.IN_PROGRESS

    got = store.get_batch(lease.row_id)
    assert (got.status, got.remote_id, got.adopted) == (
        BatchStatus.IN_PROGRESS,
        "msgbatch_foreign",
        True,
    )
    assert got.results_url is None  # the poll step fills it in
    claims = store.remote_claims()
    assert claims["msgbatch_foreign"] == Claim(lease.row_id, at(5), settled=False)
    assert claims["msgbatch_next"] == Claim(lease.row_id, at(5), settled=False)
    assert store.get_batch(blocker.row_id).status is BatchStatus.CREATING


# -- disown: handed to the batch whose requests it holds ---------------------------------


@pytest.mark.parametrize("owner_status", [BatchStatus.UNKNOWN, BatchStatus.PLANNED])
def test_a_batch_holding_another_creates_requests_is_handed_to_it(
    store: Store, owner_status: BatchStatus
) -> None:
    job = make_job(store, 4)
    ids = item_ids(store, job.id)
    # The wrong holder: adopted (and ended) by the batch of the last two items.
    wrong = adopted_batch(store, job.id, ids[2:])
    taken = store.get_batch(wrong.row_id)
    store.release_batch(wrong)
    if owner_status is BatchStatus.UNKNOWN:
        owner = unknown_batch(store, job.id, ids[:2]).row_id
    else:
        owner = plan_batch(store, job.id, ids[:2])
    wrong = lease_of(store, wrong.row_id)

    assert store.disown(wrong, THEIRS, at(700), owner=owner) is BatchStatus.UNKNOWN

    got = store.get_batch(owner)
    assert (got.status, got.remote_id, got.adopted, got.results_url) == (
        BatchStatus.ENDED,
        taken.remote_id,
        True,
        taken.results_url,
    )
    assert got.proven_at == at(700)  # its results were read: no create waits on it
    assert taken.remote_id is not None
    assert store.remote_claims()[taken.remote_id] == Claim(owner, T0, settled=True)
    back = store.get_batch(wrong.row_id)
    assert (back.status, back.remote_id, back.last_error) == (BatchStatus.UNKNOWN, None, THEIRS)
    # Ours, not foreign; and every item still waits for its own batch's results.
    assert store.foreign_remote_ids() == set()
    assert set(item_statuses(store, job.id).values()) == {ItemStatus.QUEUED}


def test_a_batch_holding_requests_of_a_batch_with_its_own_is_watched_as_its_duplicate(
    store: Store,
) -> None:
    job = make_job(store, 2)
    ids = item_ids(store, job.id)
    owner = created_batch(store, job.id, ids[:1], status=BatchStatus.ENDED)
    wrong = adopted_batch(store, job.id, ids[1:])
    taken = store.get_batch(wrong.row_id)

    assert store.disown(wrong, THEIRS, at(700), owner=owner) is BatchStatus.UNKNOWN

    assert store.get_batch(owner).remote_id == remote_id_for(owner)
    assert store.get_batch(wrong.row_id).status is BatchStatus.UNKNOWN
    assert taken.remote_id is not None
    assert store.remote_claims()[taken.remote_id] == Claim(owner, T0, settled=False)
    # Settled once it ends: the owner's own batch is proven (it created it).
    assert store.watched_duplicates() == [(taken.remote_id, owner)]
    assert store.settle_duplicate(taken.remote_id, DuplicateStatus.OURS, 1)


def test_watched_matches_of_a_tentative_adoption_wait_for_its_proof(store: Store) -> None:
    job = make_job(store, 1)
    lease = adopted_batch(store, job.id)
    store.add_duplicates(lease.row_id, ["msgbatch_other"], at(5))

    assert store.watched_duplicates() == []

    assert store.prove_adoption(lease, at(9))
    assert store.watched_duplicates() == [("msgbatch_other", lease.row_id)]
    assert store.get_batch(lease.row_id).proven_at == at(9)
    assert store.remote_claims()[remote_id_for(lease.row_id)].settled
    assert store.prove_adoption(lease, at(10)) is False  # proven once


def test_watched_matches_of_a_batch_that_ended_unread_are_settled(store: Store) -> None:
    job = make_job(store, 1)
    lease = adopted_batch(store, job.id)
    store.add_duplicates(lease.row_id, ["msgbatch_other"], at(5))

    store.finish_batch(lease, BatchStatus.UNAVAILABLE, at(9), "results unavailable")

    assert store.watched_duplicates() == [("msgbatch_other", lease.row_id)]


def test_prove_adoption_needs_an_adopted_batch_under_its_lease(store: Store) -> None:
    job = make_job(store, 2)
    ids = item_ids(store, job.id)
    created = lease_of(store, created_batch(store, job.id, ids[:1], status=BatchStatus.ENDED))
    stale = adopted_batch(store, job.id, ids[1:])
    store.release_batch(stale)

    assert store.prove_adoption(created, at(9)) is False
    assert store.prove_adoption(stale, at(9)) is False
    assert store.get_batch(stale.row_id).proven_at is None
