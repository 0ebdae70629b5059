"""Alembic environment: naming convention, batch mode for SQLite, timeouts on PostgreSQL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, Engine

from orchestrator.settings import DEFAULT_DATABASE_URL
from orchestrator.store.engine import make_engine
from orchestrator.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or os.environ.get(
        "ORCHESTRATOR_DATABASE_URL", DEFAULT_DATABASE_URL
    )


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite has almost no ALTER: batch mode rebuilds tables (Alembic "batch migrations").
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    owned = engine is None
    if owned:
        engine = make_engine(_url())
    assert isinstance(engine, Engine)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # Fail fast instead of queueing behind a long lock during a migration.
                connection.exec_driver_sql("SET lock_timeout = '10s'")
                connection.exec_driver_sql("SET statement_timeout = '300s'")
                connection.commit()
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
