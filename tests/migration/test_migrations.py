"""Migrations: one head, upgrade from empty, down/up round trip, models == DDL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from orchestrator.errors import StoreNotAtHeadError
from orchestrator.store.engine import (
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
        upgrade(engine)
        require_head(engine)
    finally:
        engine.dispose()
