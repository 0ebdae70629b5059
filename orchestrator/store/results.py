"""Results: routing lines to requests, storing them idempotently, resolving items."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    FromClause,
    Select,
    String,
    Table,
    and_,
    exists,
    func,
    null,
    select,
    text,
    union,
)
from sqlalchemy.orm import Session

from orchestrator.domain.planning import make_custom_id
from orchestrator.domain.states import BatchStatus, ItemStatus, ResultType
from orchestrator.store._sql import StoreBase, held
from orchestrator.store.bulk import driver_value, insert_values
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
from orchestrator.store.result_writer import (
    ResultWriter,
    route_custom_ids_in,
    succeeded_answers_resolved,
)
from orchestrator.store.tables import Batch, BatchRequest, Item, Meta, Quarantine, Result

_ITEMS: Table = Item.__table__  # type: ignore[assignment]
_RESULTS: Table = Result.__table__  # type: ignore[assignment]
_REQUESTS: Table = BatchRequest.__table__  # type: ignore[assignment]
_QUARANTINE: Table = Quarantine.__table__  # type: ignore[assignment]
_RESULT_COLUMNS = tuple(f.name for f in fields(ResultRow))
_QUARANTINE_COLUMNS = tuple(f.name for f in fields(QuarantineLine))
#: A result's key: one result per request of a batch (the unique constraint).
_RESULT_KEY = ("batch_id", "custom_id")
#: A ResultRow's values as a tuple, in ``_RESULT_COLUMNS`` order (one C call a row).
_result_values = attrgetter(*_RESULT_COLUMNS)
#: On PostgreSQL, a batch of this many requests or more refreshes the planner's
#: statistics before its items are resolved (``resolve_succeeded``).
ANALYZE_FROM_REQUESTS = 1000
#: What is sampled then: the columns the resolving statements and the finished-job
#: check filter, join and group on.
ANALYZE_BEFORE_RESOLVE = (
    "ANALYZE results (batch_id, custom_id, item_id, result_type, output_error), "
    "batch_requests (batch_id, item_id, custom_id), items (id, job_id, batch_id, status)"
)
#: Requests read a query when a batch's routes are loaded (``batch_routes``).
ROUTE_PAGE_ROWS = 10_000
#: What replaces a NUL character, which PostgreSQL text can't hold (the exact
#: content stays in ``results.content``, JSON-escaped).
NUL_REPLACEMENT = "\ufffd"


def _custom_id_of(tag: str, item: int, attempt: int) -> str | None:
    try:
        return make_custom_id(tag, item, attempt)
    except ValueError:  # not a custom_id this store could have made
        return None


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
            return route_custom_ids_in(s, batch_id, custom_ids)

    def batch_routes(self, batch_id: int) -> RouteTable | None:
        """All of this batch's routes in one pass (pages of ``ROUTE_PAGE_ROWS``), so a
        download needs no query per chunk to route its lines; None when a custom_id of
        the batch is not ``make_custom_id``'s for this store (route by query then).
        One read-only transaction (on SQLite it takes no write lock: the submit step
        reads a table while its create runs, ``steps/routes.py``)."""
        with self._read() as s:
            tag = s.execute(select(Meta.value).where(Meta.key == "store_tag")).scalar()
            if tag is None or _custom_id_of(tag, 1, 1) is None:
                return None
            conn = s.connection()
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
                page = conn.execute(query).all()
                for item, attempt, custom_id in page:
                    # make_custom_id's, for a tag it takes (checked above), ids from 1 up.
                    if custom_id != f"{tag}-{item}-{attempt}" or item < 1 or attempt < 1:
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
            try:
                yield writer
            except BaseException as exc:
                writer.abandon(exc)
                raise
            writer.finish()
        finally:
            writer.close()

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
        """Store result rows, a line stored already (or twice here) stored once: the
        first one stands. The rows are typed already and go to the driver as plain
        tuples (``bulk.insert_values``: COPY on PostgreSQL, a few statements a chunk on
        SQLite); SQLAlchemy's per-row parameter processing would cost more than the
        insert itself."""
        if rows:
            insert_values(
                s.connection(),
                _RESULTS,
                _RESULT_COLUMNS,
                [_result_params(r) for r in rows],
                skip_stored=_RESULT_KEY,
                processed=True,
            )

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
        lease was lost. A large write: its commit leaves the copy of SQLite's log to a
        thread (``_bulk_tx``).

        On PostgreSQL the download's writer has resolved most of them already, each
        transaction the answers it stored (:class:`ResultWriter`); this resolves what
        is left (answers stored otherwise, or by an older version)."""
        batch_id = lease.row_id
        with self._bulk_tx() as s:
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
                # a second; the paged reads that follow rely on it too. Only the columns
                # these statements filter and join on: the wide text of results (the
                # answers) would cost as much again to sample, for statistics nothing
                # here reads (the other columns keep theirs until autovacuum's ANALYZE).
                s.execute(text(ANALYZE_BEFORE_RESOLVE))
            s.connection().execute(succeeded_answers_resolved(batch_id, now))
            return True

    def unresolved_refs(self, batch_id: int, after: str, limit: int) -> list[RequestRef]:
        """A page of ``request_refs`` for the items still queued in this batch, keyset
        on custom_id: the (batch_id, custom_id) index's order, so each page reads only
        its own rows (``after``: the previous page's last custom_id, "" first).

        The page is chosen first, requests and items alone, and only its rows are
        joined with their results: results rows are wide (the answer twice, as text and
        as content), and joined first, every request read on the way (most are resolved
        already, by ``resolve_succeeded``) would read its result too."""
        items, requests = _ITEMS, _REQUESTS
        page = (
            select(
                requests.c.id,
                requests.c.batch_id,
                requests.c.item_id,
                requests.c.attempt,
                requests.c.custom_id,
            )
            .join(items, items.c.id == requests.c.item_id)
            .where(
                requests.c.batch_id == batch_id,
                requests.c.custom_id > after,
                items.c.batch_id == batch_id,
                items.c.status == ItemStatus.QUEUED,
            )
            .order_by(requests.c.custom_id)
            .limit(limit)
            .subquery("page")
        )
        with self._tx() as s:
            conn = s.connection()
            rows = conn.execute(_refs(conn, batch_id, page).order_by(page.c.custom_id)).all()
            return [_request_ref(r) for r in rows]

    def resolve_items(self, lease: Lease, resolutions: Sequence[Resolution], now: datetime) -> bool:
        """Apply outcomes to items still queued in this batch. False if the lease was lost."""
        with self._tx() as s:
            if not s.execute(select(Batch.id).where(held(Batch, lease))).first():
                return False
            if not resolutions:
                return True
            params = [_resolution_params(r, lease.row_id) for r in resolutions]
            dialect = self.engine.dialect
            updated_at = driver_value(dialect, _ITEMS, "updated_at", now)
            if self.dialect == "postgresql":
                # One statement for the page, its values as arrays: row by row, each
                # UPDATE is parsed, planned and run apart (pipelined, still 1,000 times).
                arrays = (list(column) for column in zip(*params, strict=True))
                s.connection().exec_driver_sql(
                    _resolve_unnest_sql(dialect), (updated_at, *arrays, lease.row_id)
                )
            else:
                # The driver's executemany of plain tuples: Core would process the
                # same time and the row's status again for every row (a quarter of the
                # time this took).
                s.connection().exec_driver_sql(
                    _resolve_sqlite_sql(dialect),
                    [(*p, updated_at, lease.row_id) for p in params],
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


def _result_params(row: ResultRow | ResultValues) -> tuple[Any, ...]:
    """The driver parameters of one result row, made storable as ``_values`` makes
    them (NUL replaced, cut to the column's length) but only checked, and copied only
    when a string needs it. (The result type goes as the enum: both drivers bind a
    ``StrEnum`` as its value, as the ORM path always did.)"""
    values: tuple[Any, ...] = row if isinstance(row, tuple) else _result_values(row)
    for value in _result_strings(values):
        if value is not None and "\x00" in value:
            return _storable_values(values)
    for i, limit in _RESULT_BOUNDED:
        value = values[i]
        if value is not None and len(value) > limit:
            return _storable_values(values)
    return values


def _storable_values(values: tuple[Any, ...]) -> tuple[Any, ...]:
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


def _refs(conn: Connection, batch_id: int, requests: FromClause = _REQUESTS) -> Select[Any]:
    """This batch's requests (``requests``: the table, or a page of it with its
    columns), each with its result and, when the batch has quarantined lines, the
    first quarantine error under its custom_id: grouped once a query, not looked up
    once a request (quarantine has no index on custom_id)."""
    results, quarantine = _RESULTS, _QUARANTINE
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


def _resolution_params(r: Resolution, batch_id: int) -> tuple[Any, ...]:
    """A resolution as the values of ``_RESOLUTION_COLUMNS``, the item's id first."""
    # An item going back to pending leaves the batch; a terminal one keeps it for reference.
    return (
        r.item_id,
        r.status.value,
        r.result_id,
        None if r.status == ItemStatus.PENDING else batch_id,
        r.error_type,
        r.error_message,
    )


#: What ``resolve_items`` sets, after the item's id (``_resolution_params``).
_RESOLUTION_COLUMNS = ("status", "final_result_id", "batch_id", "error_type", "error_message")


@cache
def _resolve_sqlite_sql(dialect: Dialect) -> str:
    """SQLite: ``resolve_items``' UPDATE of one item. Parameters: the item's id,
    ``_RESOLUTION_COLUMNS``, the time, the batch."""
    quote = dialect.identifier_preparer.quote
    sets = ", ".join(f"{quote(name)} = ?{n}" for n, name in enumerate(_RESOLUTION_COLUMNS, 2))
    after = len(_RESOLUTION_COLUMNS) + 2
    return (
        f"UPDATE {quote(_ITEMS.name)} SET {sets}, updated_at = ?{after} "
        f"WHERE id = ?1 AND batch_id = ?{after + 1} "
        f"AND status = '{ItemStatus.QUEUED.value}'"
    )


@cache
def _resolve_unnest_sql(dialect: Dialect) -> str:
    """PostgreSQL: ``resolve_items``' UPDATE of a page of items. Parameters: the time,
    an array of item ids and one of each of ``_RESOLUTION_COLUMNS``, the batch."""
    items = _ITEMS
    quote = dialect.identifier_preparer.quote

    def array(name: str) -> str:
        return f"%b::{items.c[name].type.compile(dialect=dialect)}[]"

    arrays = ", ".join(array(name) for name in ("id", *_RESOLUTION_COLUMNS))
    return (
        f"UPDATE {quote(items.name)} SET status = r.status, final_result_id = r.result, "
        "batch_id = r.batch, error_type = r.etype, error_message = r.emsg, updated_at = %b "
        f"FROM unnest({arrays}) AS r(item, status, result, batch, etype, emsg) "
        f"WHERE {quote(items.name)}.id = r.item AND {quote(items.name)}.batch_id = %b "
        f"AND {quote(items.name)}.status = '{ItemStatus.QUEUED.value}'"
    )
