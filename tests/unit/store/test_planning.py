"""Planning: which jobs wait, the planning lease, the response cache, recording a batch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.orm import Session

from orchestrator.domain.states import BatchStatus, ItemStatus, ResultType
from orchestrator.store import planning as planning_module
from orchestrator.store.queries import Store
from orchestrator.store.records import Lease, PlannedRequest, RequestLine
from tests.unit.store.helpers import (
    ALL_BATCH_STATUSES,
    AWKWARD_PROMPTS,
    COST,
    ENDPOINT,
    T0,
    TTL,
    at,
    created_batch,
    custom_id,
    draft,
    end_batch,
    ended_batch,
    item_batch_id,
    item_ids,
    item_statuses,
    make_job,
    plan_batch,
    refs_of,
    reject_batch,
    resolve,
    utf8_draft,
)

# -- jobs_with_pending_items ------------------------------------------------------------


def test_jobs_with_pending_items_lists_only_active_jobs_with_pending_items(store: Store) -> None:
    waiting = make_job(store, 2, name="waiting")
    all_queued = make_job(store, 1, name="all-queued")
    plan_batch(store, all_queued.id)
    canceled = make_job(store, 1, name="canceled")
    running = created_batch(store, canceled.id)
    store.cancel_job(canceled.id, at(1))
    # Its batch ends after the cancel and the item is resolved for a retry: pending
    # again, but in a canceled job.
    resolve(store, end_batch(store, running, [ResultType.EXPIRED]), [ItemStatus.PENDING])
    assert store.pending_items(canceled.id, 0, 10) != []

    assert store.jobs_with_pending_items() == [waiting.id]


def test_jobs_with_pending_items_for_one_job(store: Store) -> None:
    waiting = make_job(store, 1, name="waiting")
    queued = make_job(store, 1, name="queued")
    plan_batch(store, queued.id)

    assert store.jobs_with_pending_items(waiting.id) == [waiting.id]
    assert store.jobs_with_pending_items(queued.id) == []


# -- the planning lease -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("later_s", "taken_over"),
    [
        pytest.param(0, False, id="at-once"),
        pytest.param(TTL - 1, False, id="before-expiry"),
        pytest.param(TTL, False, id="at-the-expiry-instant"),
        pytest.param(TTL + 1, True, id="after-expiry"),
    ],
)
def test_claim_job_gives_one_lease_at_a_time(
    store: Store, later_s: float, taken_over: bool
) -> None:
    job = make_job(store, 1)
    first = store.claim_job(job.id, "planner-a", T0, TTL)
    assert first is not None

    second = store.claim_job(job.id, "planner-b", at(later_s), TTL)

    if not taken_over:
        assert second is None
    else:
        assert second is not None
        assert (second.row_id, second.owner) == (job.id, "planner-b")
        assert second.version > first.version


@pytest.mark.parametrize("settle", ["cancel", "finish"])
def test_claim_job_refuses_a_settled_job(store: Store, settle: str) -> None:
    job = make_job(store, 1)
    if settle == "cancel":
        store.cancel_job(job.id, at(1))
    else:
        reject_batch(store, job.id)
        assert store.finish_job_if_done(job.id, at(1))

    assert store.claim_job(job.id, "planner", at(2), TTL) is None


def test_release_job_lets_another_planner_claim_at_once(store: Store) -> None:
    job = make_job(store, 1)
    first = store.claim_job(job.id, "planner-a", T0, TTL)
    assert first is not None

    store.release_job(first)

    assert store.claim_job(job.id, "planner-b", at(1), TTL) is not None


def test_release_job_with_a_stale_lease_frees_nothing(store: Store) -> None:
    job = make_job(store, 1)
    stale = store.claim_job(job.id, "planner-a", T0, TTL)
    assert stale is not None
    assert store.claim_job(job.id, "planner-b", at(TTL + 1), TTL) is not None

    store.release_job(stale)

    assert store.claim_job(job.id, "planner-c", at(TTL + 2), TTL) is None


def test_leases_compare_instants_not_wall_clocks(store: Store) -> None:
    job = make_job(store, 1)
    assert store.claim_job(job.id, "planner-a", T0, TTL) is not None
    # T0 + 10 s written in UTC+05:00 reads 17:00:10 on the wall clock, long after
    # the lease's 12:01:00 UTC expiry, but it is the same instant as 12:00:10 UTC.
    later_elsewhere = at(10).astimezone(timezone(timedelta(hours=5)))

    assert store.claim_job(job.id, "planner-b", later_elsewhere, TTL) is None


# -- apply_response_cache ---------------------------------------------------------------


def test_the_cache_answers_a_never_sent_item_from_a_succeeded_result(store: Store) -> None:
    first = make_job(store, 1, name="first")
    answered = ended_batch(store, first.id, [ResultType.SUCCEEDED])
    resolve(store, answered, [ItemStatus.SUCCEEDED])
    second = make_job(
        store, name="second", items=[draft(0, "same"), draft(1, "new", prompt="unseen")]
    )

    hits, saved = store.apply_response_cache(second.id, at(700), ENDPOINT)

    assert hits == 1
    assert saved == pytest.approx(COST)
    rows = {row["key"]: row for row in store.final_results(second.id)}
    assert rows["same"]["status"] == ItemStatus.SUCCEEDED
    assert bool(rows["same"]["cached"]) is True
    assert rows["same"]["text"] == f"answer to {answered.refs[0].custom_id}"
    assert rows["same"]["cost_usd"] == 0.0  # a cached answer costs this job nothing
    assert rows["new"]["status"] == ItemStatus.PENDING
    job = store.get_job(second.id)
    assert job.cache_hits == 1
    assert job.cache_saved_usd == pytest.approx(COST)


def test_the_cache_counts_an_answer_once(store: Store) -> None:
    first = make_job(store, 1, name="first")
    resolve(store, ended_batch(store, first.id, [ResultType.SUCCEEDED]), [ItemStatus.SUCCEEDED])
    second = make_job(store, 1, name="second")
    assert store.apply_response_cache(second.id, at(700), ENDPOINT)[0] == 1

    hits, saved = store.apply_response_cache(second.id, at(701), ENDPOINT)

    assert hits == 0
    assert saved == pytest.approx(COST)  # the running total, not counted again
    assert store.get_job(second.id).cache_hits == 1


def test_the_cache_does_not_answer_an_item_already_sent(store: Store) -> None:
    # Two items with the same params (each sent: no dedupe): one succeeds, the other
    # errors and waits for its second attempt; the cache leaves that retry to be sent.
    items = [draft(0, "a", prompt="same"), draft(1, "b", prompt="same")]
    job = make_job(store, items=items, dedupe=False)
    ended = ended_batch(store, job.id, [ResultType.SUCCEEDED, ResultType.ERRORED])
    resolve(store, ended, [ItemStatus.SUCCEEDED, ItemStatus.PENDING])

    assert store.apply_response_cache(job.id, at(700), ENDPOINT) == (0, 0.0)

    [retry] = store.pending_items(job.id, 0, 10)
    assert (retry.id, retry.attempts) == (ended.refs[1].item_id, 1)
    assert store.get_job(job.id).cache_hits == 0


def test_the_cache_does_not_answer_from_a_result_that_did_not_succeed(store: Store) -> None:
    first = make_job(store, 1, name="first")
    resolve(store, ended_batch(store, first.id, [ResultType.ERRORED]), [ItemStatus.FAILED])
    second = make_job(store, 1, name="second")

    assert store.apply_response_cache(second.id, at(700), ENDPOINT) == (0, 0.0)

    assert list(item_statuses(store, second.id).values()) == [ItemStatus.PENDING]


@pytest.mark.parametrize(
    ("source_endpoint", "source_api_version"),
    [
        pytest.param("http://127.0.0.1:8765", "2023-06-01", id="another-endpoint"),
        pytest.param(ENDPOINT, "2099-01-01", id="another-api-version"),
    ],
)
def test_the_cache_answers_only_from_the_same_endpoint_and_api_version(
    store: Store, source_endpoint: str, source_api_version: str
) -> None:
    first = make_job(store, 1, name="first", api_version=source_api_version)
    answered = ended_batch(store, first.id, [ResultType.SUCCEEDED], endpoint=source_endpoint)
    resolve(store, answered, [ItemStatus.SUCCEEDED])
    second = make_job(store, 1, name="second", api_version="2023-06-01")

    assert store.apply_response_cache(second.id, at(700), ENDPOINT) == (0, 0.0)

    assert list(item_statuses(store, second.id).values()) == [ItemStatus.PENDING]


@pytest.mark.parametrize(
    ("earlier_items", "new_prompts", "side"),
    [
        # One stored answer, three never-sent items: grouped from the results.
        pytest.param(1, ["question 0", "unseen", "also unseen"], "results", id="few-results"),
        # Three stored answers, one never-sent item: looked up from the item.
        pytest.param(3, ["question 0"], "items", id="few-items"),
    ],
)
def test_the_cache_answers_the_same_from_either_side_of_the_lookup(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    earlier_items: int,
    new_prompts: list[str],
    side: str,
) -> None:
    first = make_job(store, earlier_items, name="first")
    answered = ended_batch(store, first.id, [ResultType.SUCCEEDED] * earlier_items)
    resolve(store, answered, [ItemStatus.SUCCEEDED] * earlier_items)
    items = [draft(i, f"k{i}", prompt=prompt) for i, prompt in enumerate(new_prompts)]
    second = make_job(store, name="second", items=items)
    sides: list[str | None] = []
    choose = planning_module._cache_side

    def spy(s: Session, job_id: int) -> Any:
        sides.append(choose(s, job_id))
        return sides[-1]

    monkeypatch.setattr(planning_module, "_cache_side", spy)

    hits, saved = store.apply_response_cache(second.id, at(700), ENDPOINT)

    assert sides == [side]
    assert hits == 1
    assert saved == pytest.approx(COST)
    rows = [(row["key"], row["status"], row["text"]) for row in store.final_results(second.id)]
    assert rows[0] == ("k0", ItemStatus.SUCCEEDED, f"answer to {answered.refs[0].custom_id}")
    assert [status for _, status, _ in rows[1:]] == [ItemStatus.PENDING] * (len(rows) - 1)


def test_the_cache_reads_nothing_more_in_a_store_without_results(store: Store) -> None:
    job = make_job(store, 3)

    assert store.apply_response_cache(job.id, at(700), ENDPOINT) == (0, 0.0)

    assert set(item_statuses(store, job.id).values()) == {ItemStatus.PENDING}
    assert store.get_job(job.id).cache_hits == 0


# -- pending_items ----------------------------------------------------------------------


def test_pending_items_pages_through_pending_items_by_id(store: Store) -> None:
    job = make_job(store, 5)
    make_job(store, 2, name="other")  # another job's items never show
    ids = item_ids(store, job.id)
    plan_batch(store, job.id, ids[1:2])  # a queued item is not pending

    pages: list[list[int]] = []
    after = 0
    while page := store.pending_items(job.id, after, 2):
        pages.append([p.id for p in page])
        after = page[-1].id

    assert pages == [[ids[0], ids[2]], [ids[3], ids[4]]]


def test_pending_sizes_are_the_bytes_of_the_params_sent(store: Store) -> None:
    items = [utf8_draft(i, prompt) for i, prompt in enumerate(AWKWARD_PROMPTS)]
    items.append(utf8_draft(len(items), AWKWARD_PROMPTS[1]))  # a follower: not sent itself
    job = make_job(store, items=items)

    pages: list[list[tuple[int, int, int]]] = []
    after = 0
    while page := store.pending_sizes(job.id, after, 3):
        pages.append([(item_id, attempts, size) for item_id, attempts, size in page])
        after = page[-1][0]

    pending = store.pending_items(job.id, 0, 100)
    expected = [(p.id, p.attempts, len(p.params_json)) for p in pending]
    assert [row for page in pages for row in page] == expected
    assert [len(page) for page in pages] == [3, 1]
    assert len(expected) == len(AWKWARD_PROMPTS)
    assert {size for *_, size in expected} != {len(draft(0).params_json)}  # not all alike


# -- add_planned_batch ------------------------------------------------------------------


def test_add_planned_batch_queues_items_with_their_attempt_and_custom_id(store: Store) -> None:
    job = make_job(store, 3)
    ids = item_ids(store, job.id)
    lease = store.claim_job(job.id, "planner", T0, TTL)
    assert lease is not None
    requests = [PlannedRequest(i, 1, custom_id(store, i, 1)) for i in ids[:2]]

    batch_id = store.add_planned_batch(lease, requests, 1234, at(1))

    assert batch_id is not None
    batch = store.get_batch(batch_id)
    assert (batch.job_id, batch.status, batch.request_count, batch.body_bytes) == (
        job.id,
        BatchStatus.PLANNED,
        2,
        1234,
    )
    refs = refs_of(store, batch_id)
    assert [PlannedRequest(r.item_id, r.attempt, r.custom_id) for r in refs] == requests
    rows = list(store.final_results(job.id))
    assert [(r["status"], r["attempts"], r["custom_id"]) for r in rows] == [
        (ItemStatus.QUEUED, 1, requests[0].custom_id),
        (ItemStatus.QUEUED, 1, requests[1].custom_id),
        (ItemStatus.PENDING, 0, None),
    ]


def _taken_over(store: Store, lease: Lease) -> None:
    assert store.claim_job(lease.row_id, "planner-b", at(TTL + 1), TTL) is not None


def _released(store: Store, lease: Lease) -> None:
    store.release_job(lease)


@pytest.mark.parametrize(
    "lose_lease",
    [pytest.param(_taken_over, id="taken-over"), pytest.param(_released, id="released")],
)
def test_add_planned_batch_writes_nothing_without_the_job_lease(
    store: Store, lose_lease: Callable[[Store, Lease], None]
) -> None:
    job = make_job(store, 2)
    ids = item_ids(store, job.id)
    lease = store.claim_job(job.id, "planner-a", T0, TTL)
    assert lease is not None
    lose_lease(store, lease)
    requests = [PlannedRequest(i, 1, custom_id(store, i, 1)) for i in ids]

    assert store.add_planned_batch(lease, requests, 100, at(TTL + 2)) is None

    assert store.batches(ALL_BATCH_STATUSES, job.id) == []
    assert [p.id for p in store.pending_items(job.id, 0, 10)] == ids


def _queued_elsewhere(store: Store, lease: Lease, item_id: int) -> None:
    request = PlannedRequest(item_id, 1, custom_id(store, item_id, 1))
    assert store.add_planned_batch(lease, [request], 10, at(1)) is not None


def _canceled(store: Store, lease: Lease, item_id: int) -> None:
    store.cancel_job(lease.row_id, at(1))


@pytest.mark.parametrize(
    "take_item",
    [
        pytest.param(_queued_elsewhere, id="queued-in-another-batch"),
        pytest.param(_canceled, id="canceled-with-its-job"),
    ],
)
def test_add_planned_batch_writes_nothing_when_an_item_is_no_longer_pending(
    store: Store, take_item: Callable[[Store, Lease, int], None]
) -> None:
    job = make_job(store, 2)
    ids = item_ids(store, job.id)
    lease = store.claim_job(job.id, "planner", T0, TTL)
    assert lease is not None
    take_item(store, lease, ids[0])  # the lease is still held: only the item changed
    batches_before = store.batches(ALL_BATCH_STATUSES, job.id)
    items_before = item_statuses(store, job.id)
    requests = [PlannedRequest(i, 1, custom_id(store, i, 1)) for i in ids]

    assert store.add_planned_batch(lease, requests, 100, at(2)) is None

    assert store.batches(ALL_BATCH_STATUSES, job.id) == batches_before
    assert item_statuses(store, job.id) == items_before


def test_add_planned_batch_keeps_the_order_and_custom_ids_it_is_given(store: Store) -> None:
    job = make_job(store, 3)
    params = {p.id: p.params_json for p in store.pending_items(job.id, 0, 10)}
    lease = store.claim_job(job.id, "planner", T0, TTL)
    assert lease is not None
    requests = [PlannedRequest(i, 1, custom_id(store, i, 1)) for i in reversed(params)]

    batch_id = store.add_planned_batch(lease, requests, 300, at(1))

    assert batch_id is not None
    refs = refs_of(store, batch_id)
    assert [PlannedRequest(r.item_id, r.attempt, r.custom_id) for r in refs] == requests
    assert list(store.request_lines(batch_id)) == [
        RequestLine(r.custom_id, params[r.item_id]) for r in requests
    ]


@pytest.mark.parametrize("min_run", [1, 3, 1000], ids=["all-runs", "runs-and-lists", "all-lists"])
def test_add_planned_batch_queues_runs_and_scattered_items_and_retries_alike(
    store: Store, monkeypatch: pytest.MonkeyPatch, min_run: int
) -> None:
    monkeypatch.setattr(planning_module, "MIN_ID_RUN", min_run)
    job = make_job(store, 9)
    ids = item_ids(store, job.id)
    # Items 0 and 1 were sent once and wait for their second attempt.
    ended = ended_batch(store, job.id, [ResultType.ERRORED] * 2, ids[:2])
    resolve(store, ended, [ItemStatus.PENDING] * 2)
    # Items 0-4 (two attempt numbers), 6 and 8: a run, then ids with gaps.
    chosen = [*ids[:5], ids[6], ids[8]]
    attempts = {i: 2 if i in ids[:2] else 1 for i in chosen}
    lease = store.claim_job(job.id, "planner", T0, TTL)
    assert lease is not None
    requests = [PlannedRequest(i, attempts[i], custom_id(store, i, attempts[i])) for i in chosen]

    batch_id = store.add_planned_batch(lease, requests, 900, at(700))

    assert batch_id is not None
    refs = refs_of(store, batch_id)
    assert [PlannedRequest(r.item_id, r.attempt, r.custom_id) for r in refs] == requests
    rows = {int(row["item_id"]): row for row in store.final_results(job.id)}
    for item_id in ids:
        row = rows[item_id]
        expected: tuple[ItemStatus, int, str | None]
        if item_id in attempts:
            expected = (
                ItemStatus.QUEUED,
                attempts[item_id],
                custom_id(store, item_id, attempts[item_id]),
            )
        else:
            expected = (ItemStatus.PENDING, 0, None)
        assert (row["status"], row["attempts"], row["custom_id"]) == expected
    assert item_batch_id(store, ids[0]) == batch_id
    assert item_batch_id(store, ids[5]) is None


@pytest.mark.parametrize(
    "take_item",
    [
        pytest.param(_queued_elsewhere, id="queued-in-another-batch"),
        pytest.param(_canceled, id="canceled-with-its-job"),
    ],
)
def test_add_planned_batch_writes_nothing_when_an_item_inside_a_run_changed(
    store: Store, monkeypatch: pytest.MonkeyPatch, take_item: Callable[[Store, Lease, int], None]
) -> None:
    monkeypatch.setattr(planning_module, "MIN_ID_RUN", 2)  # the three ids move as one range
    job = make_job(store, 3)
    ids = item_ids(store, job.id)
    lease = store.claim_job(job.id, "planner", T0, TTL)
    assert lease is not None
    take_item(store, lease, ids[1])
    batches_before = store.batches(ALL_BATCH_STATUSES, job.id)
    items_before = item_statuses(store, job.id)
    requests = [PlannedRequest(i, 1, custom_id(store, i, 1)) for i in ids]

    assert store.add_planned_batch(lease, requests, 100, at(2)) is None

    assert store.batches(ALL_BATCH_STATUSES, job.id) == batches_before
    assert item_statuses(store, job.id) == items_before


def test_add_planned_batch_writes_nothing_when_an_item_was_retried_since_it_was_read(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planning_module, "MIN_ID_RUN", 2)
    job = make_job(store, 3)
    ids = item_ids(store, job.id)
    ended = ended_batch(store, job.id, [ResultType.ERRORED], ids[1:2])
    resolve(store, ended, [ItemStatus.PENDING])  # pending again, but at attempt 1 now
    lease = store.claim_job(job.id, "planner", T0, TTL)
    assert lease is not None
    stale = [PlannedRequest(i, 1, custom_id(store, i, 1)) for i in ids]  # read before the retry

    assert store.add_planned_batch(lease, stale, 100, at(700)) is None

    assert set(item_statuses(store, job.id).values()) == {ItemStatus.PENDING}
    assert [p.attempts for p in store.pending_items(job.id, 0, 10)] == [0, 1, 0]
