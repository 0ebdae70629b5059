"""Planning: which items wait for a batch, the response cache, and recording a planned batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    String,
    Table,
    Update,
    cast,
    func,
    literal,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session, aliased

from orchestrator.domain.planning import parse_custom_id
from orchestrator.domain.states import BatchStatus, ItemStatus, JobStatus, ResultType
from orchestrator.store._sql import LostRace, StoreBase, count, held, lease_free, lock_active_job
from orchestrator.store.records import Lease, PendingItem, PlannedRequest
from orchestrator.store.tables import Batch, BatchRequest, Item, Job, Result

#: Requests written per statement when a batch is recorded (bounded parameter lists).
PLAN_WRITE_ROWS = 5000
#: The fewest consecutive item ids moved into a batch by one id-range UPDATE; shorter
#: runs go into id lists (one statement per short run could mean thousands).
MIN_ID_RUN = 64
#: Where the cache lookup starts (see ``_cache_side``).
CacheSide = Literal["results", "items"]

_ITEMS: Table = Item.__table__  # type: ignore[assignment]
_REQUESTS: Table = BatchRequest.__table__  # type: ignore[assignment]
#: A leader's outcomes its followers take (``dedupe``): every finished one.
_SHARED_STATUSES = (ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.CANCELED)


class PlanningOps(StoreBase):
    def jobs_with_pending_items(self, job_id: int | None = None) -> list[int]:
        with self._tx() as s:
            query = (
                select(Item.job_id)
                .join(Job, Job.id == Item.job_id)
                .where(Item.status == ItemStatus.PENDING, Job.status == JobStatus.ACTIVE)
                .distinct()
            )
            if job_id is not None:
                query = query.where(Item.job_id == job_id)
            return list(s.execute(query).scalars())

    def claim_job(self, job_id: int, owner: str, now: datetime, ttl_s: float) -> Lease | None:
        """Lease a job for planning, so two daemons never plan the same items."""
        with self._tx() as s:
            row = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.ACTIVE, lease_free(Job, now))
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=ttl_s),
                    lease_version=Job.lease_version + 1,
                )
                .returning(Job.lease_version)
            ).first()
            return Lease(job_id, owner, int(row[0])) if row else None

    def release_job(self, lease: Lease) -> None:
        with self._tx() as s:
            s.execute(
                update(Job).where(held(Job, lease)).values(lease_owner=None, lease_expires_at=None)
            )

    def apply_response_cache(self, job_id: int, now: datetime, endpoint: str) -> tuple[int, float]:
        """Answer never-sent items whose exact request already succeeded in this store.

        The same request means the same params, sent to the same ``endpoint`` under
        the same API version: an answer from a simulator never stands in for the
        real API's, nor one from another version's rules. An answer that did not match
        the job's output schema is never reused.

        Set-based, in a fixed number of statements: the distinct params of the lookup's
        smaller side are grouped once, and every item is answered with one UPDATE ...
        FROM, so 100,000 items with identical params cost what one does (it was one
        correlated lookup per item, quadratic in repeats). Which side is smaller is
        told cheaply first (:func:`_cache_side`); with no result in the store, or no
        never-sent item in the job, nothing is looked up at all.
        Returns (items answered now, USD the cache has saved this job so far).
        """
        with self._tx() as s:
            side = _cache_side(s, job_id)
            hits = 0
            if side is not None:
                hits = count(
                    s.connection().execute(_answer_from_cache(s, job_id, now, endpoint, side))
                )
            return hits, _cache_totals(s, job_id)

    def share_leaders_outcomes(self, job_id: int, now: datetime) -> int:
        """Items that follow another (``dedupe``) take their leader's outcome once the
        leader is finished: its answer (counted as a cache hit), or its failure. One
        UPDATE ... FROM per call. Returns how many items were finished."""
        leader = _ITEMS.alias("leader")
        with self._tx() as s:
            shared = count(
                s.connection().execute(
                    _ITEMS.update()
                    .where(
                        _ITEMS.c.job_id == job_id,
                        _ITEMS.c.status == ItemStatus.PENDING,
                        _ITEMS.c.leader_id == leader.c.id,
                        leader.c.status.in_(_SHARED_STATUSES),
                    )
                    .values(
                        status=leader.c.status,
                        final_result_id=leader.c.final_result_id,
                        cached=leader.c.status == ItemStatus.SUCCEEDED,
                        error_type=leader.c.error_type,
                        error_message=leader.c.error_message,
                        updated_at=now,
                    )
                )
            )
            if shared:
                _cache_totals(s, job_id)
            return shared

    def pending_items(self, job_id: int, after_id: int, limit: int) -> list[PendingItem]:
        """Pending items of a job in id order, one keyset page at a time; an item that
        follows another with the same params (``dedupe``) waits for its outcome instead."""
        with self._tx() as s:
            rows = s.connection().execute(
                select(_ITEMS.c.id, _ITEMS.c.attempts, _ITEMS.c.params)
                .where(*_pending_page(job_id, after_id))
                .order_by(_ITEMS.c.id)
                .limit(limit)
            )
            return [PendingItem(r.id, r.attempts, r.params) for r in rows]

    def pending_sizes(self, job_id: int, after_id: int, limit: int) -> list[tuple[int, int, int]]:
        """The page :meth:`pending_items` reads, as ``(id, attempts, bytes of params)``:
        what the planner needs to pack a batch. The database measures the params,
        so they are neither sent over nor turned into an object per item."""
        with self._tx() as s:
            params = params_utf8(s)
            if params is not None:
                rows = s.connection().execute(
                    select(_ITEMS.c.id, _ITEMS.c.attempts, func.length(params))
                    .where(*_pending_page(job_id, after_id))
                    .order_by(_ITEMS.c.id)
                    .limit(limit)
                )
                return list(rows.all())
        # A SQLite file whose text is not UTF-8: the params are measured here.
        return [
            (p.id, p.attempts, len(p.params_json))
            for p in self.pending_items(job_id, after_id, limit)
        ]

    def add_planned_batch(
        self, lease: Lease, requests: Sequence[PlannedRequest], body_bytes: int, now: datetime
    ) -> int | None:
        """Record a planned batch and move its items to ``queued``.

        None when the job lease was lost or an item is no longer pending.
        """
        try:
            return self._add_planned_batch(lease, requests, body_bytes, now)
        except LostRace:
            return None

    def _add_planned_batch(
        self, lease: Lease, requests: Sequence[PlannedRequest], body_bytes: int, now: datetime
    ) -> int:
        with self._tx() as s:
            if not lock_active_job(s, lease.row_id):
                raise LostRace
            if not s.execute(select(Job.id).where(held(Job, lease))).first():
                raise LostRace
            batch = Batch(
                job_id=lease.row_id,
                status=BatchStatus.PLANNED,
                request_count=len(requests),
                body_bytes=body_bytes,
                created_at=now,
                updated_at=now,
            )
            s.add(batch)
            s.flush()
            tag = _store_tag_of(requests)
            if _in_id_order_with_our_ids(requests, tag):
                # The usual batch (the plan step's): its items are moved first, and its
                # requests are copied from them in one statement, in id order, which is
                # the planned order here, with the custom_ids the move made.
                moved = _queue_items(s, batch.id, requests, tag, now)
                if moved != len(requests):
                    raise LostRace
                copy_batch_requests(s, batch.id)
                return batch.id
            moved = 0
            # Chunked so no statement carries more ids than a backend binds at once.
            for start in range(0, len(requests), PLAN_WRITE_ROWS):
                chunk = requests[start : start + PLAN_WRITE_ROWS]
                _write_requests(s, batch.id, chunk)
                moved += _queue_items(s, batch.id, chunk, tag, now)
            if moved != len(requests):
                raise LostRace
            return batch.id


def _pending_page(job_id: int, after_id: int) -> tuple[ColumnElement[bool], ...]:
    """The WHERE clause of a page of the job's pending items that are sent themselves."""
    return (
        _ITEMS.c.job_id == job_id,
        _ITEMS.c.status == ItemStatus.PENDING,
        _ITEMS.c.leader_id.is_(None),
        _ITEMS.c.id > after_id,
    )


def params_utf8(s: Session) -> ColumnElement[bytes] | None:
    """The items' params as their UTF-8 bytes, made by the database (no ``str`` per
    row here); None for a SQLite file whose text is not UTF-8: made here then.

    SQLite hands the text back as a BLOB of its stored bytes, UTF-8 in any store this
    project creates; PostgreSQL converts from the database's encoding (never a
    text-to-bytea cast, which would read backslashes as escapes).
    """
    if s.get_bind().dialect.name == "sqlite":
        if s.execute(text("PRAGMA encoding")).scalar() != "UTF-8":
            return None
        return cast(_ITEMS.c.params, LargeBinary)
    return type_coerce(func.convert_to(_ITEMS.c.params, literal("UTF8")), LargeBinary)


def _store_tag_of(requests: Sequence[PlannedRequest]) -> str:
    parts = parse_custom_id(requests[0].custom_id) if requests else None
    return parts.store_tag if parts is not None else ""


def _in_id_order_with_our_ids(requests: Sequence[PlannedRequest], tag: str) -> bool:
    """The requests go in ascending item id order, each under the custom_id
    ``make_custom_id(tag, item_id, attempt)`` (what the plan step plans)."""
    if not tag:
        return False
    previous = 0
    for r in requests:
        if r.item_id <= previous or r.custom_id != f"{tag}-{r.item_id}-{r.attempt}":
            return False
        previous = r.item_id
    return True


def _id_runs(ids: Sequence[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """Distinct ascending ids as (first, last) runs of at least ``MIN_ID_RUN``
    consecutive ids, and the ids of shorter runs."""
    if len(ids) >= MIN_ID_RUN and ids[-1] - ids[0] + 1 == len(ids):
        return [(ids[0], ids[-1])], []  # one run: the common case, no pass over the ids
    runs: list[tuple[int, int]] = []
    scattered: list[int] = []
    start = 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or ids[end] != ids[end - 1] + 1:
            if end - start >= MIN_ID_RUN:
                runs.append((ids[start], ids[end - 1]))
            else:
                scattered.extend(ids[start:end])
            start = end
    return runs, scattered


def _write_requests(s: Session, batch_id: int, chunk: Sequence[PlannedRequest]) -> None:
    """Write a chunk of the batch's requests as given, in the order given (Core
    executemany): for a batch not in id order or under other custom_ids."""
    s.connection().execute(
        _REQUESTS.insert(),
        [
            {
                "batch_id": batch_id,
                "item_id": r.item_id,
                "attempt": r.attempt,
                "custom_id": r.custom_id,
            }
            for r in chunk
        ],
    )


def copy_batch_requests(s: Session, batch_id: int) -> None:
    """Write the batch's requests from its items, just moved into it, in id order."""
    s.connection().execute(
        _REQUESTS.insert().from_select(
            ["batch_id", "item_id", "attempt", "custom_id"],
            select(
                literal(batch_id, _ITEMS.c.id.type),
                _ITEMS.c.id,
                _ITEMS.c.attempts,
                _ITEMS.c.custom_id,
            )
            .where(_ITEMS.c.batch_id == batch_id)
            .order_by(_ITEMS.c.id),
        )
    )


def _queue_items(
    s: Session, batch_id: int, requests: Sequence[PlannedRequest], tag: str, now: datetime
) -> int:
    """Move the requests' items into the batch; returns how many moved.

    One UPDATE per attempt number and run of consecutive ids (a batch of a new job's
    items is one run: one statement), the rest over id lists of at most
    ``PLAN_WRITE_ROWS``, never one statement per item. The custom_id is computed in
    SQL from each row exactly as ``make_custom_id`` makes it. The attempt is in the
    WHERE, so an item whose attempts changed since it was read (or that is no longer
    pending) is not moved, and the caller's count check rolls the batch back.
    """
    moved = 0
    by_attempt: dict[int, list[int]] = {}
    for request in requests:
        by_attempt.setdefault(request.attempt, []).append(request.item_id)
    custom_id = (
        literal(f"{tag}-")
        + cast(_ITEMS.c.id, String)
        + literal("-")
        + cast(_ITEMS.c.attempts + 1, String)
    )
    for attempt, ids in by_attempt.items():
        runs, scattered = _id_runs(sorted(set(ids)))
        which = [_ITEMS.c.id.between(first, last) for first, last in runs]
        which += [
            _ITEMS.c.id.in_(scattered[start : start + PLAN_WRITE_ROWS])
            for start in range(0, len(scattered), PLAN_WRITE_ROWS)
        ]
        for ids_clause in which:
            moved += count(
                s.connection().execute(
                    _ITEMS.update()
                    .where(
                        ids_clause,
                        _ITEMS.c.status == ItemStatus.PENDING,
                        _ITEMS.c.attempts == attempt - 1,
                    )
                    .values(
                        status=ItemStatus.QUEUED,
                        batch_id=batch_id,
                        attempts=_ITEMS.c.attempts + 1,
                        custom_id=custom_id,
                        updated_at=now,
                    )
                )
            )
    return moved


def _cache_side(s: Session, job_id: int) -> CacheSide | None:
    """Which side the cache lookup starts from, or None when nothing can be answered.

    ``results``: every usable result of the store, grouped by params, then the job's
    items with those params; ``items``: the job's never-sent items' distinct params,
    each looked up among the items that have results. The cheaper is the one with
    fewer rows: the results' primary key bounds their number at once (their id span),
    and the job's never-sent items are counted only up to that bound. A fresh store
    (no result) costs one index probe; a new job in a store with a small history
    costs a pass over that history, not one lookup per item.
    """
    bounds: tuple[int | None, ...] = tuple(
        s.execute(select(func.min(Result.id), func.max(Result.id))).one()
    )
    first, last = bounds
    if first is None or last is None:
        return None  # no result in the store: nothing to answer from
    results = int(last) - int(first) + 1
    never_sent = (
        select(literal(1))
        .where(
            _ITEMS.c.job_id == job_id,
            _ITEMS.c.status == ItemStatus.PENDING,
            _ITEMS.c.attempts == 0,
        )
        .limit(results)
        .subquery("never_sent")
    )
    items = int(s.execute(select(func.count()).select_from(never_sent)).scalar_one())
    if items == 0:
        return None  # nothing to answer
    return "results" if items >= results else "items"


def _answer_from_cache(
    s: Session, job_id: int, now: datetime, endpoint: str, side: CacheSide
) -> Update:
    """The UPDATE ... FROM that answers the job's never-sent items from the store's
    usable succeeded results, looked up from ``side`` (see :func:`_cache_side`); the
    same items are answered, from the same result, either way."""
    api_version, output_mode = s.execute(
        select(Job.api_version, Job.output_mode).where(Job.id == job_id)
    ).one()
    # An answer that missed its schema is no answer; a job with [output] needs
    # one that was read against it (the schema is in the params, so the same).
    usable = [Result.output_error.is_(None)]
    if output_mode is not None:
        usable.append(Result.output.is_not(None))
    never_sent = (
        _ITEMS.c.job_id == job_id,
        _ITEMS.c.status == ItemStatus.PENDING,
        _ITEMS.c.attempts == 0,
    )
    if side == "items":
        wanted = select(_ITEMS.c.params_hash).where(*never_sent).distinct()
        usable.append(Item.params_hash.in_(wanted))
    source_job = aliased(Job, name="source_job")
    sources = (
        select(Item.params_hash, func.min(Result.id).label("result_id"))
        .join(Item, Item.id == Result.item_id)
        .join(Batch, Batch.id == Result.batch_id)
        .join(source_job, source_job.id == Item.job_id)
        .where(
            Result.result_type == ResultType.SUCCEEDED,
            Batch.endpoint == endpoint,
            source_job.api_version == api_version,
            *usable,
        )
        .group_by(Item.params_hash)
        .subquery("sources")
    )
    return (
        _ITEMS.update()
        .where(*never_sent, _ITEMS.c.params_hash == sources.c.params_hash)
        .values(
            status=ItemStatus.SUCCEEDED,
            final_result_id=sources.c.result_id,
            cached=True,
            updated_at=now,
        )
    )


def _cache_totals(s: Session, job_id: int) -> float:
    """Recount the job's cache totals from its cached items (one join, no id list that
    could outgrow a backend's bind-parameter limit). Returns the USD saved.

    A cached item is a succeeded one (the cache and ``dedupe`` set ``cached`` only with
    ``succeeded``, and nothing moves an item on from there), so only the job's succeeded
    items are read, through the ``(job_id, status)`` index: not the whole job."""
    total_hits, total_saved = s.execute(
        select(func.count(), func.coalesce(func.sum(Result.cost_usd), 0.0))
        .select_from(Item)
        .join(Result, Result.id == Item.final_result_id)
        .where(
            Item.job_id == job_id,
            Item.status == ItemStatus.SUCCEEDED,
            Item.cached.is_(True),
        )
    ).one()
    saved = float(total_saved or 0.0)
    s.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(cache_hits=int(total_hits), cache_saved_usd=saved)
    )
    return saved
