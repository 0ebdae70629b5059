"""What every part of the store shares: transactions, dialect-aware inserts,
lease predicates and the row -> record converters.

Conventions (procrastinate's ``JobManager``):

* each operation is one short transaction and returns values from ``records.py``;
* every state change is a conditional UPDATE (``WHERE id = :id AND status IN
  (...)``); zero rows means another worker got there first, and the caller
  moves on;
* work on a claimed row carries its :class:`Lease`; a write whose lease was
  taken over matches zero rows and the holder must stop (fencing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.domain.output import DEFAULT_TOOL_NAME, Output, OutputMode
from orchestrator.domain.states import BatchStatus, JobStatus
from orchestrator.errors import StoreDataError, StoreUnavailableError
from orchestrator.store.engine import (
    READ_ONLY_OPTION,
    autocheckpoint_off,
    checkpoint_in_background,
    safe_url,
)
from orchestrator.store.records import BatchRecord, JobRecord, Lease
from orchestrator.store.tables import Batch, Job


class StoreBase:
    """An engine, and short transactions on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._tag: str | None = None

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
        except DataError as exc:
            raise StoreDataError(f"job store {safe_url(self.engine)} refused: {exc.orig}") from exc

    @contextmanager
    def _bulk_tx(self) -> Iterator[Session]:
        """``_tx`` for one large write (a job and all its items, a batch's answers
        resolved). On SQLite in WAL mode
        its commit leaves the write-ahead log as it is: the automatic checkpoint,
        which copies the log into the database file when a commit makes it long, is
        off for this transaction's connection (and back on after), and a thread
        copies the log right after the commit instead (``checkpoint_in_background``).
        Done by the commit, the copy held up ``run`` for about 0.3 s a 100,000 items,
        before anything was sent."""
        if self.dialect != "sqlite":
            with self._tx() as session:
                yield session
            return
        with self.engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            restore = autocheckpoint_off(driver)
            try:
                # ``_tx`` maps the errors; its own session is never used (no connection).
                with self._tx(), Session(bind=conn, expire_on_commit=False) as session:
                    with session.begin():
                        yield session
            finally:
                if restore is not None and not conn.invalidated:
                    driver.execute(restore)
        if restore is not None:
            checkpoint_in_background(self.engine)

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A transaction for reads only (writing in it is a bug): on SQLite it begins
        deferred, so it holds no write lock and waits for none (WAL: it reads a
        snapshot while a writer commits); on PostgreSQL it is any transaction."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{READ_ONLY_OPTION: True})
                with conn.begin(), Session(bind=conn) as session:
                    yield session
        except OperationalError as exc:
            raise StoreUnavailableError(
                f"job store {safe_url(self.engine)} failed: {exc.orig}"
            ) from exc

    def _insert(self, table: Any) -> Any:
        """An INSERT that supports ``on_conflict_do_nothing`` on this backend."""
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table)

    def _set_batch(self, lease: Lease, statuses: Iterable[BatchStatus], **values: Any) -> bool:
        """A fenced, conditional UPDATE of one leased batch; False if nothing matched."""
        with self._tx() as s:
            res = s.execute(
                update(Batch)
                .where(held(Batch, lease), Batch.status.in_(list(statuses)))
                .values(**values)
            )
            return count(res) == 1


def lock_active_job(s: Session, job_id: Any) -> bool:
    """Lock the job's row for this transaction; False when the job is not active.

    Every change that a cancel must not cross (planning a batch, starting or
    undoing a create, canceling) takes this lock first, so on PostgreSQL they
    run one after the other per job, as they do on SQLite (``BEGIN IMMEDIATE``).
    """
    status = s.execute(select(Job.status).where(Job.id == job_id).with_for_update()).scalar()
    return status == JobStatus.ACTIVE


class LostRace(Exception):
    """Another worker changed the rows first; the transaction is rolled back."""


def count(result: Any) -> int:
    """Rows matched by an UPDATE/DELETE (a CursorResult; typed loosely by SQLAlchemy)."""
    return int(result.rowcount)


def lease_free(model: Any, now: datetime) -> Any:
    return or_(model.lease_expires_at.is_(None), model.lease_expires_at < now)


def held(model: Any, lease: Lease) -> Any:
    """The row is still under this lease (owner and fencing version both match)."""
    return and_(
        model.id == lease.row_id,
        model.lease_owner == lease.owner,
        model.lease_version == lease.version,
    )


def job_record(row: Job) -> JobRecord:
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
        output=output_of(row),
        input_columns=tuple(row.input_columns or ()),
        view_name=row.view_name,
        betas=tuple(row.betas or ()),
    )


def output_of(row: Job) -> Output | None:
    """The job's declared output (``[output]``), None when it declared none."""
    if row.output_mode is None or row.output_schema is None:
        return None
    return Output(
        row.output_schema, OutputMode(row.output_mode), row.output_tool or DEFAULT_TOOL_NAME
    )


def batch_record(row: Batch) -> BatchRecord:
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
        adopted=row.adopted,
        proven_at=row.proven_at,
        reconcile_until=row.reconcile_until,
    )


#: The columns a batch row carries about its remote batch, besides its status: set
#: from each poll, cleared when an adopted batch is disowned.
REMOTE_BATCH_COLUMNS = (
    "processing_status",
    "remote_created_at",
    "expires_at",
    "ended_at",
    "results_url",
    "succeeded_count",
    "errored_count",
    "canceled_count",
    "expired_count",
)
