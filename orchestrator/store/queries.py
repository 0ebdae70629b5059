"""Named operations on the job store: the only place that builds SQL.

Conventions (procrastinate's ``JobManager``):

* each method is one short transaction and returns plain values from
  ``records.py``;
* every state change is a conditional UPDATE (``WHERE id = :id AND status IN
  (...)``); zero rows means another worker got there first, and the caller
  moves on;
* work on a claimed row carries its :class:`Lease`; a write whose lease was
  taken over matches zero rows and the holder must stop (fencing).

Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL. SQLite does not render it,
and doesn't need it: every transaction there starts with ``BEGIN IMMEDIATE``,
which serializes writers.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Engine,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, aliased, sessionmaker

from orchestrator.chunking import chunked
from orchestrator.errors import JobNotFoundError, SpecError, StoreUnavailableError
from orchestrator.store.engine import make_engine, require_head, safe_url
from orchestrator.store.records import (
    BatchRecord,
    ItemLike,
    JobRecord,
    JobReport,
    Lease,
    NewJob,
    PendingItem,
    PlannedRequest,
    RemoteState,
    RequestRef,
    Resolution,
)
from orchestrator.store.tables import (
    ApiBackoff,
    Batch,
    BatchRequest,
    BatchStatus,
    Item,
    ItemStatus,
    Job,
    JobStatus,
    Meta,
    Quarantine,
    Result,
)

ITEM_CHUNK_ROWS = 1000
PLAN_WRITE_ROWS = 5000
TERMINAL_ITEM_STATUSES = (ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.CANCELED)
OPEN_REMOTE_STATUSES = (BatchStatus.IN_PROGRESS, BatchStatus.CANCELING)
STORE_TAG_CHARS = string.ascii_lowercase + string.digits
STORE_TAG_LEN = 6


class Store:
    """The SQL job store behind named operations."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._tag: str | None = None

    @classmethod
    def open(cls, url: str, *, check_head: bool = True) -> Store:
        """Connect to ``url``; refuse a store whose schema is not at the head revision."""
        engine = make_engine(url)
        if check_head:
            try:
                require_head(engine)
            except Exception:
                engine.dispose()
                raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise StoreUnavailableError(
                f"job store {safe_url(self.engine)} failed: {exc.orig}"
            ) from exc

    def _insert(self, table: Any) -> Any:
        """An INSERT that supports ``on_conflict_do_nothing`` on this backend."""
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table)

    # -- store-wide --------------------------------------------------------------

    def store_tag(self) -> str:
        """A short random tag, made once per store, that prefixes every custom_id.

        It proves a result line is ours: batches created by another store or tool
        in the same workspace carry other custom_ids.
        """
        if self._tag is None:
            with self._tx() as s:
                tag = "".join(secrets.choice(STORE_TAG_CHARS) for _ in range(STORE_TAG_LEN))
                stmt = self._insert(Meta).values(key="store_tag", value=tag)
                s.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
                self._tag = s.execute(
                    select(Meta.value).where(Meta.key == "store_tag")
                ).scalar_one()
        return self._tag

    def backoff_until(self, scope: str) -> datetime | None:
        with self._tx() as s:
            return s.execute(
                select(ApiBackoff.backoff_until).where(ApiBackoff.scope == scope)
            ).scalar_one_or_none()

    def set_backoff(self, scope: str, until: datetime, reason: str) -> None:
        """Make every daemon on this store wait until ``until`` before calling the API."""
        with self._tx() as s:
            stmt = self._insert(ApiBackoff).values(scope=scope, backoff_until=until, reason=reason)
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=["scope"], set_={"backoff_until": until, "reason": reason}
                )
            )

    # -- jobs --------------------------------------------------------------------

    def find_job(self, ref: str) -> JobRecord | None:
        """A job by id (digits) or name."""
        with self._tx() as s:
            cond = Job.id == int(ref) if ref.isdigit() else Job.name == ref
            row = s.execute(select(Job).where(cond)).scalar_one_or_none()
            return _job_record(row) if row else None

    def get_job(self, ref: str) -> JobRecord:
        job = self.find_job(ref)
        if job is None:
            raise JobNotFoundError(
                f"no job {ref!r} in this store; `orchestrator status` lists them"
            )
        return job

    def list_jobs(self, statuses: Sequence[JobStatus] | None = None) -> list[JobRecord]:
        with self._tx() as s:
            query = select(Job).order_by(Job.id)
            if statuses:
                query = query.where(Job.status.in_(statuses))
            return [_job_record(row) for row in s.execute(query).scalars()]

    def create_job(
        self,
        new: NewJob,
        items: Iterable[ItemLike],
        *,
        before_commit: Callable[[], None] | None = None,
        now: datetime,
    ) -> JobRecord:
        """Record a job and all its items in ONE transaction.

        A bad row, a duplicate key or ``before_commit`` raising (e.g. over budget)
        rolls everything back: a rejected spec leaves nothing half-written.
        """
        with self._tx() as s:
            job = Job(
                status=JobStatus.ACTIVE, created_at=now, updated_at=now, **_new_job_fields(new)
            )
            s.add(job)
            s.flush()
            total = 0
            for chunk in chunked(items, ITEM_CHUNK_ROWS):
                _check_duplicate_keys(s, job.id, chunk, new.spec_path)
                s.execute(insert(Item), [_item_row(job.id, it, now) for it in chunk])
                total += len(chunk)
            if total == 0:
                raise SpecError("the job has no items (the input file has no rows)")
            job.items_total = total
            if before_commit is not None:
                before_commit()
            s.flush()
            return _job_record(job)

    def active_job_ids(self) -> list[int]:
        with self._tx() as s:
            return list(s.execute(select(Job.id).where(Job.status == JobStatus.ACTIVE)).scalars())

    def finish_job_if_done(self, job_id: int, now: datetime) -> bool:
        """Mark an active job done once no item is left that is not terminal."""
        with self._tx() as s:
            open_items = s.execute(
                select(func.count())
                .select_from(Item)
                .where(Item.job_id == job_id, Item.status.not_in(TERMINAL_ITEM_STATUSES))
            ).scalar_one()
            if open_items:
                return False
            done = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.ACTIVE)
                .values(status=JobStatus.DONE, finished_at=now, updated_at=now)
            )
            return _count(done) == 1

    def cancel_job(self, job_id: int, now: datetime) -> int:
        """Cancel a job: nothing new is sent, in-flight batches get a cancel request.

        Returns how many remote batches will be asked to cancel.
        """
        with self._tx() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.ACTIVE)
                .values(status=JobStatus.CANCELED, canceled_at=now, updated_at=now)
            )
            planned = select(Batch.id).where(
                Batch.job_id == job_id, Batch.status == BatchStatus.PLANNED
            )
            s.execute(
                update(Item)
                .where(
                    Item.job_id == job_id,
                    or_(Item.status == ItemStatus.PENDING, Item.batch_id.in_(planned)),
                )
                .values(status=ItemStatus.CANCELED, batch_id=None, updated_at=now)
            )
            s.execute(delete(Batch).where(Batch.id.in_(planned)))
            flagged = s.execute(
                update(Batch)
                .where(
                    Batch.job_id == job_id,
                    Batch.status.in_(
                        (BatchStatus.CREATING, BatchStatus.UNKNOWN, *OPEN_REMOTE_STATUSES)
                    ),
                )
                .values(cancel_requested=True, updated_at=now)
            )
            return _count(flagged)

    # -- planning ----------------------------------------------------------------

    def jobs_with_pending_items(self) -> list[int]:
        with self._tx() as s:
            query = (
                select(Item.job_id)
                .join(Job, Job.id == Item.job_id)
                .where(Item.status == ItemStatus.PENDING, Job.status == JobStatus.ACTIVE)
                .distinct()
            )
            return list(s.execute(query).scalars())

    def claim_job(self, job_id: int, owner: str, now: datetime, ttl_s: float) -> Lease | None:
        """Lease a job for planning, so two daemons never plan the same items."""
        with self._tx() as s:
            row = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.ACTIVE, _lease_free(Job, now))
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
                update(Job).where(_held(Job, lease)).values(lease_owner=None, lease_expires_at=None)
            )

    def apply_response_cache(self, job_id: int, now: datetime) -> tuple[int, float]:
        """Answer never-sent items whose exact params already succeeded in this store.

        Returns (items answered now, USD the cache has saved this job so far).
        """
        with self._tx() as s:
            source = (
                select(func.min(Result.id))
                .join(Item, Item.id == Result.item_id)
                .where(Result.result_type == "succeeded", Item.params_hash == _PENDING.params_hash)
                .correlate(_PENDING)
                .scalar_subquery()
            )
            rows = s.execute(
                select(_PENDING.id, source).where(
                    _PENDING.job_id == job_id,
                    _PENDING.status == ItemStatus.PENDING,
                    _PENDING.attempts == 0,
                )
            ).all()
            hits = [{"item": i, "result": r} for i, r in rows if r is not None]
            if hits:
                s.connection().execute(
                    _ITEMS.update()
                    .where(_ITEMS.c.id == bindparam("item"), _ITEMS.c.status == ItemStatus.PENDING)
                    .values(
                        status=ItemStatus.SUCCEEDED,
                        final_result_id=bindparam("result"),
                        cached=True,
                        updated_at=now,
                    ),
                    hits,
                )
            # The job's totals are derived from its cached items (one join, no id list
            # that could outgrow a backend's bind-parameter limit).
            total_hits, total_saved = s.execute(
                select(func.count(), func.coalesce(func.sum(Result.cost_usd), 0.0))
                .select_from(Item)
                .join(Result, Result.id == Item.final_result_id)
                .where(Item.job_id == job_id, Item.cached.is_(True))
            ).one()
            s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(cache_hits=int(total_hits), cache_saved_usd=float(total_saved or 0.0))
            )
            return len(hits), float(total_saved or 0.0)

    def pending_items(self, job_id: int, after_id: int, limit: int) -> list[PendingItem]:
        """Pending items of a job in id order, one keyset page at a time."""
        with self._tx() as s:
            rows = s.execute(
                select(Item.id, Item.attempts, Item.params)
                .where(Item.job_id == job_id, Item.status == ItemStatus.PENDING, Item.id > after_id)
                .order_by(Item.id)
                .limit(limit)
            ).all()
            return [PendingItem(r.id, r.attempts, r.params) for r in rows]

    def add_planned_batch(
        self, lease: Lease, requests: Sequence[PlannedRequest], body_bytes: int, now: datetime
    ) -> int | None:
        """Record a planned batch and move its items to ``queued``.

        None when the job lease was lost or an item is no longer pending.
        """
        try:
            return self._add_planned_batch(lease, requests, body_bytes, now)
        except _LostRace:
            return None

    def _add_planned_batch(
        self, lease: Lease, requests: Sequence[PlannedRequest], body_bytes: int, now: datetime
    ) -> int:
        with self._tx() as s:
            if not s.execute(select(Job.id).where(_held(Job, lease))).first():
                raise _LostRace
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
            moved = 0
            # Chunked so a 100,000-request batch never builds 100,000 parameter dicts at once.
            for start in range(0, len(requests), PLAN_WRITE_ROWS):
                chunk = requests[start : start + PLAN_WRITE_ROWS]
                moved += self._queue_requests(s, batch.id, chunk, now)
            if moved != len(requests):
                raise _LostRace
            return batch.id

    @staticmethod
    def _queue_requests(
        s: Session, batch_id: int, chunk: Sequence[PlannedRequest], now: datetime
    ) -> int:
        s.execute(
            insert(BatchRequest),
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
        return _count(
            s.connection().execute(
                _ITEMS.update()
                .where(_ITEMS.c.id == bindparam("item"), _ITEMS.c.status == ItemStatus.PENDING)
                .values(
                    status=ItemStatus.QUEUED,
                    batch_id=batch_id,
                    attempts=bindparam("attempt"),
                    custom_id=bindparam("cid"),
                    updated_at=now,
                ),
                [{"item": r.item_id, "attempt": r.attempt, "cid": r.custom_id} for r in chunk],
            )
        )

    # -- batch claims ------------------------------------------------------------

    def claim_batches(
        self,
        statuses: Sequence[BatchStatus],
        owner: str,
        now: datetime,
        ttl_s: float,
        limit: int = 10,
    ) -> list[Lease]:
        """Lease up to ``limit`` batches in ``statuses`` that are free and due."""
        with self._tx() as s:
            candidates = (
                select(Batch.id)
                .where(
                    Batch.status.in_(statuses),
                    _lease_free(Batch, now),
                    or_(Batch.next_attempt_at.is_(None), Batch.next_attempt_at <= now),
                )
                .order_by(Batch.id)
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
                .where(_held(Batch, lease))
                .values(lease_expires_at=now + timedelta(seconds=ttl_s))
            )
            return _count(res) == 1

    def release_batch(self, lease: Lease) -> None:
        with self._tx() as s:
            s.execute(
                update(Batch)
                .where(_held(Batch, lease))
                .values(lease_owner=None, lease_expires_at=None)
            )

    def get_batch(self, batch_id: int) -> BatchRecord:
        with self._tx() as s:
            return _batch_record(s.get_one(Batch, batch_id))

    def batches(
        self, statuses: Sequence[BatchStatus], job_id: int | None = None
    ) -> list[BatchRecord]:
        with self._tx() as s:
            query = select(Batch).where(Batch.status.in_(statuses)).order_by(Batch.id)
            if job_id is not None:
                query = query.where(Batch.job_id == job_id)
            return [_batch_record(b) for b in s.execute(query).scalars()]

    def owned_remote_ids(self) -> dict[str, int]:
        """Every remote batch id this store knows, with its job id."""
        with self._tx() as s:
            rows = s.execute(
                select(Batch.remote_id, Batch.job_id).where(Batch.remote_id.is_not(None))
            )
            return {str(r[0]): int(r[1]) for r in rows}

    # -- submit ------------------------------------------------------------------

    def mark_creating(self, lease: Lease, now: datetime) -> bool:
        """Commit the intent to create BEFORE the POST (crash-safety, design §5.3).

        False when the lease was lost, or the job already has a create in flight
        (one at a time per job keeps reconciliation unambiguous).
        """
        try:
            with self._tx() as s:
                res = s.execute(
                    update(Batch)
                    .where(_held(Batch, lease), Batch.status == BatchStatus.PLANNED)
                    .values(status=BatchStatus.CREATING, intent_at=now, updated_at=now)
                )
                return _count(res) == 1
        except IntegrityError:
            return False

    def request_lines(self, batch_id: int, page_rows: int = 1000) -> Iterator[tuple[str, str]]:
        """(custom_id, params JSON) of a batch's requests, read in short keyset pages."""
        after = 0
        while True:
            with self._tx() as s:
                rows = s.execute(
                    select(BatchRequest.id, BatchRequest.custom_id, Item.params)
                    .join(Item, Item.id == BatchRequest.item_id)
                    .where(BatchRequest.batch_id == batch_id, BatchRequest.id > after)
                    .order_by(BatchRequest.id)
                    .limit(page_rows)
                ).all()
            if not rows:
                return
            for row in rows:
                yield row.custom_id, row.params
            after = rows[-1].id

    def record_created(self, lease: Lease, remote: RemoteState, now: datetime) -> bool:
        with self._tx() as s:
            res = s.execute(
                update(Batch)
                .where(
                    _held(Batch, lease),
                    Batch.status.in_((BatchStatus.CREATING, BatchStatus.UNKNOWN)),
                )
                .values(
                    status=_local_status(remote),
                    remote_id=remote.remote_id,
                    submitted_at=now,
                    last_error=None,
                    updated_at=now,
                    **_remote_fields(remote),
                )
            )
            return _count(res) == 1

    def mark_unknown(self, lease: Lease, error: str, now: datetime) -> None:
        self._set_batch(
            lease,
            (BatchStatus.CREATING,),
            status=BatchStatus.UNKNOWN,
            last_error=error,
            updated_at=now,
        )

    def return_to_planned(
        self, lease: Lease, error: str, retry_at: datetime, now: datetime
    ) -> None:
        """The create was refused before processing (429/529/connect error): try later.

        If the job was canceled meanwhile (``cancel_job`` only flags a create in
        flight), the batch is dropped and its items canceled instead, as
        ``cancel_job`` does with planned batches: nothing is sent after a cancel.
        """
        with self._tx() as s:
            row = s.execute(
                update(Batch)
                .where(
                    _held(Batch, lease),
                    Batch.status.in_((BatchStatus.CREATING, BatchStatus.UNKNOWN)),
                )
                .values(
                    status=BatchStatus.PLANNED,
                    intent_at=None,
                    last_error=error,
                    next_attempt_at=retry_at,
                    updated_at=now,
                )
                .returning(Batch.job_id, Batch.cancel_requested)
            ).first()
            if row is None:
                return
            job_status = s.execute(select(Job.status).where(Job.id == row.job_id)).scalar_one()
            if row.cancel_requested or job_status == JobStatus.CANCELED:
                s.execute(
                    update(Item)
                    .where(Item.batch_id == lease.row_id, Item.status == ItemStatus.QUEUED)
                    .values(status=ItemStatus.CANCELED, batch_id=None, updated_at=now)
                )
                s.execute(delete(Batch).where(Batch.id == lease.row_id))

    def mark_rejected(self, lease: Lease, error_type: str, message: str, now: datetime) -> None:
        """The API refused the create for good: its items fail with the API's reason."""
        with self._tx() as s:
            res = s.execute(
                update(Batch)
                .where(_held(Batch, lease), Batch.status == BatchStatus.CREATING)
                .values(status=BatchStatus.REJECTED, last_error=message, updated_at=now)
            )
            if _count(res) == 1:
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

    def _set_batch(self, lease: Lease, statuses: Sequence[BatchStatus], **values: Any) -> bool:
        with self._tx() as s:
            res = s.execute(
                update(Batch)
                .where(_held(Batch, lease), Batch.status.in_(statuses))
                .values(**values)
            )
            return _count(res) == 1

    # -- recover -----------------------------------------------------------------

    def abandoned_creates(self, now: datetime) -> int:
        """Creates whose worker died mid-call become ``unknown`` (to be reconciled).

        A lease that expired means the worker died; a lease already released means
        an exception unwound the submit step after the POST (its ``finally``
        released the batch without recording the outcome). Either way nobody is
        working on the create any more.
        """
        with self._tx() as s:
            res = s.execute(
                update(Batch)
                .where(Batch.status == BatchStatus.CREATING, _lease_free(Batch, now))
                .values(
                    status=BatchStatus.UNKNOWN,
                    lease_owner=None,
                    lease_expires_at=None,
                    last_error="the worker stopped during the create",
                    updated_at=now,
                )
            )
            return _count(res)

    # -- poll ----------------------------------------------------------------------

    def update_remote_state(self, batch_id: int, remote: RemoteState, now: datetime) -> bool:
        """Apply what the API reports about an open batch."""
        with self._tx() as s:
            res = s.execute(
                update(Batch)
                .where(Batch.id == batch_id, Batch.status.in_(OPEN_REMOTE_STATUSES))
                .values(status=_local_status(remote), updated_at=now, **_remote_fields(remote))
            )
            return _count(res) == 1

    # -- ingest ----------------------------------------------------------------------

    def route_custom_ids(
        self, batch_id: int, custom_ids: Sequence[str]
    ) -> dict[str, tuple[int, int]]:
        """custom_id -> (item id, attempt) for the ids that belong to this batch."""
        with self._tx() as s:
            rows = s.execute(
                select(BatchRequest.custom_id, BatchRequest.item_id, BatchRequest.attempt).where(
                    BatchRequest.batch_id == batch_id, BatchRequest.custom_id.in_(custom_ids)
                )
            ).all()
            return {r.custom_id: (int(r.item_id), int(r.attempt)) for r in rows}

    def upsert_results(
        self, lease: Lease, rows: Sequence[dict[str, Any]], quarantine: Sequence[dict[str, Any]]
    ) -> bool:
        """Store a chunk of result rows (idempotent). False if the lease was lost."""
        with self._tx() as s:
            if not s.execute(select(Batch.id).where(_held(Batch, lease))).first():
                return False
            if rows:
                stmt = self._insert(Result).on_conflict_do_nothing(
                    index_elements=["batch_id", "custom_id"]
                )
                s.execute(stmt, list(rows))
            if quarantine:
                stmt = self._insert(Quarantine).on_conflict_do_nothing(
                    index_elements=["batch_id", "line_no"]
                )
                s.execute(stmt, list(quarantine))
            return True

    def count_results(self, batch_id: int) -> int:
        with self._tx() as s:
            return int(
                s.execute(
                    select(func.count(func.distinct(Result.custom_id))).where(
                        Result.batch_id == batch_id
                    )
                ).scalar_one()
            )

    def request_refs(
        self, batch_id: int, after_id: int, limit: int
    ) -> list[tuple[int, RequestRef]]:
        """A page of a batch's requests joined with their results (keyset on request id)."""
        with self._tx() as s:
            rows = s.execute(
                select(
                    BatchRequest.id,
                    BatchRequest.item_id,
                    BatchRequest.attempt,
                    BatchRequest.custom_id,
                    Result.id.label("result_id"),
                    Result.result_type,
                    Result.error_type,
                    Result.error_message,
                )
                .outerjoin(
                    Result,
                    and_(
                        Result.batch_id == BatchRequest.batch_id,
                        Result.custom_id == BatchRequest.custom_id,
                    ),
                )
                .where(BatchRequest.batch_id == batch_id, BatchRequest.id > after_id)
                .order_by(BatchRequest.id)
                .limit(limit)
            ).all()
            return [
                (
                    int(r.id),
                    RequestRef(
                        int(r.item_id),
                        int(r.attempt),
                        r.custom_id,
                        r.result_id,
                        r.result_type,
                        r.error_type,
                        r.error_message,
                    ),
                )
                for r in rows
            ]

    def resolve_items(self, lease: Lease, resolutions: Sequence[Resolution], now: datetime) -> bool:
        """Apply outcomes to items still queued in this batch. False if the lease was lost."""
        with self._tx() as s:
            if not s.execute(select(Batch.id).where(_held(Batch, lease))).first():
                return False
            if resolutions:
                s.connection().execute(
                    _ITEMS.update()
                    .where(
                        _ITEMS.c.id == bindparam("item"),
                        _ITEMS.c.batch_id == lease.row_id,
                        _ITEMS.c.status == ItemStatus.QUEUED,
                    )
                    .values(
                        status=bindparam("new_status"),
                        final_result_id=bindparam("result"),
                        batch_id=bindparam("new_batch"),
                        error_type=bindparam("etype"),
                        error_message=bindparam("emsg"),
                        updated_at=now,
                    ),
                    [_resolution_params(r, lease.row_id) for r in resolutions],
                )
            return True

    def finish_batch(
        self, lease: Lease, status: BatchStatus, now: datetime, note: str | None = None
    ) -> bool:
        """Ended -> ingested (or unavailable), releasing the lease."""
        return self._set_batch(
            lease,
            (BatchStatus.ENDED,),
            status=status,
            ingested_at=now,
            last_error=note,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )

    def defer_ingest(self, lease: Lease, error: str, retry_at: datetime, now: datetime) -> None:
        self._set_batch(
            lease,
            (BatchStatus.ENDED,),
            ingest_attempts=Batch.ingest_attempts + 1,
            last_error=error,
            next_attempt_at=retry_at,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )

    def job_canceled(self, job_id: int) -> bool:
        with self._tx() as s:
            status = s.execute(select(Job.status).where(Job.id == job_id)).scalar_one()
            return bool(status == JobStatus.CANCELED)

    def job_of_batch(self, batch_id: int) -> JobRecord:
        with self._tx() as s:
            job = s.execute(
                select(Job).join(Batch, Batch.job_id == Job.id).where(Batch.id == batch_id)
            ).scalar_one()
            return _job_record(job)

    # -- reports -----------------------------------------------------------------------

    def job_report(self, job_id: int) -> JobReport:
        with self._tx() as s:
            job = _job_record(s.get_one(Job, job_id))
            items = dict(
                s.execute(
                    select(Item.status, func.count())
                    .where(Item.job_id == job_id)
                    .group_by(Item.status)
                ).all()
            )
            batches = dict(
                s.execute(
                    select(Batch.status, func.count())
                    .where(Batch.job_id == job_id)
                    .group_by(Batch.status)
                ).all()
            )
            results = dict(
                s.execute(
                    select(Result.result_type, func.count())
                    .join(Batch, Batch.id == Result.batch_id)
                    .where(Batch.job_id == job_id)
                    .group_by(Result.result_type)
                ).all()
            )
            cost, tin, tout = s.execute(
                select(
                    func.coalesce(func.sum(Result.cost_usd), 0.0),
                    func.coalesce(func.sum(Result.input_tokens), 0),
                    func.coalesce(func.sum(Result.output_tokens), 0),
                )
                .join(Batch, Batch.id == Result.batch_id)
                .where(Batch.job_id == job_id)
            ).one()
            retried = s.execute(
                select(func.count()).where(Item.job_id == job_id, Item.attempts > 1)
            ).scalar_one()
            quarantined = s.execute(
                select(func.count())
                .select_from(Quarantine)
                .join(Batch, Batch.id == Quarantine.batch_id)
                .where(Batch.job_id == job_id)
            ).scalar_one()
            return JobReport(
                job=job,
                items={str(k): int(v) for k, v in items.items()},
                batches={str(k): int(v) for k, v in batches.items()},
                results={str(k): int(v) for k, v in results.items()},
                retried_items=int(retried),
                cost_usd=float(cost or 0.0),
                input_tokens=int(tin or 0),
                output_tokens=int(tout or 0),
                quarantined=int(quarantined),
            )

    def final_results(self, job_id: int, page_rows: int = 1000) -> Iterator[dict[str, Any]]:
        """Rows of the ``final_results`` view for a job, streamed in ordinal order."""
        after = -1
        while True:
            with self._tx() as s:
                rows = (
                    s.execute(
                        text(
                            "SELECT * FROM final_results WHERE job_id = :job AND ordinal > :after "
                            "ORDER BY ordinal LIMIT :n"
                        ),
                        {"job": job_id, "after": after, "n": page_rows},
                    )
                    .mappings()
                    .all()
                )
            if not rows:
                return
            for row in rows:
                yield dict(row)
            after = int(rows[-1]["ordinal"])


_PENDING = aliased(Item, name="pending")
_ITEMS: Table = Item.__table__  # type: ignore[assignment]


class _LostRace(Exception):
    """Another worker changed the rows first; the transaction is rolled back."""


def _resolution_params(r: Resolution, batch_id: int) -> dict[str, Any]:
    # An item going back to pending leaves the batch; a terminal one keeps it for reference.
    return {
        "item": r.item_id,
        "new_status": r.status,
        "result": r.result_id,
        "new_batch": None if r.status == ItemStatus.PENDING else batch_id,
        "etype": r.error_type,
        "emsg": r.error_message,
    }


def _count(result: Any) -> int:
    """Rows matched by an UPDATE/DELETE (a CursorResult; typed loosely by SQLAlchemy)."""
    return int(result.rowcount)


def _lease_free(model: Any, now: datetime) -> Any:
    return or_(model.lease_expires_at.is_(None), model.lease_expires_at < now)


def _held(model: Any, lease: Lease) -> Any:
    return and_(
        model.id == lease.row_id,
        model.lease_owner == lease.owner,
        model.lease_version == lease.version,
    )


def _check_duplicate_keys(s: Session, job_id: int, chunk: list[ItemLike], where: str) -> None:
    seen: dict[str, int] = {}
    for item in chunk:
        if item.key in seen:
            raise SpecError(
                f"duplicate key {item.key!r} (first seen on line {seen[item.key]})",
                location=f"{where}: input line {item.line}",
            )
        seen[item.key] = item.line
    clash = s.execute(
        select(Item.key).where(Item.job_id == job_id, Item.key.in_(list(seen))).limit(1)
    ).scalar_one_or_none()
    if clash is not None:
        raise SpecError(
            f"duplicate key {clash!r} (already used by an earlier row)",
            location=f"{where}: input line {seen[clash]}",
        )


def _item_row(job_id: int, item: ItemLike, now: datetime) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "ordinal": item.ordinal,
        "key": item.key,
        "params": item.params_json.decode(),
        "params_hash": item.params_hash,
        "status": ItemStatus.PENDING,
        "attempts": 0,
        "updated_at": now,
    }


def _new_job_fields(new: NewJob) -> dict[str, Any]:
    return {
        "name": new.name,
        "content_hash": new.content_hash,
        "spec_path": new.spec_path,
        "spec": new.spec,
        "max_attempts": new.max_attempts,
        "max_requests": new.max_requests,
        "max_bytes": new.max_bytes,
        "use_cache": new.use_cache,
        "budget_usd": new.budget_usd,
        "schedule": new.schedule,
        "api_version": new.api_version,
    }


def _local_status(remote: RemoteState) -> BatchStatus:
    if remote.processing_status == "ended":
        return BatchStatus.ENDED
    if remote.processing_status == "canceling":
        return BatchStatus.CANCELING
    return BatchStatus.IN_PROGRESS


def _remote_fields(remote: RemoteState) -> dict[str, Any]:
    return {
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


def _job_record(row: Job) -> JobRecord:
    return JobRecord(
        id=row.id,
        name=row.name,
        status=JobStatus(row.status),
        content_hash=row.content_hash,
        spec_path=row.spec_path,
        max_attempts=row.max_attempts,
        max_requests=row.max_requests,
        max_bytes=row.max_bytes,
        use_cache=row.use_cache,
        budget_usd=row.budget_usd,
        schedule=row.schedule,
        api_version=row.api_version,
        items_total=row.items_total,
        cache_hits=row.cache_hits,
        cache_saved_usd=row.cache_saved_usd,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def _batch_record(row: Batch) -> BatchRecord:
    return BatchRecord(
        id=row.id,
        job_id=row.job_id,
        status=BatchStatus(row.status),
        remote_id=row.remote_id,
        request_count=row.request_count,
        body_bytes=row.body_bytes,
        intent_at=row.intent_at,
        remote_created_at=row.remote_created_at,
        results_url=row.results_url,
        cancel_requested=row.cancel_requested,
        ingest_attempts=row.ingest_attempts,
        last_error=row.last_error,
    )
