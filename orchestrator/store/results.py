"""Results: routing lines to requests, storing them idempotently, resolving items."""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields
from datetime import datetime, timedelta
from functools import cache, lru_cache
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Dialect,
    Select,
    String,
    Table,
    and_,
    bindparam,
    exists,
    func,
    null,
    select,
    text,
    union,
    update,
)
from sqlalchemy.orm import Session

from orchestrator.domain.planning import make_custom_id
from orchestrator.domain.states import BatchStatus, ItemStatus, ResultType
from orchestrator.store._sql import StoreBase, count, held
from orchestrator.store.records import (
    Lease,
    QuarantineLine,
    RequestRef,
    Resolution,
    ResultRow,
    ResultValues,
    Route,
    RouteTable,
)
from orchestrator.store.tables import Batch, BatchRequest, Item, Meta, Quarantine, Result

T = TypeVar("T")
_ITEMS: Table = Item.__table__  # type: ignore[assignment]
_RESULTS: Table = Result.__table__  # type: ignore[assignment]
_REQUESTS: Table = BatchRequest.__table__  # type: ignore[assignment]
_QUARANTINE: Table = Quarantine.__table__  # type: ignore[assignment]
_RESULT_COLUMNS = tuple(f.name for f in fields(ResultRow))
_QUARANTINE_COLUMNS = tuple(f.name for f in fields(QuarantineLine))
#: A ResultRow's values as a tuple, in ``_RESULT_COLUMNS`` order (one C call a row).
_result_values = attrgetter(*_RESULT_COLUMNS)
#: On PostgreSQL, a batch of this many requests or more refreshes the planner's
#: statistics before its items are resolved (``resolve_succeeded``).
ANALYZE_FROM_REQUESTS = 1000
#: Requests read a query when a batch's routes are loaded (``batch_routes``).
ROUTE_PAGE_ROWS = 10_000
#: Result rows a SQLite INSERT statement carries (24 parameters each: SQLite allows
#: 32,766 a statement).
SQLITE_ROWS_PER_INSERT = 500
#: What replaces a NUL character, which PostgreSQL text can't hold (the exact
#: content stays in ``results.content``, JSON-escaped).
NUL_REPLACEMENT = "\ufffd"


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
    """

    def __init__(self, store: ResultOps, lease: Lease) -> None:
        self._store = store
        self._lease = lease
        self._tx: AbstractContextManager[Session] | None = None
        self._session: Session | None = None
        self._opened_at = 0.0
        #: Rows and quarantined lines written since the last commit.
        self.pending = 0

    @property
    def open_s(self) -> float:
        """Seconds the current transaction has been open (0: none is)."""
        return time.monotonic() - self._opened_at if self._tx is not None else 0.0

    def route(self, custom_ids: Sequence[str]) -> dict[str, Route]:
        """``ResultOps.route_custom_ids`` for this batch, in this writer's transaction."""
        return self._run(lambda s: _route(s, self._lease.row_id, custom_ids))

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
            self._end(None)
        self.pending = 0
        return True

    def finish(self) -> None:
        """Commit what is left, the lease as it is (the block ended cleanly)."""
        if self._tx is not None:
            self._end(None)
        self.pending = 0

    def abandon(self, exc: BaseException | None) -> None:
        """Roll back what was not committed (``exc``: why, if the block raised)."""
        if self._tx is not None:
            self._end(exc or _Abandoned())
        self.pending = 0

    def _run(self, work: Callable[[Session], T]) -> T:
        if self._tx is None:
            # ``_tx`` is entered and left by hand, so that a transaction can outlive one
            # call and errors are still mapped exactly as for every store operation.
            self._tx = self._store._tx()
            self._session = self._tx.__enter__()
            self._opened_at = time.monotonic()
        assert self._session is not None
        try:
            return work(self._session)
        except BaseException as exc:
            self._end(exc)
            raise

    def _end(self, exc: BaseException | None) -> None:
        tx, self._tx, self._session = self._tx, None, None
        if tx is not None:
            # Commits (no exception) or rolls back; raises the mapped store error.
            tx.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)


class _Abandoned(Exception):
    """Rolls back a writer's transaction that nothing went wrong in (its lease was lost)."""


def _route(s: Session, batch_id: int, custom_ids: Sequence[str]) -> dict[str, Route]:
    if not custom_ids:
        return {}
    rows = s.connection().execute(
        select(_REQUESTS.c.custom_id, _REQUESTS.c.item_id, _REQUESTS.c.attempt).where(
            _REQUESTS.c.batch_id == batch_id, _REQUESTS.c.custom_id.in_(custom_ids)
        )
    )
    return {custom_id: Route(item, attempt) for custom_id, item, attempt in rows.all()}


def _custom_id_of(tag: str, item: int, attempt: int) -> str | None:
    try:
        return make_custom_id(tag, item, attempt)
    except ValueError:  # not a custom_id this store could have made
        return None


def _mark(dialect: Dialect) -> str:
    """The driver's positional parameter marker."""
    return {"qmark": "?", "format": "%s", "pyformat": "%s"}[dialect.paramstyle]


def _text_limits(table: Table) -> dict[str, int | None]:
    """String columns of ``table`` with their length limit (None: unbounded TEXT)."""
    return {
        column.name: getattr(column.type, "length", None)
        for column in table.columns
        if isinstance(column.type, String)
    }


_RESULT_LIMITS = _text_limits(_RESULTS)
_QUARANTINE_LIMITS = _text_limits(_QUARANTINE)
#: The string columns of a result tuple, all at once (only these can hold a NUL) ...
_result_strings = itemgetter(
    *(i for i, name in enumerate(_RESULT_COLUMNS) if name in _RESULT_LIMITS)
)
#: ... and (position, length) of those with a length limit.
_RESULT_BOUNDED = tuple(
    (i, limit)
    for i, name in enumerate(_RESULT_COLUMNS)
    if (limit := _RESULT_LIMITS.get(name)) is not None
)


class ResultOps(StoreBase):
    def route_custom_ids(self, batch_id: int, custom_ids: Sequence[str]) -> dict[str, Route]:
        """custom_id -> (item, attempt) for the ids that belong to this batch."""
        with self._tx() as s:
            return _route(s, batch_id, custom_ids)

    def batch_routes(self, batch_id: int) -> RouteTable | None:
        """All of this batch's routes in one pass (pages of ``ROUTE_PAGE_ROWS``), so a
        download needs no query per chunk to route its lines; None when a custom_id of
        the batch is not ``make_custom_id``'s for this store (route by query then)."""
        with self._tx() as s:
            tag = s.execute(select(Meta.value).where(Meta.key == "store_tag")).scalar()
        if tag is None:
            return None
        items, attempts = array("q"), array("l")
        after = 0
        requests = _REQUESTS
        while True:
            query = (
                select(requests.c.item_id, requests.c.attempt, requests.c.custom_id)
                .where(requests.c.batch_id == batch_id, requests.c.item_id > after)
                .order_by(requests.c.item_id)
                .limit(ROUTE_PAGE_ROWS)
            )
            with self._tx() as s:
                page = s.connection().execute(query).all()
            for item, attempt, custom_id in page:
                if custom_id != _custom_id_of(tag, item, attempt):
                    return None
                items.append(item)
                attempts.append(attempt)
            if len(page) < ROUTE_PAGE_ROWS:
                return RouteTable(tag, items, attempts)
            after = page[-1][0]

    def upsert_results(
        self, lease: Lease, rows: Sequence[ResultRow], quarantine: Sequence[QuarantineLine]
    ) -> bool:
        """Store a chunk of result rows (idempotent). False if the lease was lost."""
        with self._tx() as s:
            return self._store_chunk(s, lease, rows, quarantine)

    @contextmanager
    def result_writer(self, lease: Lease) -> Iterator[ResultWriter]:
        """A :class:`ResultWriter` for the leased batch; what it has not committed when
        the block ends is committed, or rolled back if the block raised."""
        writer = ResultWriter(self, lease)
        try:
            yield writer
        except BaseException as exc:
            writer.abandon(exc)
            raise
        writer.finish()

    def _store_chunk(
        self,
        s: Session,
        lease: Lease,
        rows: Sequence[ResultRow | ResultValues],
        quarantine: Sequence[QuarantineLine],
    ) -> bool:
        if not s.execute(select(Batch.id).where(held(Batch, lease))).first():
            return False
        self._insert_results(s, rows)
        if quarantine:
            stmt = self._insert(_QUARANTINE).on_conflict_do_nothing(
                index_elements=["batch_id", "line_no"]
            )
            s.connection().execute(
                stmt, [_values(q, _QUARANTINE_COLUMNS, _QUARANTINE_LIMITS) for q in quarantine]
            )
        return True

    def _insert_results(self, s: Session, rows: Sequence[ResultRow | ResultValues]) -> None:
        """INSERT ... ON CONFLICT DO NOTHING of result rows, handed to the driver as
        plain tuples: the rows are typed already, and SQLAlchemy's per-row parameter
        processing would cost more than the insert itself."""
        if not rows:
            return
        params = [_result_params(r) for r in rows]
        dialect = self.engine.dialect
        if dialect.name == "postgresql":
            # One statement a chunk, a column per array: a row-by-row INSERT pays the
            # server's per-statement work 1,000 times over.
            columns = [list(column) for column in zip(*params, strict=True)]
            s.connection().exec_driver_sql(_results_unnest_sql(dialect), tuple(columns))
        else:
            # A few hundred rows a statement: SQLite runs each statement in one call
            # that lets go of the GIL, where row by row it is taken back after each row.
            conn = s.connection()
            for start in range(0, len(params), SQLITE_ROWS_PER_INSERT):
                part = params[start : start + SQLITE_ROWS_PER_INSERT]
                flat = [value for row in part for value in row]
                conn.exec_driver_sql(_results_insert_sql(dialect, len(part)), tuple(flat))

    def store_duplicate_results(self, rows: Sequence[ResultRow]) -> None:
        """Results of a duplicate that proved ours, kept beside the adopted batch's (a
        request's first stored result wins; the rest is only counted as paid)."""
        if rows:
            with self._tx() as s:
                self._insert_results(s, rows)

    def count_results(self, batch_id: int) -> int:
        """Distinct custom_ids stored for this batch."""
        with self._tx() as s:
            return int(
                s.execute(
                    select(func.count(func.distinct(Result.custom_id))).where(
                        Result.batch_id == batch_id
                    )
                ).scalar_one()
            )

    def count_answered(self, batch_id: int) -> int:
        """Requests of this batch the results file answered: stored, or quarantined under
        the request's custom_id (a line was there, just unreadable)."""
        with self._tx() as s:
            stored = select(Result.custom_id).where(Result.batch_id == batch_id)
            unreadable = (
                select(Quarantine.custom_id)
                .join(
                    BatchRequest,
                    and_(
                        BatchRequest.batch_id == Quarantine.batch_id,
                        BatchRequest.custom_id == Quarantine.custom_id,
                    ),
                )
                .where(Quarantine.batch_id == batch_id)
            )
            answered = union(stored, unreadable).subquery()
            return int(s.execute(select(func.count()).select_from(answered)).scalar_one())

    def request_refs(
        self, batch_id: int, after_id: int, limit: int
    ) -> list[tuple[int, RequestRef]]:
        """A page of a batch's requests joined with their results (keyset on request id)."""
        with self._tx() as s:
            conn = s.connection()
            rows = conn.execute(
                _refs(conn, batch_id)
                .where(_REQUESTS.c.id > after_id)
                .order_by(_REQUESTS.c.id)
                .limit(limit)
            ).all()
            return [(int(r.id), _request_ref(r)) for r in rows]

    def resolve_succeeded(self, lease: Lease, now: datetime) -> bool:
        """Resolve in one statement every item still queued in this batch whose result
        is a succeeded answer with no output error: what ``resolve`` decides for such a
        result on any attempt, canceled job or not (succeeded, its result final, no
        error). Most of a batch is this, and Python need not see it. False if the
        lease was lost."""
        batch_id = lease.row_id
        results = _RESULTS
        with self._tx() as s:
            requests = s.execute(
                select(Batch.request_count).where(held(Batch, lease))
            ).scalar_one_or_none()
            if requests is None:
                return False
            if self.dialect == "postgresql" and requests >= ANALYZE_FROM_REQUESTS:
                # The planner's statistics know nothing yet of the rows just stored (nor,
                # often, of the requests planned a minute ago): it would take this
                # batch's results for a handful and look them all up again for every
                # item (quadratic: minutes for 100,000). Sampling costs a fraction of
                # a second; the paged reads that follow rely on it too.
                s.execute(text("ANALYZE results, batch_requests, items"))
            s.connection().execute(
                _ITEMS.update()
                .where(
                    results.c.batch_id == batch_id,
                    results.c.result_type == ResultType.SUCCEEDED,
                    results.c.output_error.is_(None),
                    _ITEMS.c.id == results.c.item_id,
                    _ITEMS.c.batch_id == batch_id,
                    _ITEMS.c.status == ItemStatus.QUEUED,
                )
                .values(
                    status=ItemStatus.SUCCEEDED,
                    final_result_id=results.c.id,
                    error_type=None,
                    error_message=None,
                    updated_at=now,
                )
            )
            return True

    def unresolved_refs(self, batch_id: int, after: str, limit: int) -> list[RequestRef]:
        """A page of ``request_refs`` for the items still queued in this batch, keyset
        on custom_id: the (batch_id, custom_id) index's order, so each page reads only
        its own rows (``after``: the previous page's last custom_id, "" first)."""
        items = _ITEMS
        with self._tx() as s:
            conn = s.connection()
            rows = conn.execute(
                _refs(conn, batch_id)
                .join(items, items.c.id == _REQUESTS.c.item_id)
                .where(
                    _REQUESTS.c.custom_id > after,
                    items.c.batch_id == batch_id,
                    items.c.status == ItemStatus.QUEUED,
                )
                .order_by(_REQUESTS.c.custom_id)
                .limit(limit)
            ).all()
            return [_request_ref(r) for r in rows]

    def resolve_items(self, lease: Lease, resolutions: Sequence[Resolution], now: datetime) -> bool:
        """Apply outcomes to items still queued in this batch. False if the lease was lost."""
        with self._tx() as s:
            if not s.execute(select(Batch.id).where(held(Batch, lease))).first():
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

    def defer_ingest(self, lease: Lease, error: str, retry_at: datetime, now: datetime) -> bool:
        """Download again at ``retry_at``; the lease is released meanwhile."""
        return self._set_batch(
            lease,
            (BatchStatus.ENDED,),
            ingest_attempts=Batch.ingest_attempts + 1,
            last_error=error,
            next_attempt_at=retry_at,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )


@lru_cache(maxsize=64)
def _results_insert_sql(dialect: Dialect, rows: int) -> str:
    """The INSERT of ``rows`` result rows (``_RESULT_COLUMNS``, positional) in the
    driver's own parameter style; a conflicting line is the same line read again."""
    mark = _mark(dialect)
    quote = dialect.identifier_preparer.quote
    one = f"({', '.join([mark] * len(_RESULT_COLUMNS))})"
    return (
        f"INSERT INTO {quote(_RESULTS.name)} ({', '.join(quote(c) for c in _RESULT_COLUMNS)}) "
        f"VALUES {', '.join([one] * rows)} "
        "ON CONFLICT (batch_id, custom_id) DO NOTHING"
    )


@cache
def _results_unnest_sql(dialect: Dialect) -> str:
    """PostgreSQL: the INSERT of a chunk of result rows given as one array a column."""
    quote = dialect.identifier_preparer.quote
    arrays = ", ".join(
        f"%b::{_RESULTS.c[name].type.compile(dialect=dialect)}[]" for name in _RESULT_COLUMNS
    )
    return (
        f"INSERT INTO {quote(_RESULTS.name)} ({', '.join(quote(c) for c in _RESULT_COLUMNS)}) "
        f"SELECT * FROM unnest({arrays}) "
        "ON CONFLICT (batch_id, custom_id) DO NOTHING"
    )


def _result_params(row: ResultRow | ResultValues) -> tuple[Any, ...]:
    """The driver parameters of one result row, made storable as ``_values`` makes
    them (NUL replaced, cut to the column's length) but checked in a few C-level
    calls, and copied only when a string needs it. (The result type goes as the enum:
    both drivers bind a ``StrEnum`` as its value, as the ORM path always did.)"""
    values: tuple[Any, ...] = row if isinstance(row, tuple) else _result_values(row)
    if "\x00" not in "".join(filter(None, _result_strings(values))) and not any(
        values[i] is not None and len(values[i]) > limit for i, limit in _RESULT_BOUNDED
    ):
        return values
    return tuple(
        _storable(value, _RESULT_LIMITS[name]) if isinstance(value, str) else value
        for name, value in zip(_RESULT_COLUMNS, values, strict=True)
    )


def _storable(value: str, limit: int | None) -> str:
    value = value.replace("\x00", NUL_REPLACEMENT)
    return value if limit is None else value[:limit]


def _values(record: Any, columns: tuple[str, ...], limits: dict[str, int | None]) -> dict[str, Any]:
    """The row of ``record``, each string made storable on every backend: NUL replaced,
    cut to its column's length (a model name or stop reason longer than the schema
    allows is stored cut, never refused)."""
    values = {column: getattr(record, column) for column in columns}
    for column, limit in limits.items():
        value = values.get(column)
        if isinstance(value, str):
            values[column] = _storable(value, limit)
    return values


def _refs(conn: Connection, batch_id: int) -> Select[Any]:
    """This batch's requests, each with its result and, when the batch has quarantined
    lines, the first quarantine error under its custom_id: grouped once a query, not
    looked up once a request (quarantine has no index on custom_id)."""
    requests, results, quarantine = _REQUESTS, _RESULTS, _QUARANTINE
    joined = requests.outerjoin(
        results,
        and_(
            results.c.batch_id == requests.c.batch_id, results.c.custom_id == requests.c.custom_id
        ),
    )
    error: Any = null()
    if conn.execute(select(exists().where(quarantine.c.batch_id == batch_id))).scalar():
        first = (
            select(quarantine.c.custom_id, func.min(quarantine.c.error).label("error"))
            .where(quarantine.c.batch_id == batch_id, quarantine.c.custom_id.is_not(None))
            .group_by(quarantine.c.custom_id)
            .subquery()
        )
        joined = joined.outerjoin(first, first.c.custom_id == requests.c.custom_id)
        error = first.c.error
    return (
        select(
            requests.c.id,
            requests.c.item_id,
            requests.c.attempt,
            requests.c.custom_id,
            results.c.id.label("result_id"),
            results.c.result_type,
            results.c.error_type,
            results.c.error_message,
            results.c.output_error,
            error.label("quarantined"),
        )
        .select_from(joined)
        .where(requests.c.batch_id == batch_id)
    )


def _request_ref(row: Any) -> RequestRef:
    return RequestRef(
        item_id=int(row.item_id),
        attempt=int(row.attempt),
        custom_id=row.custom_id,
        result_id=row.result_id,
        result_type=None if row.result_type is None else ResultType(row.result_type),
        error_type=row.error_type,
        error_message=row.error_message,
        quarantined=row.quarantined,
        output_error=row.output_error,
    )


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
