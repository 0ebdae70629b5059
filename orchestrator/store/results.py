"""Results: routing lines to requests, storing them idempotently, resolving items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import String, Table, and_, bindparam, func, select, union

from orchestrator.domain.states import BatchStatus, ItemStatus, ResultType
from orchestrator.store._sql import StoreBase, held
from orchestrator.store.records import (
    Lease,
    QuarantineLine,
    RequestRef,
    Resolution,
    ResultRow,
    Route,
)
from orchestrator.store.tables import Batch, BatchRequest, Item, Quarantine, Result

_ITEMS: Table = Item.__table__  # type: ignore[assignment]
_RESULT_COLUMNS = tuple(f.name for f in fields(ResultRow))
_QUARANTINE_COLUMNS = tuple(f.name for f in fields(QuarantineLine))
#: What replaces a NUL character, which PostgreSQL text can't hold (the exact
#: content stays in ``results.content``, JSON-escaped).
NUL_REPLACEMENT = "\ufffd"


def _text_limits(table: Table) -> dict[str, int | None]:
    """String columns of ``table`` with their length limit (None: unbounded TEXT)."""
    return {
        column.name: getattr(column.type, "length", None)
        for column in table.columns
        if isinstance(column.type, String)
    }


_RESULT_LIMITS = _text_limits(Result.__table__)  # type: ignore[arg-type]
_QUARANTINE_LIMITS = _text_limits(Quarantine.__table__)  # type: ignore[arg-type]


class ResultOps(StoreBase):
    def route_custom_ids(self, batch_id: int, custom_ids: Sequence[str]) -> dict[str, Route]:
        """custom_id -> (item, attempt) for the ids that belong to this batch."""
        with self._tx() as s:
            rows = s.execute(
                select(BatchRequest.custom_id, BatchRequest.item_id, BatchRequest.attempt).where(
                    BatchRequest.batch_id == batch_id, BatchRequest.custom_id.in_(custom_ids)
                )
            ).all()
            return {r.custom_id: Route(int(r.item_id), int(r.attempt)) for r in rows}

    def upsert_results(
        self, lease: Lease, rows: Sequence[ResultRow], quarantine: Sequence[QuarantineLine]
    ) -> bool:
        """Store a chunk of result rows (idempotent). False if the lease was lost."""
        with self._tx() as s:
            if not s.execute(select(Batch.id).where(held(Batch, lease))).first():
                return False
            if rows:
                stmt = self._insert(Result).on_conflict_do_nothing(
                    index_elements=["batch_id", "custom_id"]
                )
                s.execute(stmt, [_values(r, _RESULT_COLUMNS, _RESULT_LIMITS) for r in rows])
            if quarantine:
                stmt = self._insert(Quarantine).on_conflict_do_nothing(
                    index_elements=["batch_id", "line_no"]
                )
                s.execute(
                    stmt, [_values(q, _QUARANTINE_COLUMNS, _QUARANTINE_LIMITS) for q in quarantine]
                )
            return True

    def store_duplicate_results(self, rows: Sequence[ResultRow]) -> None:
        """Results of a duplicate that proved ours, kept beside the adopted batch's (a
        request's first stored result wins; the rest is only counted as paid)."""
        if rows:
            with self._tx() as s:
                stmt = self._insert(Result).on_conflict_do_nothing(
                    index_elements=["batch_id", "custom_id"]
                )
                s.execute(stmt, [_values(r, _RESULT_COLUMNS, _RESULT_LIMITS) for r in rows])

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
                    Result.output_error,
                    select(func.min(Quarantine.error))
                    .where(
                        Quarantine.batch_id == BatchRequest.batch_id,
                        Quarantine.custom_id == BatchRequest.custom_id,
                    )
                    .correlate(BatchRequest)
                    .scalar_subquery()
                    .label("quarantined"),
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
            return [(int(r.id), _request_ref(r)) for r in rows]

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


def _values(record: Any, columns: tuple[str, ...], limits: dict[str, int | None]) -> dict[str, Any]:
    """The row of ``record``, each string made storable on every backend: NUL replaced,
    cut to its column's length (a model name or stop reason longer than the schema
    allows is stored cut, never refused)."""
    values = {column: getattr(record, column) for column in columns}
    for column, limit in limits.items():
        value = values.get(column)
        if isinstance(value, str):
            value = value.replace("\x00", NUL_REPLACEMENT)
            values[column] = value if limit is None else value[:limit]
    return values


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
