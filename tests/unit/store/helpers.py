"""Builders that put a store in a given state through its own operations.

Each builder takes the path the steps take (plan, claim, mark creating, record
the create, poll to ended, store results, resolve), so a test starts from a
state the orchestrator can really reach. Times are fixed instants (``T0`` plus
seconds, UTC-aware) so lease expiries are exact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from orchestrator.domain.planning import make_custom_id
from orchestrator.domain.states import BatchStatus, ItemStatus, ProcessingStatus, ResultType
from orchestrator.store.queries import Store
from orchestrator.store.records import (
    JobRecord,
    Lease,
    NewJob,
    PlannedRequest,
    RemoteState,
    RequestRef,
    Resolution,
    ResultRow,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
#: Seconds a lease lasts in these tests.
TTL = 60.0
#: The worker that holds the batches the builders hand back.
OWNER = "worker-a"
MODEL = "claude-test-model"
#: The API base URL the builders' creates go to (the response cache keys on it).
ENDPOINT = "https://api.example.test"
#: What one succeeded result costs (USD), and its tokens.
COST = 0.015
INPUT_TOKENS = 10
OUTPUT_TOKENS = 5
ALL_BATCH_STATUSES = list(BatchStatus)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


# -- items and jobs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Draft:
    """A dataset row as the store records it (satisfies ``records.ItemLike``)."""

    ordinal: int
    key: str
    line: int
    params_json: bytes
    params_hash: str
    input_json: bytes | None = None
    columns: tuple[str, ...] = ()


def params_json(prompt: str) -> bytes:
    body = {"max_tokens": 16, "messages": [{"content": prompt, "role": "user"}], "model": MODEL}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def draft(ordinal: int, key: str | None = None, *, prompt: str | None = None) -> Draft:
    """Row ``ordinal`` (on input line ``ordinal + 1``); same prompt, same params_hash."""
    body = params_json(f"question {ordinal}" if prompt is None else prompt)
    return Draft(
        ordinal=ordinal,
        key=f"k{ordinal}" if key is None else key,
        line=ordinal + 1,
        params_json=body,
        params_hash=hashlib.sha256(body).hexdigest(),
    )


#: Prompts whose params hold multi-byte UTF-8 and JSON escapes (quotes, backslashes).
AWKWARD_PROMPTS = ["plain", "héllo — 日本語 🙂", 'say "hi"\\n and \\u00e9', "tab\tnew\nline"]


def utf8_draft(ordinal: int, prompt: str) -> Draft:
    """Row ``ordinal`` with params as the spec writes them: UTF-8, not ASCII escapes."""
    body = json.loads(draft(ordinal, prompt=prompt).params_json)
    params = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return dataclasses.replace(
        draft(ordinal), params_json=params, params_hash=hashlib.sha256(params).hexdigest()
    )


def drafts(n: int) -> list[Draft]:
    return [draft(i) for i in range(n)]


def new_job(name: str = "job", **changes: Any) -> NewJob:
    job = NewJob(
        name=name,
        content_hash="0" * 64,
        spec_path="jobs/test.toml",
        spec={"name": name},
        max_attempts=3,
        max_requests=100,
        max_bytes=1_000_000,
        use_cache=True,
        budget_usd=None,
        schedule=None,
        api_version="2023-06-01",
    )
    return dataclasses.replace(job, **changes)


def make_job(
    store: Store,
    n: int = 3,
    name: str = "job",
    items: Iterable[Draft] | None = None,
    **changes: Any,
) -> JobRecord:
    """An active job with ``n`` pending items (or the given ones)."""
    rows = drafts(n) if items is None else items
    return store.create_job(new_job(name, **changes), rows, now=T0)


def item_ids(store: Store, job_id: int) -> list[int]:
    """Every item of the job, in ordinal order."""
    return [int(row["item_id"]) for row in store.final_results(job_id)]


def item_statuses(store: Store, job_id: int) -> dict[int, ItemStatus]:
    return {int(row["item_id"]): ItemStatus(row["status"]) for row in store.final_results(job_id)}


def item_batch_id(store: Store, item_id: int) -> int | None:
    """The batch an item is in. No read operation shows it, so this reads the row."""
    with store.engine.connect() as conn:
        value = conn.execute(
            text("SELECT batch_id FROM items WHERE id = :id"), {"id": item_id}
        ).scalar_one()
    return None if value is None else int(value)


def count_rows(store: Store, table: str) -> int:
    """Rows in a table no read operation lists (only for "nothing was written")."""
    with store.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


# -- batches --------------------------------------------------------------------------


def custom_id(store: Store, item_id: int, attempt: int = 1) -> str:
    return make_custom_id(store.store_tag(), item_id, attempt)


def plan_batch(
    store: Store, job_id: int, items: Sequence[int] | None = None, *, now: datetime = T0
) -> int:
    """A planned batch of these pending items (all pending ones by default), in that order."""
    lease = store.claim_job(job_id, "planner", now, TTL)
    assert lease is not None, "the job could not be claimed for planning"
    pending = {p.id: p for p in store.pending_items(job_id, 0, 100_000)}
    chosen = [pending[i] for i in (list(pending) if items is None else items)]
    requests = [
        PlannedRequest(p.id, p.attempts + 1, custom_id(store, p.id, p.attempts + 1)) for p in chosen
    ]
    body_bytes = sum(len(p.params_json) for p in chosen)
    batch_id = store.add_planned_batch(lease, requests, body_bytes, now)
    store.release_job(lease)
    assert batch_id is not None, "the planned batch was refused"
    return batch_id


def lease_batch(store: Store, batch_id: int, *, owner: str = OWNER, now: datetime = T0) -> Lease:
    """Claim this one batch (others claimed along the way are released again)."""
    status = store.get_batch(batch_id).status
    leases = store.claim_batches([status], owner, now, TTL, limit=1000)
    for other in leases:
        if other.row_id != batch_id:
            store.release_batch(other)
    mine = [lease for lease in leases if lease.row_id == batch_id]
    assert mine, f"batch {batch_id} could not be claimed"
    return mine[0]


def remote_id_for(batch_id: int) -> str:
    return f"msgbatch_{batch_id:04d}"


def remote(
    remote_id: str,
    status: BatchStatus = BatchStatus.IN_PROGRESS,
    *,
    results_url: str | None = None,
    counts: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> RemoteState:
    """What the API says about a batch whose local status is ``status``."""
    succeeded, errored, canceled, expired = counts
    return RemoteState(
        remote_id=remote_id,
        status=status,
        processing_status=ProcessingStatus(status.value),
        created_at=T0,
        expires_at=at(24 * 3600),
        ended_at=at(600) if status is BatchStatus.ENDED else None,
        results_url=results_url,
        succeeded=succeeded,
        errored=errored,
        canceled=canceled,
        expired=expired,
    )


def creating_batch(
    store: Store,
    job_id: int,
    items: Sequence[int] | None = None,
    *,
    now: datetime = T0,
    endpoint: str = ENDPOINT,
) -> Lease:
    """A batch whose create is in flight, leased by ``OWNER`` until ``now + TTL``."""
    lease = lease_batch(store, plan_batch(store, job_id, items, now=now), now=now)
    assert store.mark_creating(lease, now, endpoint)
    return lease


def unknown_batch(
    store: Store,
    job_id: int,
    items: Sequence[int] | None = None,
    *,
    reconcile_until: datetime | None = None,
) -> Lease:
    """A create whose outcome is unknown (still leased by ``OWNER``)."""
    lease = creating_batch(store, job_id, items)
    assert store.mark_unknown(lease, "read timeout", T0, reconcile_until)
    return lease


def adopted_batch(
    store: Store,
    job_id: int,
    items: Sequence[int] | None = None,
    *,
    status: BatchStatus = BatchStatus.ENDED,
) -> Lease:
    """A lost create matched by listing to a remote batch, now ``status`` there; still
    leased by ``OWNER`` (as the worker that would prove it ours or not)."""
    lease = unknown_batch(store, job_id, items)
    results_url = "https://r/results" if status is BatchStatus.ENDED else None
    state = remote(remote_id_for(lease.row_id), status, results_url=results_url)
    assert store.record_created(lease, state, T0, adopted=True)
    return lease


def created_batch(
    store: Store,
    job_id: int,
    items: Sequence[int] | None = None,
    *,
    status: BatchStatus = BatchStatus.IN_PROGRESS,
    endpoint: str = ENDPOINT,
) -> int:
    """A batch the API created, now ``status`` remotely; its lease is released."""
    lease = creating_batch(store, job_id, items, endpoint=endpoint)
    assert store.record_created(lease, remote(remote_id_for(lease.row_id), status), T0)
    store.release_batch(lease)
    return lease.row_id


def batch_in(store: Store, job_id: int, status: BatchStatus) -> int:
    """A batch of all the job's pending items, brought to ``status``."""
    if status is BatchStatus.PLANNED:
        return plan_batch(store, job_id)
    if status is BatchStatus.CREATING:
        return creating_batch(store, job_id).row_id
    if status is BatchStatus.UNKNOWN:
        return unknown_batch(store, job_id).row_id
    if status in (BatchStatus.IN_PROGRESS, BatchStatus.CANCELING, BatchStatus.ENDED):
        return created_batch(store, job_id, status=status)
    raise AssertionError(f"no builder for a {status} batch")


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndedBatch:
    """An ended batch leased by ``OWNER`` for ingest, with its requests in order."""

    batch_id: int
    lease: Lease
    refs: list[RequestRef]


def result_row(batch_id: int, ref: RequestRef, result_type: ResultType) -> ResultRow:
    """The typed row of one result line for ``ref``."""
    if result_type is ResultType.SUCCEEDED:
        return ResultRow(
            batch_id=batch_id,
            item_id=ref.item_id,
            custom_id=ref.custom_id,
            attempt=ref.attempt,
            result_type=result_type,
            message_id=f"msg_{ref.custom_id}",
            model=MODEL,
            stop_reason="end_turn",
            text=f"answer to {ref.custom_id}",
            input_tokens=INPUT_TOKENS,
            output_tokens=OUTPUT_TOKENS,
            cost_usd=COST,
        )
    if result_type is ResultType.ERRORED:
        return ResultRow(
            batch_id=batch_id,
            item_id=ref.item_id,
            custom_id=ref.custom_id,
            attempt=ref.attempt,
            result_type=result_type,
            error_type="overloaded_error",
            error_message="Overloaded",
        )
    return ResultRow(
        batch_id=batch_id,
        item_id=ref.item_id,
        custom_id=ref.custom_id,
        attempt=ref.attempt,
        result_type=result_type,
    )


def refs_of(store: Store, batch_id: int) -> list[RequestRef]:
    return [ref for _, ref in store.request_refs(batch_id, 0, 100_000)]


def end_batch(
    store: Store, batch_id: int, outcomes: Sequence[ResultType | None] | None = None
) -> EndedBatch:
    """The API ends an open batch; one result per request is stored (None: no line)."""
    report = remote(remote_id_for(batch_id), BatchStatus.ENDED, results_url="https://r/results")
    assert store.update_remote_state(batch_id, report, at(600))
    lease = lease_batch(store, batch_id, now=at(600))
    refs = refs_of(store, batch_id)
    chosen = [None] * len(refs) if outcomes is None else outcomes
    rows = [
        result_row(batch_id, ref, outcome)
        for ref, outcome in zip(refs, chosen, strict=True)
        if outcome is not None
    ]
    assert store.upsert_results(lease, rows, [])
    return EndedBatch(batch_id, lease, refs_of(store, batch_id))


def ended_batch(
    store: Store,
    job_id: int,
    outcomes: Sequence[ResultType | None] | None = None,
    items: Sequence[int] | None = None,
    *,
    endpoint: str = ENDPOINT,
) -> EndedBatch:
    """A batch created, processed and ended, its results stored but not yet resolved."""
    return end_batch(store, created_batch(store, job_id, items, endpoint=endpoint), outcomes)


def resolve(store: Store, ended: EndedBatch, statuses: Sequence[ItemStatus]) -> None:
    """Resolve the batch's items (in request order) to ``statuses`` and finish it."""
    resolutions = [
        Resolution(ref.item_id, status, ref.result_id)
        for ref, status in zip(ended.refs, statuses, strict=True)
    ]
    assert store.resolve_items(ended.lease, resolutions, at(601))
    assert store.finish_batch(ended.lease, BatchStatus.INGESTED, at(601))


def reject_batch(store: Store, job_id: int, items: Sequence[int] | None = None) -> int:
    """A create the API refused for good: its items failed."""
    lease = creating_batch(store, job_id, items)
    assert store.mark_rejected(lease, "invalid_request_error", "too large", T0)
    store.release_batch(lease)
    return lease.row_id
