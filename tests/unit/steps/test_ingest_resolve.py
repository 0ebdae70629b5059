"""Resolving an ingested batch's items: one statement for the succeeded answers, then
``ingest.resolve`` page by page for the rest, must leave every item exactly as
``resolve`` decides for its request (``request_refs``), applied as ``resolve_items``
applies it: same status, final result, error type and message, and batch.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import text

from orchestrator.api.client import BatchesClient
from orchestrator.domain.states import BatchStatus, ItemStatus, ResultType
from orchestrator.settings import load_settings
from orchestrator.steps.context import StepContext
from orchestrator.steps.ingest import resolve
from orchestrator.store import results as results_module
from orchestrator.store.queries import Store
from orchestrator.store.records import QuarantineLine, RequestRef, Resolution, ResultRow
from tests.unit.store.helpers import (
    OWNER,
    EndedBatch,
    at,
    created_batch,
    end_batch,
    ended_batch,
    item_ids,
    make_job,
    refs_of,
    result_row,
)
from tests.unit.store.helpers import resolve as resolve_to

# ``orchestrator.steps`` exports the ``ingest`` step under the module's own name.
ingest = importlib.import_module("orchestrator.steps.ingest")

R = ResultType
#: What each request of the batch gets: a result type (None: no line), and changes.
CASES: list[tuple[ResultType | None, dict[str, Any]]] = [
    (R.SUCCEEDED, {}),
    (R.SUCCEEDED, {}),
    (R.SUCCEEDED, {"output_error": "the answer is not JSON"}),
    (R.ERRORED, {"error_type": "overloaded_error", "error_message": "Overloaded"}),
    (R.ERRORED, {"error_type": "invalid_request_error", "error_message": "bad params"}),
    (R.ERRORED, {"error_type": "billing_error", "error_message": "no credit"}),
    (R.CANCELED, {}),
    (R.EXPIRED, {}),
    (None, {}),  # no line at all
    (None, {"quarantined": ["unparseable: truncated"]}),
    (None, {"quarantined": ["unparseable: z last", "unparseable: a first"]}),
]
MAX_ATTEMPTS = 2


def _ended(store: Store, attempt: int) -> tuple[int, EndedBatch]:
    """A job whose batch (the items' ``attempt``-th) has ended, a line per CASES."""
    job = make_job(store, len(CASES), max_attempts=MAX_ATTEMPTS)
    if attempt == 2:  # a first batch, every item sent again after it
        first = ended_batch(store, job.id, [R.EXPIRED] * len(CASES))
        resolve_to(store, first, [ItemStatus.PENDING] * len(CASES))
    ended = end_batch(store, created_batch(store, job.id), None)
    rows: list[ResultRow] = []
    quarantine: list[QuarantineLine] = []
    for line_no, (ref, (kind, changes)) in enumerate(zip(ended.refs, CASES, strict=True)):
        errors = changes.get("quarantined", [])
        for n, error in enumerate(errors):
            where = 100 * (line_no + 1) + n
            quarantine.append(QuarantineLine(ended.batch_id, where, ref.custom_id, "{", error))
        if kind is not None:
            row = result_row(ended.batch_id, ref, kind)
            rows.append(dataclasses.replace(row, **changes))
    stranger = QuarantineLine(ended.batch_id, 1, "zz9-1-1", "{}", "not a request of this batch")
    assert store.upsert_results(ended.lease, rows, [*quarantine, stranger])
    return job.id, EndedBatch(ended.batch_id, ended.lease, refs_of(store, ended.batch_id))


def _items(store: Store, job_id: int) -> dict[int, tuple[Any, ...]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, status, final_result_id, error_type, error_message, batch_id "
                "FROM items WHERE job_id = :job"
            ),
            {"job": job_id},
        ).all()
    return {int(r[0]): (ItemStatus(r[1]), *r[2:]) for r in rows}


def _expected(refs: Sequence[RequestRef], batch_id: int, *args: Any) -> dict[int, tuple[Any, ...]]:
    """What ``resolve`` decides, as ``resolve_items`` writes it."""
    decided: list[Resolution] = [resolve(ref, MAX_ATTEMPTS, *args) for ref in refs]
    return {
        r.item_id: (
            r.status,
            r.result_id,
            r.error_type,
            r.error_message,
            None if r.status is ItemStatus.PENDING else batch_id,
        )
        for r in decided
    }


def _context(store: Store, url: str) -> StepContext:
    settings = load_settings(api_key="sk-test", database_url=url)
    api = BatchesClient(api_key="sk-test", base_url="https://api.example.test")
    return StepContext(store=store, api=api, settings=settings, owner=OWNER)


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("canceled", [False, True], ids=["active", "canceled job"])
@pytest.mark.parametrize("lost", [None, "results not downloadable: elsewhere"])
def test_finishing_a_batch_resolves_each_item_as_resolve_decides(
    store: Store,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    attempt: int,
    canceled: bool,
    lost: str | None,
) -> None:
    # Small pages, and the planner's statistics refreshed on PostgreSQL even for a
    # batch this small, so both paths run.
    monkeypatch.setattr(ingest, "RESOLVE_PAGE_ROWS", 3)
    monkeypatch.setattr(results_module, "ANALYZE_FROM_REQUESTS", 1)
    job_id, ended = _ended(store, attempt)
    if canceled:
        store.cancel_job(job_id, at(700))
    expected = _expected(ended.refs, ended.batch_id, canceled, lost)
    assert any(s is ItemStatus.SUCCEEDED for s, *_ in expected.values())

    batch = store.get_batch(ended.batch_id)
    ctx = _context(store, store_url)
    ingest._finish(ctx, ended.lease, batch, BatchStatus.INGESTED, None, lost=lost)

    assert _items(store, job_id) == expected
    assert store.get_batch(ended.batch_id).status is BatchStatus.INGESTED


def test_resolving_leaves_items_no_longer_queued_in_the_batch(store: Store, store_url: str) -> None:
    job = make_job(store, 3)
    ended = ended_batch(store, job.id, [R.SUCCEEDED, R.EXPIRED, R.SUCCEEDED])
    done, expired, moved = ended.refs
    # One item was resolved already (a crash after some pages), one moved on meanwhile.
    assert store.resolve_items(
        ended.lease, [Resolution(done.item_id, ItemStatus.FAILED, None, "x", "y")], at(601)
    )
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE items SET status = 'pending', batch_id = NULL WHERE id = :i"),
            {"i": moved.item_id},
        )
    before = _items(store, job.id)

    ingest._finish(
        _context(store, store_url),
        ended.lease,
        store.get_batch(ended.batch_id),
        BatchStatus.INGESTED,
        None,
    )

    after = _items(store, job.id)
    assert after[done.item_id] == before[done.item_id]
    assert after[moved.item_id] == before[moved.item_id]
    assert after[expired.item_id][0] is ItemStatus.PENDING
    assert set(after) == set(item_ids(store, job.id))


def test_unresolved_refs_page_by_custom_id_over_the_items_still_queued(store: Store) -> None:
    job = make_job(store, 5)
    ended = ended_batch(store, job.id, [R.SUCCEEDED, R.ERRORED, None, R.EXPIRED, R.SUCCEEDED])
    assert store.resolve_succeeded(ended.lease, at(601))

    pages: list[list[RequestRef]] = []
    after = ""
    while page := store.unresolved_refs(ended.batch_id, after, 2):
        pages.append(page)
        after = page[-1].custom_id

    got = [ref for page in pages for ref in page]
    assert [len(p) for p in pages] == [2, 1]
    assert [r.custom_id for r in got] == sorted(r.custom_id for r in got)
    by_id = {r.custom_id: r for r in ended.refs}
    assert {r.custom_id for r in got} == {
        r.custom_id for r in ended.refs if r.result_type is not R.SUCCEEDED
    }
    assert all(r == by_id[r.custom_id] for r in got)


def test_resolve_succeeded_refuses_a_stale_lease(store: Store) -> None:
    job = make_job(store, 1)
    ended = ended_batch(store, job.id, [R.SUCCEEDED])
    store.claim_batches([BatchStatus.ENDED], "worker-b", at(600 + 3600), 60)

    assert store.resolve_succeeded(ended.lease, at(600 + 3601)) is False

    assert [s for s, *_ in _items(store, job.id).values()] == [ItemStatus.QUEUED]
