"""First run: a new SQLite store is created at the head revision by the command that
needs it; every other store (an older revision, any PostgreSQL database) is only
ever migrated by ``orchestrator db upgrade``, on purpose.

A new SQLite store is made from ``sqlite_head.sql``: the statements the migrations
leave in ``sqlite_master`` at ``SCHEMA_HEAD`` and the version row, run in one
transaction (0.015 s, where importing Alembic and replaying the migrations took
0.44 s of a first ``run``), as Rails loads ``structure.sql`` instead of replaying
its migrations. The store is the one the migrations make, column order and
constraint names included: ``tests/migration/test_sqlite_head.py`` holds the file
to them, and ``make sqlite-head`` writes it again after a new migration.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DatabaseError

from orchestrator.errors import ConfigError
from orchestrator.store.engine import SCHEMA_HEAD, make_engine, safe_url

#: The schema of a new SQLite store at ``SCHEMA_HEAD`` (package data beside this module).
HEAD_SQL = "sqlite_head.sql"
_HEADER = (
    "-- A new SQLite job store at revision {revision}: the schema the migrations make.\n"
    "-- Written by `make sqlite-head` after a new migration; do not edit by hand.\n"
)


def create_if_new(url: str) -> str | None:
    """Create the store when ``url`` is a SQLite file that does not exist yet or holds
    no tables. Returns the revision it was created at, or None when nothing was done."""
    engine = make_engine(url)
    try:
        if engine.dialect.name != "sqlite":
            return None
        try:
            if inspect(engine).get_table_names():
                return None
        except DatabaseError as exc:
            raise ConfigError(
                f"ORCHESTRATOR_DATABASE_URL: cannot open {safe_url(engine)} as a SQLite "
                f"database ({exc.orig}); check the path"
            ) from None
        # BEGIN IMMEDIATE (see engine.py): a second process making the same file
        # waits here, then finds the tables made and leaves them be.
        with engine.begin() as conn:
            if inspect(conn).get_table_names():
                return None
            for statement in head_statements():
                conn.exec_driver_sql(statement)
        return SCHEMA_HEAD
    finally:
        engine.dispose()


def head_statements() -> list[str]:
    """The statements of ``sqlite_head.sql``, in order."""
    source = resources.files("orchestrator.store").joinpath(HEAD_SQL)
    return split_statements(source.read_text(encoding="utf-8"))


def split_statements(script: str) -> list[str]:
    """``script``'s statements, each whole (SQLite's own test of a complete statement),
    without ``--`` comment lines between them."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if not pending and (not line.strip() or line.startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip().removesuffix(";"))
            pending = ""
    if pending.strip():
        raise ValueError(f"{HEAD_SQL} ends inside a statement: {pending.strip()[:80]!r}")
    return statements


def schema_script(conn: Connection) -> str:
    """A SQLite store's schema as ``sqlite_head.sql`` holds it: every table, index,
    view and trigger as ``sqlite_master`` has its statement, and the rows of the
    version table. Tables come first, then indexes, views and triggers, each kind by
    name, and a table's constraints by name: a migration that rebuilds a table writes
    them in no set order, and the file should change only when the schema does."""
    kinds = "CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3 END"
    made = conn.execute(
        text(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL "
            f"AND name NOT LIKE 'sqlite_%' ORDER BY {kinds}, name"
        )
    ).scalars()
    versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    revision = versions[0] if len(versions) == 1 else "?"
    lines = [_HEADER.format(revision=revision)]
    lines += [f"{_constraints_sorted(sql)};\n" for sql in made]
    lines += [f"INSERT INTO alembic_version (version_num) VALUES ('{v}');\n" for v in versions]
    return "\n".join(lines)


def _constraints_sorted(sql: str) -> str:
    """A CREATE TABLE statement (as SQLAlchemy writes one: a clause a line, table
    constraints last, each ``CONSTRAINT <name>``) with its constraints sorted by name."""
    lines = sql.split("\n")
    constraints = [n for n, line in enumerate(lines) if line.startswith("\tCONSTRAINT ")]
    if not sql.startswith("CREATE TABLE") or not constraints:
        return sql
    first, last = constraints[0], constraints[-1]
    if constraints != list(range(first, last + 1)):
        return sql
    clauses = sorted(line.rstrip().removesuffix(",") for line in lines[first : last + 1])
    lines[first : last + 1] = [c + ", " for c in clauses[:-1]] + clauses[-1:]
    return "\n".join(lines)


def write_head_sql(target: Path) -> None:
    """Migrate an empty SQLite file to the head and write its schema to ``target``."""
    import tempfile

    from orchestrator.store.engine import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'head.db'}")
        try:
            upgrade(engine)
            with engine.connect() as conn:
                script = schema_script(conn)
        finally:
            engine.dispose()
    target.write_text(script, encoding="utf-8")


if __name__ == "__main__":  # make sqlite-head
    write_head_sql(Path(__file__).with_name(HEAD_SQL))
