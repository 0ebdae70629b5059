"""Engine factory and schema-version checks for the job store.

SQLite is the default (one file, one writer at a time): WAL so readers don't
block the writer, a busy timeout so a briefly held lock waits instead of
failing, and ``BEGIN IMMEDIATE`` because pysqlite's deferred BEGIN lets two
writers read the same row and then collide (SQLAlchemy SQLite dialect docs,
"Serializable isolation"); a transaction that only reads begins deferred, so a
long read (a create's body streamed from the store) never waits behind a writer.
PostgreSQL (psycopg 3) is for several daemons on one
store; claims there use ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from orchestrator.errors import ConfigError, StoreNotAtHeadError, StoreUnavailableError
from orchestrator.resources import migrations_dir

if TYPE_CHECKING:  # Alembic is imported where a store is migrated or its scripts read:
    # 0.1 s of every command's start, and a store at the head revision needs neither.
    from alembic.config import Config

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: The execution option that marks a connection's transactions as reads only.
READ_ONLY_OPTION = "orchestrator_read_only"
#: The Alembic script directory: shipped in the package as orchestrator.migrations
#: (top-level migrations/ in the repository; see orchestrator/resources.py).
MIGRATIONS_DIR = migrations_dir()
#: The newest migration's revision: what a store must be at to be used. Checked
#: against the migration scripts by the test suite (``test_schema_head_is_the_scripts``).
SCHEMA_HEAD: Final = "0009"
#: Alembic's table of the store's revision.
_VERSION_TABLE = "alembic_version"


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; a malformed URL raises ConfigError naming the variable."""
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError as exc:
        raise ConfigError(f"ORCHESTRATOR_DATABASE_URL is not a database URL: {exc}") from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed.render_as_string(hide_password=False), **kwargs)
        return create_engine(parsed, pool_pre_ping=True, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        hint = (
            "pip install 'batch-orchestrator[postgres]'"
            if parsed.get_backend_name() == "postgresql"
            else "use sqlite:///FILE or postgresql://USER:PASS@HOST/DB"
        )
        raise ConfigError(
            f"ORCHESTRATOR_DATABASE_URL={shown}: no driver for {parsed.drivername} "
            f"is installed ({exc}); {hint}"
        ) from None
    except ArgumentError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(
            f"ORCHESTRATOR_DATABASE_URL={shown}: {first}; write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db (three or four slashes)"
        ) from None


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        in_memory = ":memory:" in url or url in ("sqlite://", "sqlite:///")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A transaction that only reads (``StoreBase._read``) begins deferred: in WAL
        # mode it reads a snapshot and neither takes nor waits for the write lock.
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def autocheckpoint_off(driver: Any) -> str | None:
    """Turn off SQLite's automatic checkpoint on this driver connection (outside any
    transaction) and return the PRAGMA that gives the old setting back; None when the
    database has no write-ahead log (in memory), and nothing was changed."""
    if str(driver.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        return None
    was = int(driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    driver.execute("PRAGMA wal_autocheckpoint = 0")
    return f"PRAGMA wal_autocheckpoint = {was}"


def passive_checkpoint(raw: Any) -> None:
    """Copy what the write-ahead log holds into the database file, on a raw (DB-API)
    connection outside any transaction: ``PRAGMA wal_checkpoint(PASSIVE)``, which
    waits for no one and holds up no one (writers go on appending to the log)."""
    cursor = raw.cursor()
    try:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        cursor.fetchall()
    finally:
        cursor.close()


def checkpoint_in_background(engine: Engine) -> threading.Thread:
    """:func:`passive_checkpoint` once, on a thread of its own, started here: for a
    large commit made with the automatic checkpoint off (``StoreBase._bulk_tx``). Not
    a daemon thread: a process that ends at once waits for the copy, as its commit
    would have. A checkpoint that fails leaves the copying to the next automatic one."""

    def copy() -> None:
        try:
            raw = engine.raw_connection()
            try:
                passive_checkpoint(raw)
            finally:
                raw.close()
        except Exception:  # the next automatic checkpoint does the copying
            log.debug("background checkpoint failed", exc_info=True)

    thread = threading.Thread(target=copy, name="wal-copy")
    thread.start()
    return thread


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic config pointing at our migrations, bound to ``engine`` when given."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.attributes["engine"] = engine
        cfg.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return cfg


def head_revision() -> str:
    """The head revision of the migration scripts (``SCHEMA_HEAD``, read from them)."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads; expected exactly one")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The store's schema revision (None for an empty database): Alembic's version
    table, read without Alembic (see ``SCHEMA_HEAD``)."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(_VERSION_TABLE):
                return None
            found = list(conn.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars())
    except OperationalError as exc:
        raise StoreUnavailableError(
            f"cannot open the job store at {safe_url(engine)}: {exc.orig}"
        ) from exc
    if len(found) > 1:  # branches: never made by this project's linear migrations
        raise StoreNotAtHeadError(
            f"the job store at {safe_url(engine)} records {len(found)} schema revisions "
            f"({', '.join(sorted(found))}); this version needs exactly one, {SCHEMA_HEAD}"
        )
    return found[0] if found else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    from alembic import command

    from orchestrator.store.views import drop_job_views, rebuild_job_views

    _quiet_alembic()
    # Per-job views sit on the tables a migration may rebuild: drop them, then remake.
    with engine.begin() as conn:
        if inspect(conn).has_table("jobs"):
            drop_job_views(conn)
    command.upgrade(alembic_config(engine), revision)
    if current_revision(engine) == head_revision():
        rebuild_job_views(engine)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _quiet_alembic()
    command.downgrade(alembic_config(engine), revision)


def _quiet_alembic() -> None:
    # Alembic narrates every step at INFO; the CLI prints its own one-line summary.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


def require_head(engine: Engine) -> None:
    """Refuse to work on a store whose schema is not at the head revision, or on a
    SQLite file that does not exist (without creating it, as connecting would)."""
    if _missing_sqlite_file(engine):
        raise StoreNotAtHeadError(
            f"there is no job store at {safe_url(engine)} (no such file): `orchestrator run` "
            "or `orchestrator submit` creates it, or run `orchestrator db upgrade`"
        )
    current, head = current_revision(engine), SCHEMA_HEAD
    if current != head:
        found = "an empty database" if current is None else f"revision {current}"
        raise StoreNotAtHeadError(
            f"the job store at {safe_url(engine)} is at {found}, this version needs {head}: "
            "run `orchestrator db upgrade`"
        )


def _missing_sqlite_file(engine: Engine) -> bool:
    """True for a SQLite URL naming a file that does not exist (relative to the
    working directory, as SQLite opens it); False for in-memory and URI databases."""
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return False
    if database.startswith("file:") or url.query.get("uri"):
        return False
    return not Path(database).exists()


def safe_url(engine: Engine) -> str:
    """The engine's URL with any password masked, for messages and logs."""
    return engine.url.render_as_string(hide_password=True)


def mask_url(url: str) -> str:
    """A database URL with its password masked, for messages and logs."""
    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable ORCHESTRATOR_DATABASE_URL>"
