"""Per-job views: one row per item with its input columns and typed answers.

Each job gets a view named ``job_<name>``: the name lowercased, every character
other than a-z, 0-9 and ``_`` replaced by ``_`` (``review-sentiment`` ->
``job_review_sentiment``); when another job already has that view, ``_<job id>``
is appended. Its columns follow ``domain.output.columns``: the item's identity,
one typed column per top-level output property, the input row's columns, and
the final result's fields (``thinking`` and ``tool_input`` excepted: they are in
``results.content`` and the exports). Input columns whose names hold a quote,
a backslash or a control character are left out of the view (they stay in
``items.input`` and in the exports).

Property columns are typed from the schema: on SQLite ``REAL``, ``INTEGER``,
``TEXT`` and 0/1 for booleans, nested values as JSON text; on PostgreSQL
``double precision``, ``bigint``, ``text``, ``boolean`` and ``jsonb``.

Views are not part of the migrated schema: they are made when a job is recorded
and remade by ``orchestrator db upgrade`` (:func:`rebuild_job_views`).
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, Engine, inspect, select, text
from sqlalchemy.orm import Session

from orchestrator.domain.output import UNSAFE_NAME, Column, ColumnType, Source, columns
from orchestrator.store.records import JobRecord
from orchestrator.store.tables import Job

#: Result fields the view leaves out (they live in ``results.content``).
_NOT_IN_VIEW = frozenset({"thinking", "tool_input"})
_RESULT_SQL = {
    "result_type": "r.result_type",
    "text": "r.text",
    "output_error": "r.output_error",
    "stop_reason": "r.stop_reason",
    "model": "r.model",
    "input_tokens": "r.input_tokens",
    "output_tokens": "r.output_tokens",
    "cache_creation_input_tokens": "r.cache_creation_input_tokens",
    "cache_read_input_tokens": "r.cache_read_input_tokens",
    "cost_usd": "CASE WHEN i.cached THEN 0.0 ELSE r.cost_usd END",
    "cached": "i.cached",
    "error_type": "COALESCE(r.error_type, i.error_type)",
    "error_message": "COALESCE(r.error_message, i.error_message)",
}
_IDENTITY_SQL = {
    "key": "i.key",
    "custom_id": "i.custom_id",
    "attempts": "i.attempts",
    "status": "i.status",
}


def view_name_for(job_name: str) -> str:
    return "job_" + re.sub(r"[^a-z0-9_]", "_", job_name.lower())


def free_view_name(s: Session, job_name: str, job_id: int) -> str:
    """The job's view name; suffixed with its id when another job has it already."""
    name = view_name_for(job_name)
    taken = s.execute(select(Job.id).where(Job.view_name == name, Job.id != job_id)).first()
    return f"{name}_{job_id}" if taken else name


def create_job_view(conn: Connection, job: JobRecord) -> None:
    """(Re)create the job's view."""
    if job.view_name is None:
        return
    dialect = conn.dialect.name
    selected = [
        f"{_expr(c, dialect, job.name)} AS {_quote(c.name)}"
        for c in columns(job.output, job.input_columns)
        if _in_view(c)
    ]
    conn.execute(text(f"DROP VIEW IF EXISTS {_quote(job.view_name)}"))
    conn.execute(
        text(
            f"CREATE VIEW {_quote(job.view_name)} AS SELECT {', '.join(selected)} "
            "FROM items AS i LEFT JOIN results AS r ON r.id = i.final_result_id "
            f"WHERE i.job_id = {int(job.id)} ORDER BY i.ordinal"
        )
    )


def drop_job_views(conn: Connection) -> None:
    """Drop every job's view (before a migration changes the tables under them)."""
    if "view_name" not in {c["name"] for c in inspect(conn).get_columns("jobs")}:
        return
    for (name,) in conn.execute(text("SELECT view_name FROM jobs WHERE view_name IS NOT NULL")):
        conn.execute(text(f"DROP VIEW IF EXISTS {_quote(name)}"))


def rebuild_job_views(engine: Engine) -> int:
    """Create every job's view again (after a migration); returns how many."""
    from orchestrator.store._sql import job_record

    with Session(engine) as s, s.begin():
        jobs = [job_record(j) for j in s.execute(select(Job).order_by(Job.id)).scalars()]
        for job in jobs:
            create_job_view(s.connection(), job)
        return sum(1 for job in jobs if job.view_name)


def _in_view(column: Column) -> bool:
    if column.source is Source.RESULT:
        return column.field not in _NOT_IN_VIEW
    return not UNSAFE_NAME.search(column.field)


def _expr(column: Column, dialect: str, job_name: str) -> str:
    if column.source is Source.IDENTITY:
        return _IDENTITY_SQL.get(column.field) or f"'{job_name}'"  # job_name: [A-Za-z0-9._-]
    if column.source is Source.RESULT:
        return _RESULT_SQL[column.field]
    source = "r.output" if column.source is Source.PROPERTY else "i.input"
    kind = column.type if column.source is Source.PROPERTY else ColumnType.STRING
    if dialect == "postgresql":
        return _pg(source, column.field, kind)
    return _sqlite(source, column.field, kind)


def _sqlite(source: str, field: str, kind: ColumnType) -> str:
    value = f"json_extract({source}, '$.\"{field}\"')"
    if kind is ColumnType.DOUBLE:
        return f"CAST({value} AS REAL)"
    if kind is ColumnType.INT64:
        return f"CAST({value} AS INTEGER)"
    return value


def _pg(source: str, field: str, kind: ColumnType) -> str:
    doc = f"CAST({source} AS jsonb)"
    if kind is ColumnType.JSON:
        return f"({doc} -> '{field}')"
    value = f"({doc} ->> '{field}')"
    cast = {
        ColumnType.DOUBLE: "double precision",
        ColumnType.INT64: "bigint",
        ColumnType.BOOL: "boolean",
    }.get(kind)
    return f"CAST({value} AS {cast})" if cast else value


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


__all__ = ["create_job_view", "drop_job_views", "free_view_name", "rebuild_job_views"]
