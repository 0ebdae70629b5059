"""First run: a new SQLite store is created at the head revision by the command that
needs it; every other store (an older revision, any PostgreSQL database) is only
ever migrated by ``orchestrator db upgrade``, on purpose."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError

from orchestrator.errors import ConfigError
from orchestrator.store.engine import head_revision, make_engine, safe_url, upgrade


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
        upgrade(engine)
        return head_revision()
    finally:
        engine.dispose()


def may_exist(url: str) -> bool:
    """False when ``url`` is a SQLite file not created yet (nothing is created here);
    True for any other store, which may hold jobs."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return True
    return bool(parsed.database) and Path(parsed.database or "").is_file()
