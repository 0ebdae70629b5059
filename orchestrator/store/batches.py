"""The batch aggregate: claims and leases, the create's transitions, reconciliation, polling.

Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL. SQLite does not render it,
and doesn't need it: every transaction there starts with ``BEGIN IMMEDIATE``,
which serializes writers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from orchestrator.domain.states import (
    CREATE_IN_FLIGHT,
    OPEN_REMOTE_BATCH_STATUSES,
    BatchStatus,
    ItemStatus,
)
from orchestrator.store._sql import (
    REMOTE_BATCH_COLUMNS,
    StoreBase,
    batch_record,
    count,
    held,
    lease_free,
    lock_active_job,
)
from orchestrator.store.planning import params_utf8
from orchestrator.store.records import BatchRecord, Lease, RemoteState, RequestLine
from orchestrator.store.tables import Batch, BatchRequest, DuplicateBatch, Item

#: Requests read per transaction while a create body streams out.
REQUEST_PAGE_ROWS = 1000
#: Batches a poll tick writes per transaction: one commit for many rows, yet a
#: SQLite store's write lock is not held for long.
UPDATE_ROWS = 500


class BatchOps(StoreBase):
    # -- claims and leases -----------------------------------------------------------

    def claim_batches(
        self,
        statuses: Iterable[BatchStatus],
        owner: str,
        now: datetime,
        ttl_s: float,
        limit: int = 10,
        *,
        job_id: int | None = None,
    ) -> list[Lease]:
        """Lease up to ``limit`` batches in ``statuses`` that are free and due
        (of one job when ``job_id`` is given)."""
        with self._tx() as s:
            candidates = (
                select(Batch.id)
                .where(
                    Batch.status.in_(list(statuses)),
                    lease_free(Batch, now),
                    or_(Batch.next_attempt_at.is_(None), Batch.next_attempt_at <= now),
                    *_of_job(job_id),
                )
                # A batch whose ingest keeps failing goes last, not first, every time.
                .order_by(Batch.ingest_attempts, Batch.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = s.execute(
                update(Batch)
                .where(Batch.id.in_(candidates))
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=ttl_s),
                    lease_version=Batch.lease_version + 1,
                )
                .returning(Batch.id, Batch.lease_version)
            ).all()
            return [Lease(int(r[0]), owner, int(r[1])) for r in sorted(rows)]

    def heartbeat(self, lease: Lease, now: datetime, ttl_s: float) -> bool:
        """Extend a batch lease; False means it was taken over and work must stop."""
        with self._tx() as s:
            res = s.execute(
                update(Batch)
                .where(held(Batch, lease))
                .values(lease_expires_at=now + timedelta(seconds=ttl_s))
            )
            return count(res) == 1

    def release_batch(self, lease: Lease) -> None:
        with self._tx() as s:
            s.execute(
                update(Batch)
                .where(held(Batch, lease))
                .values(lease_owner=None, lease_expires_at=None)
            )

    def holds_batch(self, lease: Lease) -> bool:
        with self._tx() as s:
            return s.execute(select(Batch.id).where(held(Batch, lease))).first() is not None

    # -- reading -----------------------------------------------------------------------

    def get_batch(self, batch_id: int) -> BatchRecord:
        with self._tx() as s:
            return batch_record(s.get_one(Batch, batch_id))

    def batches(
        self, statuses: Iterable[BatchStatus], job_id: int | None = None
    ) -> list[BatchRecord]:
        with self._tx() as s:
            query = (
                select(Batch)
                .where(Batch.status.in_(list(statuses)), *_of_job(job_id))
                .order_by(Batch.id)
            )
            return [batch_record(b) for b in s.execute(query).scalars()]

    def requests_in_flight(self) -> int:
        """Requests of this store the API holds or may hold in its processing queue."""
        with self._tx() as s:
            total = s.execute(
                select(func.coalesce(func.sum(Batch.request_count), 0)).where(
                    Batch.status.in_(CREATE_IN_FLIGHT | OPEN_REMOTE_BATCH_STATUSES)
                )
            ).scalar_one()
            return int(total)

    def creates_since(self, since: datetime) -> int:
        """Creates this store started since ``since`` (all workers)."""
        with self._tx() as s:
            started = s.execute(
                select(func.count()).select_from(Batch).where(Batch.intent_at >= since)
            ).scalar_one()
            return int(started)

    def owned_remote_ids(self) -> dict[str, int]:
        """Every remote batch id this store knows, with its job id."""
        with self._tx() as s:
            rows = s.execute(
                select(Batch.remote_id, Batch.job_id).where(Batch.remote_id.is_not(None))
            )
            return {str(r[0]): int(r[1]) for r in rows}

    def request_lines(self, batch_id: int) -> Iterator[RequestLine]:
        """A batch's requests in order, read in short pages (flat memory)."""
        for custom_id, params_json in self.request_rows(batch_id):
            yield RequestLine(custom_id, params_json)

    def request_rows(self, batch_id: int) -> Iterator[tuple[str, bytes]]:
        """:meth:`request_lines` as ``(custom_id, params_json)`` pairs (what the create
        body is made of, with no object per request).

        Pages are windows of ``REQUEST_PAGE_ROWS`` ids of the primary key between
        the batch's first and last request, each its own transaction. A window
        bounds the work of a page on any plan: with ``id > after`` alone and a
        LIMIT, PostgreSQL without statistics on a fresh table reads and sorts the
        rest of the batch for every page (100 pages of a 100,000-request batch
        took 12 s). With ``batch_id`` compared as ``batch_id + 0``, no index on
        ``batch_id`` can be chosen, for each of them (``(batch_id, item_id)``,
        ``(batch_id, custom_id)``) would make the database fetch and sort the
        whole batch for every page (SQLite does). A planned batch's requests are
        written by one transaction, so their ids are contiguous (on SQLite, which
        serializes writers) or nearly so, and a window holds about a page. The pages
        are read in read-only transactions: on SQLite a create's body streams while
        another thread of the worker writes (plans, ingests) without waiting for it.
        """
        with self._read() as s:
            bounds: tuple[int | None, ...] = tuple(
                s.execute(
                    select(func.min(BatchRequest.id), func.max(BatchRequest.id)).where(
                        BatchRequest.batch_id == batch_id
                    )
                ).one()
            )
            params = params_utf8(s)
        first, last = bounds
        if first is None or last is None:
            return  # no requests
        after = first - 1
        while after < last:
            upto = min(after + REQUEST_PAGE_ROWS, last)
            with self._read() as s:
                rows = (
                    s.connection()
                    .execute(
                        select(_REQUESTS.c.custom_id, _ITEMS.c.params if params is None else params)
                        .join(_ITEMS, _ITEMS.c.id == _REQUESTS.c.item_id)
                        .where(
                            _REQUESTS.c.id > after,
                            _REQUESTS.c.id <= upto,
                            _REQUESTS.c.batch_id + 0 == batch_id,
                        )
                        .order_by(_REQUESTS.c.id)
                    )
                    .all()
                )
            yield from rows
            after = upto

    # -- the create ----------------------------------------------------------------------

    def mark_creating(self, lease: Lease, now: datetime, endpoint: str) -> bool:
        """Commit the intent to create at ``endpoint`` BEFORE the POST (crash safety).

        False when the lease was lost, the job is no longer active, or another create
        of the job, or of the same request count anywhere in the store, is in flight
        (so a lost create can always be told apart by listing).
        """
        try:
            with self._tx() as s:
                if not lock_active_job(s, _job_of(s, lease)):
                    return False
                res = s.execute(
                    update(Batch)
                    .where(held(Batch, lease), Batch.status == BatchStatus.PLANNED)
                    .values(
                        status=BatchStatus.CREATING,
                        intent_at=now,
                        endpoint=endpoint,
                        updated_at=now,
                    )
                )
                return count(res) == 1
        except IntegrityError:
            return False

    def record_created(
        self, lease: Lease, remote: RemoteState, now: datetime, *, adopted: bool = False
    ) -> bool:
        """The create (or, ``adopted``, its reconciliation by listing) named the remote
        batch: record it. False when the lease moved on, or another row of this store
        already holds that remote batch (a race to adopt it: handled, not a crash)."""
        try:
            with self._tx() as s:
                res = s.execute(
                    update(Batch)
                    .where(held(Batch, lease), Batch.status.in_(CREATE_IN_FLIGHT))
                    .values(
                        remote_id=remote.remote_id,
                        adopted=adopted,
                        submitted_at=now,
                        last_error=None,
                        updated_at=now,
                        **_remote_fields(remote),
                    )
                )
                if count(res) != 1:
                    return False
                # Adopted: no longer one of the batch's watched duplicates.
                s.execute(
                    delete(DuplicateBatch).where(DuplicateBatch.remote_id == remote.remote_id)
                )
                return True
        except IntegrityError:
            return False

    def mark_unknown(
        self, lease: Lease, error: str, now: datetime, reconcile_until: datetime | None
    ) -> bool:
        """The create's outcome is unknown: reconcile it by listing until ``reconcile_until``
        (None: derived from the intent and the body's size)."""
        return self._set_batch(
            lease,
            (BatchStatus.CREATING,),
            status=BatchStatus.UNKNOWN,
            last_error=error,
            reconcile_until=reconcile_until,
            updated_at=now,
        )

    def return_to_planned(
        self, lease: Lease, error: str, retry_at: datetime, now: datetime
    ) -> bool:
        """A create that provably made nothing goes back to ``planned``, due at ``retry_at``.

        False (nothing changed) when a cancel was requested meanwhile: such a batch
        must not be sent again (see :meth:`drop_canceled_create`).
        """
        with self._tx() as s:
            if not lock_active_job(s, _job_of(s, lease)):
                return False
            res = s.execute(
                update(Batch)
                .where(
                    held(Batch, lease),
                    Batch.status.in_(CREATE_IN_FLIGHT),
                    Batch.cancel_requested.is_(False),
                )
                .values(
                    status=BatchStatus.PLANNED,
                    intent_at=None,
                    last_error=error,
                    next_attempt_at=retry_at,
                    updated_at=now,
                )
            )
            return count(res) == 1

    def drop_canceled_create(self, lease: Lease, now: datetime) -> bool:
        """Delete a create that made nothing and was canceled; its items are canceled."""
        with self._tx() as s:
            dropped = s.execute(
                select(Batch.id)
                .where(
                    held(Batch, lease),
                    Batch.status.in_(CREATE_IN_FLIGHT),
                    Batch.cancel_requested.is_(True),
                )
                .with_for_update()
            ).first()
            if dropped is None:
                return False
            s.execute(
                update(Item)
                .where(Item.batch_id == lease.row_id, Item.status == ItemStatus.QUEUED)
                .values(status=ItemStatus.CANCELED, batch_id=None, updated_at=now)
            )
            s.execute(delete(Batch).where(Batch.id == lease.row_id))
            return True

    def mark_rejected(self, lease: Lease, error_type: str, message: str, now: datetime) -> bool:
        """The API refused the create for good: its items fail with the API's reason."""
        with self._tx() as s:
            res = s.execute(
                update(Batch)
                .where(held(Batch, lease), Batch.status == BatchStatus.CREATING)
                .values(status=BatchStatus.REJECTED, last_error=message, updated_at=now)
            )
            if count(res) != 1:
                return False
            s.execute(
                update(Item)
                .where(Item.batch_id == lease.row_id, Item.status == ItemStatus.QUEUED)
                .values(
                    status=ItemStatus.FAILED,
                    error_type=error_type,
                    error_message=message,
                    updated_at=now,
                )
            )
            return True

    def abandoned_creates(self, now: datetime, job_id: int | None = None) -> int:
        """Creates whose worker died mid-call become ``unknown`` (to be reconciled).

        A lease that expired means the worker died; a lease already released means
        an exception unwound the submit step after the POST (its ``finally``
        released the batch without recording the outcome). Either way nobody is
        working on the create any more.
        """
        with self._tx() as s:
            res = s.execute(
                update(Batch)
                .where(
                    Batch.status == BatchStatus.CREATING, lease_free(Batch, now), *_of_job(job_id)
                )
                .values(
                    status=BatchStatus.UNKNOWN,
                    lease_owner=None,
                    lease_expires_at=None,
                    last_error="the worker stopped during the create",
                    updated_at=now,
                )
            )
            return count(res)

    # -- poll ----------------------------------------------------------------------------

    def update_remote_state(self, batch_id: int, remote: RemoteState, now: datetime) -> bool:
        """Apply what the API reports about an open batch."""
        with self._tx() as s:
            res = s.execute(
                update(Batch)
                .where(Batch.id == batch_id, Batch.status.in_(OPEN_REMOTE_BATCH_STATUSES))
                .values(updated_at=now, **_remote_fields(remote))
            )
            return count(res) == 1

    def update_remote_states(
        self, states: Sequence[tuple[int, RemoteState]], now: datetime
    ) -> set[int]:
        """Apply a whole poll tick's reports (batch id, state) at once; returns the ids
        of the batches that were still open (the others are left as they are).

        One transaction per ``UPDATE_ROWS`` batches, and one statement sent with
        many parameter sets: a tick over thousands of open batches costs a few
        commits, not one per batch.
        """
        applied: set[int] = set()
        for start in range(0, len(states), UPDATE_ROWS):
            chunk = dict(states[start : start + UPDATE_ROWS])
            with self._tx() as s:
                still_open = s.execute(
                    select(Batch.id)
                    .where(Batch.id.in_(chunk), Batch.status.in_(OPEN_REMOTE_BATCH_STATUSES))
                    .with_for_update()
                ).scalars()
                rows = [_state_row(batch_id, chunk[batch_id], now) for batch_id in still_open]
                if rows:
                    s.execute(_UPDATE_REMOTE_STATE, rows)
                applied.update(row["b_id"] for row in rows)
        return applied


def _job_of(s: Session, lease: Lease) -> int | None:
    return s.execute(select(Batch.job_id).where(Batch.id == lease.row_id)).scalar()


def _of_job(job_id: int | None) -> tuple[Any, ...]:
    """The WHERE clause that scopes a query to one job (``orchestrator run SPEC``)."""
    return () if job_id is None else (Batch.job_id == job_id,)


_BATCHES: Table = Batch.__table__  # type: ignore[assignment]
_REQUESTS: Table = BatchRequest.__table__  # type: ignore[assignment]
_ITEMS: Table = Item.__table__  # type: ignore[assignment]
#: The columns ``_remote_fields`` sets.
_REMOTE_COLUMNS = ("status", *REMOTE_BATCH_COLUMNS)
#: ``update_remote_states``' statement, keyed on ``b_id``, every field a parameter
#: (bound to its column, so the column's type converts the value as the ORM does).
_UPDATE_REMOTE_STATE = (
    update(_BATCHES)
    .where(_BATCHES.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in (*_REMOTE_COLUMNS, "updated_at")})
)


def _state_row(batch_id: int, remote: RemoteState, now: datetime) -> dict[str, Any]:
    row = {f"b_{name}": value for name, value in _remote_fields(remote).items()}
    return {"b_id": batch_id, "b_updated_at": now, **row}


def _remote_fields(remote: RemoteState) -> dict[str, Any]:
    return {
        "status": remote.status,
        "processing_status": remote.processing_status,
        "remote_created_at": remote.created_at,
        "expires_at": remote.expires_at,
        "ended_at": remote.ended_at,
        "results_url": remote.results_url,
        "succeeded_count": remote.succeeded,
        "errored_count": remote.errored,
        "canceled_count": remote.canceled,
        "expired_count": remote.expired,
    }
