"""Writing one leased batch's results in transactions that span several chunks, and
the thread that keeps an SQLite store's write-ahead log copied meanwhile."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, Engine, Table, Update, func, select, text, update
from sqlalchemy.orm import Session

from orchestrator.domain.states import ItemStatus, ResultType
from orchestrator.store._sql import count, held
from orchestrator.store.engine import autocheckpoint_off, passive_checkpoint
from orchestrator.store.records import Lease, QuarantineLine, ResultRow, ResultValues, Route
from orchestrator.store.tables import Batch, BatchRequest, Item, Result

if TYPE_CHECKING:
    from orchestrator.store.results import ResultOps

T = TypeVar("T")
log = logging.getLogger(__name__)
_REQUESTS = BatchRequest.__table__
_ITEMS: Table = Item.__table__  # type: ignore[assignment]
#: The longest a pass of :class:`_Resolver` may run (milliseconds) before it is stopped.
RESOLVE_PASS_TIMEOUT_MS = 30_000
#: What :class:`_Resolver` samples before its first pass: the columns its join reads.
_ANALYZE_BEFORE_PASSES = (
    "ANALYZE results (id, batch_id, item_id, result_type, output_error), "
    "items (id, batch_id, status)"
)
_RESULTS: Table = Result.__table__  # type: ignore[assignment]


class ResultWriter:
    """Stores one leased batch's results chunk after chunk, in transactions that span
    several chunks (:meth:`ResultOps.result_writer`).

    Committing each chunk of 1,000 lines costs more than inserting it: every commit
    writes again the index pages the chunk touched, and lines come in random order,
    so that is nearly all of them. Fewer commits, same guarantees: each chunk checks
    the lease before it is written, as ``upsert_results`` does, the lease is extended
    in the very transaction that commits, and a line stored twice is still stored once.

    An open transaction holds SQLite's write lock, so the caller commits before
    anything that may wait (the next bytes of the download) and makes no other store
    call meanwhile (on SQLite, it would wait for this very lock).

    The writer keeps one connection for all its transactions. On SQLite, that
    connection does not copy the write-ahead log into the database file when it
    commits (SQLite's automatic checkpoint): a thread of the writer's does, on a
    connection of its own, while the next chunks are parsed and stored
    (:class:`_Checkpointer`). Done by the committing connection, each checkpoint (the
    copy, and the two fsyncs of ``synchronous=NORMAL``) held up the download for as
    long as it took: a fifth of the time of the whole ingest of a 100,000-line file.
    The setting is the connection's own, and it gets its own back when the writer is
    closed.

    On PostgreSQL, once a transaction has committed, a thread of the writer's
    resolves the items its succeeded answers settle (``succeeded_answers_resolved``:
    what ``ResultOps.resolve_succeeded`` does for the whole batch once it is read),
    on a connection and in a transaction of its own (:class:`_Resolver`): the server
    does that work while the next lines download and are stored, not after the last
    one. On SQLite the batch is resolved in one statement at the end: there is one
    writer at a time, and lines come in random order, so each transaction's share
    touches nearly every page of ``items`` and its indexes (five shares of a
    100,000-item batch cost more than twice the one statement).
    """

    def __init__(self, store: ResultOps, lease: Lease) -> None:
        self._store = store
        self._lease = lease
        self._tx: AbstractContextManager[Session] | None = None
        self._session: Session | None = None
        self._opened_at = 0.0
        self._conn: Connection | None = None
        #: The connection's own SQLite settings, to give back (``_connection``).
        self._restore: list[str] = []
        self._checkpointer: _Checkpointer | None = None
        self._resolver: _Resolver | None = None
        #: Rows and quarantined lines written since the last commit.
        self.pending = 0
        #: PostgreSQL: results ids above this one were stored by the open transaction,
        #: or by one running beside it (None: no transaction open, or SQLite).
        self._stored_after: int | None = None

    @property
    def open_s(self) -> float:
        """Seconds the current transaction has been open (0: none is)."""
        return time.monotonic() - self._opened_at if self._tx is not None else 0.0

    def route(self, custom_ids: Sequence[str]) -> dict[str, Route]:
        """``ResultOps.route_custom_ids`` for this batch, in this writer's transaction."""
        return self._run(lambda s: route_custom_ids_in(s, self._lease.row_id, custom_ids))

    def store(
        self, rows: Sequence[ResultRow | ResultValues], quarantine: Sequence[QuarantineLine]
    ) -> bool:
        """``ResultOps.upsert_results``, uncommitted. False if the lease was lost."""
        stored = self._run(lambda s: self._store._store_chunk(s, self._lease, rows, quarantine))
        self.pending += len(rows) + len(quarantine)
        return stored

    def commit(self, now: datetime, ttl_s: float) -> bool:
        """Extend the lease to ``now + ttl_s`` and commit. False if the lease was lost:
        then nothing since the last commit is kept."""
        if self._tx is not None:
            extended = self._run(
                lambda s: count(
                    s.execute(
                        update(Batch)
                        .where(held(Batch, self._lease))
                        .values(lease_expires_at=now + timedelta(seconds=ttl_s))
                    )
                )
            )
            if not extended:
                self.abandon(None)
                return False
            stored_after = self._stored_after
            self._end(None)
            if self._checkpointer is not None:
                self._checkpointer.request()
            if stored_after is not None:
                self._resolver_thread().request(stored_after, now)
        self.pending = 0
        return True

    def finish(self) -> None:
        """Commit what is left, the lease as it is (the block ended cleanly)."""
        if self._tx is not None:
            self._end(None)
        self.pending = 0

    def abandon(self, exc: BaseException | None) -> None:
        """Roll back what was not committed (``exc``: why, if the block raised); the
        resolving of what was committed stops (``resolve_succeeded`` finishes it)."""
        if self._tx is not None:
            self._end(exc or _Abandoned())
        if self._resolver is not None:
            self._resolver.drop()
        self.pending = 0

    def close(self) -> None:
        """Stop the checkpoint thread (after the pass it is making, if any), and give
        the connection its settings back and back to the pool. Call it after
        ``finish`` or ``abandon``: what is not committed then is rolled back."""
        resolver, self._resolver = self._resolver, None
        if resolver is not None:
            resolver.close()
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.close()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._restore and not conn.invalidated:
                driver = conn.connection.driver_connection
                assert driver is not None
                for pragma in self._restore:
                    driver.execute(pragma)
        finally:
            conn.close()

    def _resolver_thread(self) -> _Resolver:
        if self._resolver is None:
            self._resolver = _Resolver(self._store, self._lease)
        return self._resolver

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = conn = self._store.engine.connect()
            if conn.dialect.name == "sqlite":
                self._tune(conn)
        return self._conn

    def _tune(self, conn: Connection) -> None:
        """SQLite: no automatic checkpoint on this connection, a checkpoint thread
        instead; the old setting is kept, to be given back. Set on the driver's
        connection, outside any transaction (a statement through ``conn`` would begin
        one, and take the write lock, for nothing)."""
        driver = conn.connection.driver_connection
        assert driver is not None
        restore = autocheckpoint_off(driver)
        if restore is None:
            return  # no log to copy (a database in memory)
        self._restore.append(restore)
        self._checkpointer = _Checkpointer(self._store.engine)

    def _run(self, work: Callable[[Session], T]) -> T:
        if self._tx is None:
            self._tx = self._transaction(self._connection())
            self._session = self._tx.__enter__()
            self._opened_at = time.monotonic()
            if self._connection().dialect.name == "postgresql":
                self._stored_after = self._run(_last_result_id)
        assert self._session is not None
        try:
            return work(self._session)
        except BaseException as exc:
            self._end(exc)
            raise

    @contextmanager
    def _transaction(self, conn: Connection) -> Iterator[Session]:
        """A session on ``conn``, in a transaction the writer enters and leaves by hand
        (so that it can outlive one call), its errors mapped exactly as for every store
        operation: inside ``_tx``, whose own session is never used (so it never takes
        a connection, and has nothing to commit)."""
        with (
            self._store._tx(),
            Session(bind=conn, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    def _end(self, exc: BaseException | None) -> None:
        tx, self._tx, self._session = self._tx, None, None
        self._stored_after = None
        if tx is not None:
            # Commits (no exception) or rolls back; raises the mapped store error.
            tx.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)


class _Worker:
    """A thread of the writer's that sleeps until it is asked for work or closed
    (``_wake``); what closing waits for is each ``_run``'s to say."""

    def __init__(self, name: str) -> None:
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        raise NotImplementedError


class _Checkpointer(_Worker):
    """Copies an SQLite store's committed write-ahead log into its database file
    (``PRAGMA wal_checkpoint(PASSIVE)``) on a thread of its own, when asked.

    A passive checkpoint waits for no one and holds up no one: it copies the frames
    every reader is done with, while the writer goes on appending to the log. The
    connection is a raw one from the engine's pool, outside any transaction (the
    engine's BEGIN IMMEDIATE would take the write lock). A checkpoint that fails stops
    the thread; the next automatic one (of any connection of the store that commits)
    does the copying then, as it always did.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__("wal-checkpoint")
        self._engine = engine
        self._wanted = False
        self._thread.start()

    def request(self) -> None:
        """Checkpoint what is committed now (once the pass under way, if any, is over)."""
        with self._wake:
            self._wanted = True
            self._wake.notify()

    def close(self) -> None:
        """Stop after the pass under way, if any."""
        super().close()

    def _run(self) -> None:
        try:
            raw = self._engine.raw_connection()
        except Exception:  # the ingest goes on; the automatic checkpoint does the copying
            log.debug("no connection for the checkpoint thread", exc_info=True)
            return
        try:
            while True:
                with self._wake:
                    self._wake.wait_for(lambda: self._wanted or self._closed)
                    if self._closed:
                        return
                    self._wanted = False
                passive_checkpoint(raw)
        except Exception:
            log.debug("checkpoint failed; the automatic checkpoint takes over", exc_info=True)
        finally:
            raw.close()


class _Resolver(_Worker):
    """Resolves, on a thread of its own, the items whose succeeded answers a
    PostgreSQL writer has committed (``succeeded_answers_resolved``), each pass in a
    transaction of its own that first checks the lease.

    A pass resolves the answers stored after the oldest watermark asked for since
    the last pass (the largest result id when the committed transactions began), so
    passes that the writer outruns merge into one. Nothing depends on it: an item it
    does not get to (it was closed first, dropped, or failed) stays queued for
    ``resolve_succeeded``, which every ingest ends with. Closing waits for the pass
    under way and makes the one asked for, if any: the ingest's last step would do
    that work anyway.
    """

    def __init__(self, store: ResultOps, lease: Lease) -> None:
        super().__init__("resolve-answers")
        self._store = store
        self._lease = lease
        #: The oldest watermark asked for and the latest time, not yet resolved.
        self._wanted: tuple[int, datetime] | None = None
        self._sampled = False
        self._thread.start()

    def request(self, stored_after: int, now: datetime) -> None:
        """Resolve the answers with a result id above ``stored_after``."""
        with self._wake:
            if self._wanted is not None:
                stored_after = min(stored_after, self._wanted[0])
            self._wanted = (stored_after, now)
            self._wake.notify()

    def drop(self) -> None:
        """Forget what was asked for and not started."""
        with self._wake:
            self._wanted = None

    def close(self) -> None:
        """Make the pass asked for, if any, then stop."""
        super().close()

    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    self._wake.wait_for(lambda: self._wanted is not None or self._closed)
                    wanted, self._wanted = self._wanted, None
                if wanted is None:
                    return  # closed, nothing asked for
                if not self._resolve(*wanted):
                    return
        except Exception as exc:  # the ingest goes on; resolve_succeeded does the rest
            log.warning(
                "batch %s: resolving its answers during the download failed (%s); the "
                "ingest resolves them once the download is over",
                self._lease.row_id,
                exc,
            )

    def _resolve(self, stored_after: int, now: datetime) -> bool:
        """One pass; False if the lease was lost.

        The join's plan must not rest on statistics older than the batch: with its
        items sampled before they were planned into it (the planner then takes them
        for a handful of rows), one pass over 100,000 items ran for ten minutes in a
        benchmark. So the first pass samples the columns the join reads (``ANALYZE``
        reads a fixed sample, a fraction of a second however large the tables), and
        no pass may read a whole table for this slice of one batch
        (``enable_seqscan``, for this transaction only). Should a plan go wrong all
        the same, the pass is stopped after ``RESOLVE_PASS_TIMEOUT_MS`` (a pass of
        20,000 answers takes about half a second) and the thread with it: the
        ingest's last step does the rest, instead of the ingest waiting for the
        pass."""
        lease = self._lease
        with self._store._tx() as s:
            if not s.execute(select(Batch.id).where(held(Batch, lease))).first():
                return False
            if not self._sampled:
                s.execute(text(_ANALYZE_BEFORE_PASSES))
                self._sampled = True
            s.execute(text("SET LOCAL enable_seqscan = off"))
            s.execute(text(f"SET LOCAL statement_timeout = {RESOLVE_PASS_TIMEOUT_MS}"))
            s.connection().execute(succeeded_answers_resolved(lease.row_id, now, stored_after))
        return True


class _Abandoned(Exception):
    """Rolls back a writer's transaction that nothing went wrong in (its lease was lost)."""


def _last_result_id(s: Session) -> int:
    return int(s.execute(select(func.coalesce(func.max(_RESULTS.c.id), 0))).scalar_one())


def succeeded_answers_resolved(
    batch_id: int, now: datetime, stored_after: int | None = None
) -> Update:
    """The statement that resolves every item still queued in this batch whose result
    is a succeeded answer with no output error (``ResultOps.resolve_succeeded``); with
    ``stored_after``, only those whose result's id is above it: the results one
    transaction stored (ids come from a sequence, so a row stored after the caller
    read the largest id has a larger one; rows of other batches that a concurrent
    transaction stored meanwhile are left out by ``batch_id``). An item this misses
    stays queued for ``resolve_succeeded``, which a batch always ends with."""
    items, results = _ITEMS, _RESULTS
    stored = () if stored_after is None else (results.c.id > stored_after,)
    return (
        items.update()
        .where(
            results.c.batch_id == batch_id,
            *stored,
            results.c.result_type == ResultType.SUCCEEDED,
            results.c.output_error.is_(None),
            items.c.id == results.c.item_id,
            items.c.batch_id == batch_id,
            items.c.status == ItemStatus.QUEUED,
        )
        .values(
            status=ItemStatus.SUCCEEDED,
            final_result_id=results.c.id,
            error_type=None,
            error_message=None,
            updated_at=now,
        )
    )


def route_custom_ids_in(s: Session, batch_id: int, custom_ids: Sequence[str]) -> dict[str, Route]:
    """Where each of these custom_ids of the batch goes: its item and attempt (one
    query; an id the batch never sent is left out)."""
    if not custom_ids:
        return {}
    rows = s.connection().execute(
        select(_REQUESTS.c.custom_id, _REQUESTS.c.item_id, _REQUESTS.c.attempt).where(
            _REQUESTS.c.batch_id == batch_id, _REQUESTS.c.custom_id.in_(custom_ids)
        )
    )
    return {custom_id: Route(item, attempt) for custom_id, item, attempt in rows.all()}
