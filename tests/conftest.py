"""Test session set-up: a migrated SQLite template and, when possible, PostgreSQL.

Migrations run once per session per backend; every test that needs a store gets
a fresh database cloned from the migrated template (a file copy on SQLite,
``CREATE DATABASE ... TEMPLATE`` on PostgreSQL), so tests see real commits and
real locks without paying for a migration each.

PostgreSQL tests skip on a machine without the server binaries, but under
``CI=true`` they must run: a cluster that can't start fails the session.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from orchestrator.store.engine import make_engine, upgrade
from tests.support.postgres import PostgresUnavailable, throwaway_cluster

_counter = itertools.count()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Superuser URL of a PostgreSQL server for this session."""
    given = os.environ.get("ORCHESTRATOR_TEST_PG_URL")
    if given:
        yield given
        return
    try:
        with throwaway_cluster() as url:
            yield url
    except PostgresUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")


def _admin_execute(server_url: str, statement: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> str:
    name = f"orch_template_{os.getpid()}"
    _admin_execute(postgres_server, f'DROP DATABASE IF EXISTS "{name}"')
    _admin_execute(postgres_server, f'CREATE DATABASE "{name}"')
    url = make_url(postgres_server).set(database=name)
    engine = make_engine(url.render_as_string(hide_password=False))
    upgrade(engine)
    engine.dispose()
    return name


def new_postgres_database(server_url: str, template: str | None) -> str:
    """A fresh database (cloned from ``template`` when given); returns its URL."""
    name = f"orch_test_{os.getpid()}_{next(_counter)}"
    clause = f' TEMPLATE "{template}"' if template else ""
    _admin_execute(server_url, f'CREATE DATABASE "{name}"{clause}')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a fresh, migrated store on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    server = request.getfixturevalue("postgres_server")
    return new_postgres_database(server, request.getfixturevalue("postgres_template"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty (unmigrated) database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return new_postgres_database(request.getfixturevalue("postgres_server"), None)
