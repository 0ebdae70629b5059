"""Results: routing lines to requests, storing them once, resolving items, closing a batch."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import text

from orchestrator.domain.states import (
    IN_FLIGHT_BATCH_STATUSES,
    BatchStatus,
    ItemStatus,
    ResultType,
)
from orchestrator.store.queries import Store
from orchestrator.store.records import QuarantineLine, Resolution, Route
from tests.unit.store.helpers import (
    OWNER,
    TTL,
    at,
    created_batch,
    custom_id,
    ended_batch,
    item_batch_id,
    item_ids,
    item_statuses,
    lease_batch,
    make_job,
    plan_batch,
    refs_of,
    result_row,
)

# -- route_custom_ids -------------------------------------------------------------------


def test_route_custom_ids_maps_only_this_batch_custom_ids(store: Store) -> None:
    job = make_job(store, 2)
    ids = item_ids(store, job.id)
    mine = plan_batch(store, job.id, ids[:1])
    plan_batch(store, job.id, ids[1:])
    ours, other_batch = custom_id(store, ids[0]), custom_id(store, ids[1])

    routes = store.route_custom_ids(mine, [ours, other_batch, "someone-else-1-1"])

    assert routes == {ours: Route(ids[0], 1)}


# -- batch_routes -----------------------------------------------------------------------


def test_batch_routes_route_exactly_the_batch_requests(store: Store) -> None:
    job = make_job(store, 4)
    ids = item_ids(store, job.id)
    mine = plan_batch(store, job.id, ids[:3])
    plan_batch(store, job.id, ids[3:])

    table = store.batch_routes(mine)

    assert table is not None
    assert len(table) == 3
    for item in ids[:3]:
        assert table.get(custom_id(store, item)) == Route(item, 1)
    assert table.get(custom_id(store, ids[3])) is None  # another batch's request
    assert table.get(custom_id(store, ids[0], attempt=2)) is None  # not this attempt
    assert table.get(custom_id(store, ids[0]).replace("-", "-0", 1)) is None  # not the same id


@pytest.mark.parametrize(
    "shape",
    [
        "{tag}-0{item}-1",  # a leading zero
        "{tag}-+{item}-1",  # a sign
        "{tag}- {item}-1",  # a space
        "{tag}-{item}-1 ",
        "{tag}-{item}_0-1",  # an underscore, which int() takes
        "{tag}-{arabic}-1",  # digits int() reads, but not ASCII ones
        "{tag}-{item}-1-1",
        "{tag}-{item}",
        "{tag}{item}-1",
        "{tag}x-{item}-1",
        "-{item}-1",
    ],
)
def test_batch_routes_route_no_look_alike_of_a_custom_id(store: Store, shape: str) -> None:
    job = make_job(store, 1)
    item = item_ids(store, job.id)[0]
    table = store.batch_routes(plan_batch(store, job.id))
    assert table is not None
    tag = store.store_tag()
    arabic = str(item).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert table.get(f"{tag}-{item}-1") == Route(item, 1)

    look_alike = shape.format(tag=tag, item=item, arabic=arabic)

    assert int(arabic) == item  # what makes the last shapes worth checking
    assert table.get(look_alike) is None


def test_batch_routes_are_none_when_a_custom_id_is_not_this_store_s(store: Store) -> None:
    job = make_job(store, 2)
    batch_id = plan_batch(store, job.id)
    second = item_ids(store, job.id)[1]
    with store.engine.begin() as conn:  # a request named some other way (no operation does)
        conn.execute(
            text("UPDATE batch_requests SET custom_id = 'legacy-name' WHERE item_id = :i"),
            {"i": second},
        )

    assert store.batch_routes(batch_id) is None  # routed by query instead


# -- upsert_results, count_results ------------------------------------------------------


def test_upsert_results_stores_each_line_once(store: Store) -> None:
    job = make_job(store, 2)
    ended = ended_batch(store, job.id)  # ended, nothing stored yet
    rows = [result_row(ended.batch_id, ref, ResultType.SUCCEEDED) for ref in ended.refs]
    bad = [QuarantineLine(ended.batch_id, 3, None, "{not json", "JSONDecodeError")]
    assert store.upsert_results(ended.lease, rows, bad)
    first = refs_of(store, ended.batch_id)

    # The download is read again from the start; the same lines come back.
    again = [dataclasses.replace(row, text="a different answer") for row in rows]
    assert store.upsert_results(ended.lease, again, bad)

    assert store.count_results(ended.batch_id) == 2
    assert refs_of(store, ended.batch_id) == first  # the same rows: the first write stands
    report = store.job_report(job.id)
    assert (report.results, report.quarantined) == ({ResultType.SUCCEEDED: 2}, 1)
    resolutions = [Resolution(r.item_id, ItemStatus.SUCCEEDED, r.result_id) for r in first]
    assert store.resolve_items(ended.lease, resolutions, at(601))
    texts = [row["text"] for row in store.final_results(job.id)]
    assert texts == [f"answer to {ref.custom_id}" for ref in first]


def test_upsert_results_writes_nothing_under_a_stale_lease(store: Store) -> None:
    job = make_job(store, 1)
    ended = ended_batch(store, job.id)
    store.claim_batches([BatchStatus.ENDED], "worker-b", at(600 + TTL + 1), TTL)
    rows = [result_row(ended.batch_id, ref, ResultType.SUCCEEDED) for ref in ended.refs]
    bad = [QuarantineLine(ended.batch_id, 2, "x", "garbage", "not ours")]

    assert store.upsert_results(ended.lease, rows, bad) is False

    assert store.count_results(ended.batch_id) == 0
    assert store.job_report(job.id).quarantined == 0


@pytest.mark.parametrize(
    ("result_type", "column", "given", "stored"),
    [
        pytest.param(ResultType.SUCCEEDED, "text", "a\x00b", "a\ufffdb", id="nul-in-text"),
        pytest.param(ResultType.SUCCEEDED, "model", "m" * 300, "m" * 100, id="long-model"),
        pytest.param(ResultType.SUCCEEDED, "stop_reason", "s" * 100, "s" * 64, id="long-stop"),
        pytest.param(
            ResultType.SUCCEEDED, "stop_reason", "\x00" * 100, "\ufffd" * 64, id="nul-and-long"
        ),
        pytest.param(ResultType.SUCCEEDED, "message_id", "msg_\x00", "msg_\ufffd", id="nul-in-id"),
        pytest.param(ResultType.ERRORED, "error_type", "e" * 100, "e" * 64, id="long-error-type"),
        pytest.param(
            ResultType.ERRORED,
            "error_message",
            "bad \x00 byte",
            "bad \ufffd byte",
            id="nul-in-error-message",
        ),
    ],
)
def test_upsert_results_stores_a_string_no_column_could_hold_made_storable(
    store: Store, result_type: ResultType, column: str, given: str, stored: str
) -> None:
    # PostgreSQL refuses a NUL in text and a string longer than its column; the
    # line is kept (cleaned, cut) on both backends instead of failing the ingest.
    job = make_job(store, 1)
    ended = ended_batch(store, job.id)
    [ref] = ended.refs
    changes: dict[str, Any] = {column: given}
    row = dataclasses.replace(result_row(ended.batch_id, ref, result_type), **changes)

    assert store.upsert_results(ended.lease, [row], [])

    assert store.count_results(ended.batch_id) == 1
    [stored_ref] = refs_of(store, ended.batch_id)
    status = ItemStatus.SUCCEEDED if result_type is ResultType.SUCCEEDED else ItemStatus.FAILED
    resolution = Resolution(ref.item_id, status, stored_ref.result_id)
    assert store.resolve_items(ended.lease, [resolution], at(601))
    [exported] = store.final_results(job.id)
    assert exported[column] == stored


def test_upsert_results_stores_a_quarantined_line_with_nul_characters(store: Store) -> None:
    job = make_job(store, 1)
    ended = ended_batch(store, job.id)
    [ref] = ended.refs
    bad = QuarantineLine(ended.batch_id, 1, ref.custom_id, '{"x": "\x00', "bad \x00 byte")

    assert store.upsert_results(ended.lease, [], [bad])

    assert store.job_report(job.id).quarantined == 1
    assert refs_of(store, ended.batch_id)[0].quarantined == "bad \ufffd byte"


def test_count_results_counts_the_custom_ids_stored_for_one_batch(store: Store) -> None:
    job = make_job(store, 3)
    ids = item_ids(store, job.id)
    first = ended_batch(store, job.id, [ResultType.SUCCEEDED, None], ids[:2])
    second = ended_batch(store, job.id, [ResultType.ERRORED], ids[2:])

    assert store.count_results(first.batch_id) == 1  # one line still missing
    assert store.count_results(second.batch_id) == 1


# -- request_refs -----------------------------------------------------------------------


def test_request_refs_join_each_request_with_its_result_or_none(store: Store) -> None:
    job = make_job(store, 3)
    ended = ended_batch(store, job.id, [ResultType.SUCCEEDED, ResultType.ERRORED, None])

    succeeded, errored, missing = refs_of(store, ended.batch_id)

    assert succeeded.result_id is not None
    assert succeeded.result_type is ResultType.SUCCEEDED
    assert (errored.result_type, errored.error_type, errored.error_message) == (
        ResultType.ERRORED,
        "overloaded_error",
        "Overloaded",
    )
    assert (missing.result_id, missing.result_type, missing.error_type) == (None, None, None)
    assert [r.item_id for r in (succeeded, errored, missing)] == item_ids(store, job.id)


def test_request_refs_name_the_quarantine_error_of_a_line_with_the_request_custom_id(
    store: Store,
) -> None:
    job = make_job(store, 3)
    ended = ended_batch(store, job.id, [ResultType.SUCCEEDED, None, None])
    answered, unreadable, missing = ended.refs
    lines = [
        QuarantineLine(ended.batch_id, 2, unreadable.custom_id, "{trunc", "JSONDecodeError"),
        QuarantineLine(ended.batch_id, 3, None, "garbage", "no custom_id"),
        QuarantineLine(ended.batch_id, 4, "someone-else-1-1", "{}", "not ours"),
    ]
    assert store.upsert_results(ended.lease, [], lines)

    refs = refs_of(store, ended.batch_id)

    assert [(r.custom_id, r.result_type, r.quarantined) for r in refs] == [
        (answered.custom_id, ResultType.SUCCEEDED, None),
        (unreadable.custom_id, None, "JSONDecodeError"),  # the API did answer it
        (missing.custom_id, None, None),  # no line at all
    ]


def test_request_refs_pages_by_request_id(store: Store) -> None:
    job = make_job(store, 5)
    batch = plan_batch(store, job.id)

    pages: list[list[int]] = []
    after = 0
    while page := store.request_refs(batch, after, 2):
        pages.append([ref.item_id for _, ref in page])
        after = page[-1][0]

    ids = item_ids(store, job.id)
    assert pages == [ids[:2], ids[2:4], ids[4:]]


# -- resolve_items ----------------------------------------------------------------------


def test_resolve_items_applies_outcomes_to_the_batch_queued_items(store: Store) -> None:
    job = make_job(store, 3)
    ended = ended_batch(
        store, job.id, [ResultType.SUCCEEDED, ResultType.EXPIRED, ResultType.ERRORED]
    )
    done, expired, retry = ended.refs

    assert store.resolve_items(
        ended.lease,
        [
            Resolution(done.item_id, ItemStatus.SUCCEEDED, done.result_id),
            Resolution(expired.item_id, ItemStatus.FAILED, expired.result_id, "expired", "late"),
            Resolution(retry.item_id, ItemStatus.PENDING, retry.result_id),
        ],
        at(601),
    )

    rows = {row["item_id"]: row for row in store.final_results(job.id)}
    assert rows[done.item_id]["status"] == ItemStatus.SUCCEEDED
    assert rows[done.item_id]["text"] == f"answer to {done.custom_id}"
    assert (rows[expired.item_id]["status"], rows[expired.item_id]["error_type"]) == (
        ItemStatus.FAILED,
        "expired",
    )
    assert [(p.id, p.attempts) for p in store.pending_items(job.id, 0, 10)] == [(retry.item_id, 1)]
    # A terminal item keeps its batch for reference; a retry leaves it.
    assert item_batch_id(store, done.item_id) == ended.batch_id
    assert item_batch_id(store, expired.item_id) == ended.batch_id
    assert item_batch_id(store, retry.item_id) is None


def test_resolve_items_leaves_items_not_queued_in_this_batch(store: Store) -> None:
    job = make_job(store, 2)
    ids = item_ids(store, job.id)
    ended = ended_batch(store, job.id, [ResultType.SUCCEEDED], ids[:1])
    created_batch(store, job.id, ids[1:])  # ids[1] is queued in another batch
    [ref] = ended.refs
    assert store.resolve_items(
        ended.lease, [Resolution(ref.item_id, ItemStatus.SUCCEEDED, ref.result_id)], at(601)
    )

    later = [
        Resolution(ref.item_id, ItemStatus.FAILED, None, "api_error", "resolved twice"),
        Resolution(ids[1], ItemStatus.CANCELED, None),
    ]
    assert store.resolve_items(ended.lease, later, at(602))

    assert item_statuses(store, job.id) == {ids[0]: ItemStatus.SUCCEEDED, ids[1]: ItemStatus.QUEUED}


def test_resolve_items_refuses_a_stale_lease(store: Store) -> None:
    job = make_job(store, 1)
    ended = ended_batch(store, job.id, [ResultType.SUCCEEDED])
    store.claim_batches([BatchStatus.ENDED], "worker-b", at(600 + TTL + 1), TTL)
    [ref] = ended.refs

    resolution = Resolution(ref.item_id, ItemStatus.SUCCEEDED, ref.result_id)
    assert store.resolve_items(ended.lease, [resolution], at(600 + TTL + 2)) is False

    assert item_statuses(store, job.id) == {ref.item_id: ItemStatus.QUEUED}


# -- finish_batch, defer_ingest ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "note"),
    [(BatchStatus.INGESTED, None), (BatchStatus.UNAVAILABLE, "results are no longer available")],
)
def test_finish_batch_closes_an_ended_batch_and_releases_it(
    store: Store, status: BatchStatus, note: str | None
) -> None:
    job = make_job(store, 1)
    ended = ended_batch(store, job.id, [ResultType.SUCCEEDED])

    assert store.finish_batch(ended.lease, status, at(700), note)

    got = store.get_batch(ended.batch_id)
    assert (got.status, got.last_error) == (status, note)
    assert not store.holds_batch(ended.lease)
    assert store.batches(IN_FLIGHT_BATCH_STATUSES, job.id) == []


def test_finish_batch_only_from_ended(store: Store) -> None:
    lease = lease_batch(store, created_batch(store, make_job(store, 1).id))

    assert store.finish_batch(lease, BatchStatus.INGESTED, at(1)) is False

    assert store.get_batch(lease.row_id).status is BatchStatus.IN_PROGRESS
    assert store.holds_batch(lease)


def test_defer_ingest_counts_the_attempt_and_waits_until_retry_at(store: Store) -> None:
    ended = ended_batch(store, make_job(store, 1).id)

    assert store.defer_ingest(ended.lease, "HTTP 503", at(900), at(601))

    got = store.get_batch(ended.batch_id)
    assert (got.status, got.ingest_attempts, got.last_error) == (BatchStatus.ENDED, 1, "HTTP 503")
    assert not store.holds_batch(ended.lease)
    assert store.claim_batches([BatchStatus.ENDED], OWNER, at(899), TTL) == []
    [again] = store.claim_batches([BatchStatus.ENDED], OWNER, at(900), TTL)
    assert again.row_id == ended.batch_id
