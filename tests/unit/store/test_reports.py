"""Reports: what ``orchestrator status`` and the export read about a job."""

from __future__ import annotations

import pytest

from orchestrator.domain.states import BatchStatus, ItemStatus, ResultType
from orchestrator.store import reports as reports_module
from orchestrator.store.queries import Store
from orchestrator.store.records import FailureGroup, QuarantineLine, Resolution
from tests.unit.store.helpers import (
    COST,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    T0,
    at,
    creating_batch,
    draft,
    ended_batch,
    item_ids,
    make_job,
    new_job,
    plan_batch,
    resolve,
)


def test_job_report_counts_by_state_and_sums_cost_and_tokens(store: Store) -> None:
    job = make_job(store, 4)
    ids = item_ids(store, job.id)
    first = ended_batch(store, job.id, [ResultType.SUCCEEDED, ResultType.ERRORED], ids[:2])
    bad = QuarantineLine(first.batch_id, 9, None, "{truncated", "JSONDecodeError")
    assert store.upsert_results(first.lease, [], [bad])
    resolve(store, first, [ItemStatus.SUCCEEDED, ItemStatus.PENDING])
    plan_batch(store, job.id, ids[1:2])  # the retry, as its second attempt
    other = make_job(store, 1, name="other")  # another job's spending is not counted
    ended_batch(store, other.id, [ResultType.SUCCEEDED])

    report = store.job_report(job.id)

    assert report.job.id == job.id
    assert report.items == {ItemStatus.SUCCEEDED: 1, ItemStatus.QUEUED: 1, ItemStatus.PENDING: 2}
    assert report.batches == {BatchStatus.INGESTED: 1, BatchStatus.PLANNED: 1}
    assert report.results == {ResultType.SUCCEEDED: 1, ResultType.ERRORED: 1}
    assert (report.retried_items, report.quarantined, report.terminal) == (1, 1, 1)
    assert report.cost_usd == pytest.approx(COST)  # only succeeded results are billed
    assert (report.input_tokens, report.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)


def test_job_report_keys_are_enum_members(store: Store) -> None:
    job = make_job(store, 2)
    resolve(
        store,
        ended_batch(store, job.id, [ResultType.SUCCEEDED, ResultType.EXPIRED]),
        [ItemStatus.SUCCEEDED, ItemStatus.PENDING],
    )

    report = store.job_report(job.id)

    # StrEnum members compare equal to plain strings: check the key types themselves.
    assert {type(key) for key in report.items} == {ItemStatus}
    assert {type(key) for key in report.batches} == {BatchStatus}
    assert {type(key) for key in report.results} == {ResultType}


def test_job_report_of_a_job_with_nothing_sent(store: Store) -> None:
    job = make_job(store, 2)

    report = store.job_report(job.id)

    assert report.items == {ItemStatus.PENDING: 2}
    assert (report.batches, report.results) == ({}, {})
    assert (report.cost_usd, report.input_tokens, report.output_tokens) == (0.0, 0, 0)
    assert (report.retried_items, report.quarantined, report.terminal) == (0, 0, 0)


def test_job_report_counts_requests_sent_and_still_to_send(store: Store) -> None:
    job = make_job(store, 5)
    ids = item_ids(store, job.id)
    first = ended_batch(store, job.id, [ResultType.SUCCEEDED, ResultType.EXPIRED], ids[:2])
    resolve(store, first, [ItemStatus.SUCCEEDED, ItemStatus.PENDING])
    plan_batch(store, job.id, ids[1:3])  # the expired item's second attempt, and one more
    creating_batch(store, job.id, ids[3:4])  # its create may be on the wire: not yet accepted

    report = store.job_report(job.id)

    assert report.sent_requests == 2  # the ingested batch; every attempt counts once
    assert report.unsent_requests == 4  # one pending, two planned, one being created


def test_job_report_groups_failed_items_by_error_type(store: Store) -> None:
    job = make_job(store, 5)
    ended = ended_batch(store, job.id, [ResultType.ERRORED] * 4 + [ResultType.SUCCEEDED])
    failed = [
        ("invalid_request_error", "max_tokens: too large"),
        ("invalid_request_error", "messages: empty"),
        ("invalid_request_error", "model: unknown"),
        (None, None),
    ]
    resolutions = [
        Resolution(ref.item_id, ItemStatus.FAILED, ref.result_id, etype, message)
        for ref, (etype, message) in zip(ended.refs, failed, strict=False)
    ]
    done = ended.refs[-1]
    resolutions.append(Resolution(done.item_id, ItemStatus.SUCCEEDED, done.result_id))
    assert store.resolve_items(ended.lease, resolutions, at(601))

    report = store.job_report(job.id)

    assert report.failures == (
        FailureGroup("invalid_request_error", 3, "max_tokens: too large"),
        FailureGroup("unspecified", 1, ""),
    )


def test_final_results_streams_rows_in_ordinal_order_across_pages(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reports_module, "EXPORT_PAGE_ROWS", 2)
    job = store.create_job(new_job("shuffled"), [draft(o) for o in (3, 0, 4, 1, 2)], now=T0)
    make_job(store, 2, name="other")

    rows = list(store.final_results(job.id))

    assert [row["ordinal"] for row in rows] == [0, 1, 2, 3, 4]
    assert [row["key"] for row in rows] == ["k0", "k1", "k2", "k3", "k4"]
    assert {row["job_id"] for row in rows} == {job.id}
    assert {row["job_name"] for row in rows} == {"shuffled"}
