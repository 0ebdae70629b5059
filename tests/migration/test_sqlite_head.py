"""A new SQLite store is made from ``orchestrator/store/sqlite_head.sql`` (the first
``run`` skips replaying the migrations): it must be exactly the store they make."""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from orchestrator.errors import ConfigError
from orchestrator.store.bootstrap import (
    HEAD_SQL,
    create_if_new,
    head_statements,
    split_statements,
    write_head_sql,
)
from orchestrator.store.engine import SCHEMA_HEAD, downgrade, make_engine, upgrade
from orchestrator.store.queries import Store

#: PRAGMAs a migration could set in the file itself, outside ``sqlite_master``.
_FILE_PRAGMAS = ("user_version", "application_id", "auto_vacuum", "page_size", "encoding")


def _schema(engine: Engine) -> dict[str, object]:
    """Everything a store's schema is, as SQLAlchemy reads it back: each table's columns
    in order (type, nullability, default), keys, constraints by name, indexes; each
    view's statement; the file's settings. (Not the statements' text: a migration that
    rebuilds a SQLite table writes its CHECK constraints in a set's order.)"""
    inspector = inspect(engine)
    described: dict[str, object] = {}
    for table in inspector.get_table_names():
        columns = [
            (c["name"], str(c["type"]), c["nullable"], c.get("default"))
            for c in inspector.get_columns(table)
        ]
        checks = {str(c["name"]): c["sqltext"] for c in inspector.get_check_constraints(table)}
        uniques = {
            str(u["name"]): u["column_names"] for u in inspector.get_unique_constraints(table)
        }
        keys = sorted(
            (str(f["name"]), f["constrained_columns"], f["referred_table"], f["options"])
            for f in inspector.get_foreign_keys(table)
        )
        indexes = sorted(
            (str(i["name"]), i["column_names"], i.get("expressions"), i["unique"])
            for i in inspector.get_indexes(table)
        )
        primary = inspector.get_pk_constraint(table)
        described[table] = (columns, primary, checks, uniques, keys, indexes)
    with engine.connect() as conn:
        for name in inspector.get_view_names():
            described[f"view {name}"] = inspector.get_view_definition(name)
        for pragma in _FILE_PRAGMAS:
            described[f"PRAGMA {pragma}"] = conn.exec_driver_sql(f"PRAGMA {pragma}").scalar()
        described["revision"] = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    return described


def _migrated(path: Path) -> dict[str, object]:
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        return _schema(engine)
    finally:
        engine.dispose()


def test_the_shipped_file_is_what_make_sqlite_head_writes(tmp_path: Path) -> None:
    """The migrations' schema, dumped (constraints and objects in name order, so the
    same whatever order a rebuilt table left them in), is the shipped file, byte for
    byte."""
    written = tmp_path / HEAD_SQL
    write_head_sql(written)
    shipped = resources.files("orchestrator.store").joinpath(HEAD_SQL).read_text("utf-8")
    assert written.read_text(encoding="utf-8") == shipped, (
        f"orchestrator/store/{HEAD_SQL} is not what the migrations make: run `make sqlite-head`"
    )


def test_a_new_store_is_the_migrated_one_and_migrates_on(tmp_path: Path) -> None:
    """The store made from the file is the migrated one (as ``_schema`` reads both);
    and the migrations take it down to nothing and back up to the same schema, as any
    future one will."""
    migrated = _migrated(tmp_path / "migrated.db")
    url = f"sqlite:///{tmp_path / 'new.db'}"

    assert create_if_new(url) == SCHEMA_HEAD
    assert create_if_new(url) is None  # made once
    engine = make_engine(url)
    try:
        assert _schema(engine) == migrated
        downgrade(engine, "base")
        with engine.connect() as conn:
            left = conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                "AND name <> 'alembic_version'"
            ).all()
        assert left == []
        upgrade(engine)
        assert _schema(engine) == migrated
    finally:
        engine.dispose()


def test_a_new_store_opens_and_keeps_its_rules(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    create_if_new(url)
    Store.open(url).close()  # at the head: not refused
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(
                "INSERT INTO jobs (id, name, content_hash, spec_path, spec, status, "
                "max_attempts, max_requests, max_bytes, use_cache, api_version) VALUES "
                "(1, 'j', 'h', 'j.toml', '{}', 'done', 3, 10, 10, 1, '2023-06-01')"
            )
            with pytest.raises(Exception, match="CHECK constraint failed"):
                conn.exec_driver_sql(  # queued without a batch
                    "INSERT INTO items (job_id, ordinal, key, params, params_hash, status) "
                    "VALUES (1, 0, 'k', '{}', 'p', 'queued')"
                )
            assert conn.execute(text("SELECT count(*) FROM final_results")).scalar_one() == 0
    finally:
        engine.dispose()


def test_two_processes_making_one_store_make_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    made: list[str | None] = []
    failed: list[BaseException] = []
    start = threading.Barrier(2)

    def make() -> None:
        start.wait()
        try:
            made.append(create_if_new(url))
        except BaseException as exc:  # reported below, with the thread's error
            failed.append(exc)

    threads = [threading.Thread(target=make) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    assert sorted(made, key=str) == sorted([SCHEMA_HEAD, None], key=str)
    Store.open(url).close()


def test_statements_are_split_whole() -> None:
    script = "-- a comment\n\nCREATE TABLE t (a TEXT DEFAULT ';');\n\nCREATE INDEX i ON t (a);\n"
    assert split_statements(script) == [
        "CREATE TABLE t (a TEXT DEFAULT ';')",
        "CREATE INDEX i ON t (a)",
    ]
    with pytest.raises(ValueError, match="ends inside a statement"):
        split_statements("CREATE TABLE t (a TEXT")
    assert (
        head_statements()[-1]
        == f"INSERT INTO alembic_version (version_num) VALUES ('{SCHEMA_HEAD}')"
    )


def test_a_file_that_is_not_a_database_is_named_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database, but somebody's notes\n" * 200)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=r"ORCHESTRATOR_DATABASE_URL: cannot open .*notes\.db"):
        create_if_new(f"sqlite:///{path}")
    assert path.read_bytes() == before
