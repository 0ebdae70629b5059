"""Migrations: one head, upgrade from empty, down/up round trip, models == DDL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from orchestrator.errors import StoreNotAtHeadError
from orchestrator.store.engine import (
    SCHEMA_HEAD,
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    require_head,
    upgrade,
)
from orchestrator.store.tables import Base

TABLES = {"jobs", "items", "batches", "batch_requests", "results", "quarantine"}


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1


def test_schema_head_is_the_scripts() -> None:
    """A new migration moves ``SCHEMA_HEAD`` with it: stores are checked against the
    constant (without importing Alembic), and a store migrated to the new head must
    not be refused as behind, nor an old one let through."""
    assert head_revision() == SCHEMA_HEAD


def test_current_revision_is_alembics(empty_store_url: str) -> None:
    engine = make_engine(empty_store_url)
    try:
        for revision in ("0003", "head"):
            upgrade(engine, revision)
            with engine.connect() as conn:
                alembic_reads = MigrationContext.configure(conn).get_current_revision()
            assert current_revision(engine) == alembic_reads
        assert current_revision(engine) == SCHEMA_HEAD
    finally:
        engine.dispose()


def test_a_store_with_two_revisions_is_refused(empty_store_url: str) -> None:
    engine = make_engine(empty_store_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0005')"))
        with pytest.raises(StoreNotAtHeadError, match="records 2 schema revisions"):
            require_head(engine)
    finally:
        engine.dispose()


def test_upgrade_from_empty_creates_tables_and_view(empty_store_url: str) -> None:
    engine = make_engine(empty_store_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) >= TABLES
        assert "final_results" in inspector.get_view_names()
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM final_results")).scalar_one() == 0
    finally:
        engine.dispose()


def test_downgrade_upgrade_round_trip(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        downgrade(engine, "base")
        assert not set(inspect(engine).get_table_names()) & TABLES
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_models_match_migrated_schema(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_postgres_index_methods_match_the_models(store_url: str) -> None:
    """compare_metadata does not compare index methods: a B-tree where the model says
    hash (``items.params_hash``, migration 0008) would pass it unnoticed."""
    if not store_url.startswith("postgresql"):
        pytest.skip("index methods are a PostgreSQL matter; SQLite has B-trees only")
    wanted: dict[str, str] = {
        str(index.name): str(index.dialect_options["postgresql"].get("using") or "btree")
        for table in Base.metadata.tables.values()
        for index in table.indexes
    }
    assert wanted["ix_items_params_hash"] == "hash"
    engine = make_engine(store_url)
    try:
        with engine.connect() as conn:
            found: dict[str, str] = {
                str(name): str(method)
                for name, method in conn.execute(
                    text(
                        "SELECT c.relname, am.amname FROM pg_index i "
                        "JOIN pg_class c ON c.oid = i.indexrelid "
                        "JOIN pg_am am ON am.oid = c.relam "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = current_schema()"
                    )
                )
            }
    finally:
        engine.dispose()
    assert {name: found.get(name) for name in wanted} == wanted


def test_store_not_at_head_is_refused_with_the_fix(empty_store_url: str) -> None:
    engine = make_engine(empty_store_url)
    try:
        with pytest.raises(StoreNotAtHeadError, match="orchestrator db upgrade"):
            require_head(engine)
        upgrade(engine, "0008")
        with pytest.raises(StoreNotAtHeadError, match="at revision 0008, this version needs"):
            require_head(engine)
        upgrade(engine)
        require_head(engine)
    finally:
        engine.dispose()


def _item_keys(engine: Engine) -> dict[str, set[str]]:
    """The tables each of ``batch_requests`` and ``results`` has a foreign key into."""
    inspector = inspect(engine)
    return {
        table: {str(fk["referred_table"]) for fk in inspector.get_foreign_keys(table)}
        for table in ("batch_requests", "results")
    }


def _answered_job(conn: Connection) -> None:
    """One job whose one item succeeded, written as a store at 0008 holds it."""
    conn.execute(
        text(
            "INSERT INTO jobs (id, name, content_hash, spec_path, spec, status, max_attempts, "
            "max_requests, max_bytes, use_cache, api_version) VALUES (1, 'j', 'h', 'j.toml', "
            "'{}', 'done', 3, 100000, 256000000, :yes, '2023-06-01')"
        ),
        {"yes": True},
    )
    conn.execute(
        text(
            "INSERT INTO batches (id, job_id, status, remote_id, request_count, body_bytes) "
            "VALUES (1, 1, 'ingested', 'msgbatch_1', 1, 10)"
        )
    )
    conn.execute(
        text(
            "INSERT INTO items (id, job_id, ordinal, key, params, params_hash, status, attempts, "
            "custom_id, batch_id, final_result_id) VALUES (1, 1, 0, 'k', '{}', 'p', 'succeeded', "
            "1, 't-1-1', 1, 1)"
        )
    )
    conn.execute(
        text(
            "INSERT INTO batch_requests (batch_id, item_id, attempt, custom_id) "
            "VALUES (1, 1, 1, 't-1-1')"
        )
    )
    conn.execute(
        text(
            "INSERT INTO results (id, batch_id, item_id, custom_id, attempt, result_type, "
            "message_id, text) VALUES (1, 1, 1, 't-1-1', 1, 'succeeded', 'msg_1', 'an answer')"
        )
    )
    # A view of the user's own on the two tables 0009 rebuilds on SQLite.
    conn.execute(
        text(
            "CREATE VIEW answers AS SELECT q.custom_id, r.text FROM batch_requests AS q "
            "JOIN results AS r ON r.batch_id = q.batch_id AND r.custom_id = q.custom_id"
        )
    )


def test_0009_keeps_every_row_and_drops_only_the_item_keys(empty_store_url: str) -> None:
    """SQLite rebuilds both tables to drop a key: nothing stored may be lost on the way,
    nor the views on them (ours, and a user's), nor their other rules; the way back
    brings the keys back, and the way forward again drops them."""
    engine = make_engine(empty_store_url)
    try:
        upgrade(engine, "0008")
        assert _item_keys(engine) == {
            "batch_requests": {"batches", "items"},
            "results": {"batches", "items"},
        }
        with engine.begin() as conn:
            _answered_job(conn)

        upgrade(engine)
        assert _item_keys(engine) == {"batch_requests": {"batches"}, "results": {"batches"}}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM batch_requests")).scalar_one() == 1
            answers = conn.execute(text("SELECT key, status, text FROM final_results")).all()
            assert [tuple(row) for row in answers] == [("k", "succeeded", "an answer")]
            mine = conn.execute(text("SELECT custom_id, text FROM answers")).all()
            assert [tuple(row) for row in mine] == [("t-1-1", "an answer")]
        with engine.connect() as conn, pytest.raises(IntegrityError):  # its rules stand
            conn.execute(
                text(
                    "INSERT INTO results (batch_id, item_id, custom_id, attempt, result_type) "
                    "VALUES (1, 1, 't-1-2', 2, 'bogus')"
                )
            )

        downgrade(engine, "0008")
        assert _item_keys(engine) == {
            "batch_requests": {"batches", "items"},
            "results": {"batches", "items"},
        }
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM results")).scalar_one() == 1
            assert conn.execute(text("SELECT count(*) FROM final_results")).scalar_one() == 1
            assert conn.execute(text("SELECT count(*) FROM answers")).scalar_one() == 1

        upgrade(engine)  # the keys the way back made carry the names 0009 drops
        assert _item_keys(engine) == {"batch_requests": {"batches"}, "results": {"batches"}}
    finally:
        engine.dispose()
