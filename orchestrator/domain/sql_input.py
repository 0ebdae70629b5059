"""Rows from a database: ``input = "sql:SELECT ..."`` or ``"table:NAME"`` with ``input_url``.

The user's own database is read, never the job store: this is the one place outside
``orchestrator/store/`` that uses SQLAlchemy (a per-file ignore in pyproject.toml), and
it only reads. The query runs in a transaction that is rolled back, with a server-side cursor
(``stream_results``/``yield_per``), so a large table streams in flat memory.

``input_url`` may hold ``${VAR}`` placeholders, filled from the environment when the
rows are read: the spec (and the store, which keeps the spec) holds ``${DB_PASSWORD}``,
never the password. Every message shows the URL with its password masked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    create_engine,
    literal_column,
    select,
    table,
)
from sqlalchemy.engine import URL, Connection, CursorResult, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from orchestrator.domain.datasets import Row, plain_row
from orchestrator.errors import SpecError

SQL_PREFIX = "sql:"
TABLE_PREFIX = "table:"
#: ``table:reviews`` or ``table:schema.reviews``: plain identifiers, quoted by the dialect.
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: ``host:${DB_PORT}/``: a placeholder for the port, filled before the URL is parsed.
_PORT_VAR = re.compile(r":\$\{([A-Za-z_][A-Za-z0-9_]*)\}(?=[/?]|$)")
#: ``scheme://user:password@`` in a URL that did not parse: the password is masked.
_USERINFO = re.compile(r"(://[^:/@]*:)[^@/]*@")
#: Rows fetched per round trip from the server-side cursor.
FETCH_ROWS = 1000
#: Drivers this package has an extra for (``pip install 'batch-orchestrator[postgres]'``).
_EXTRAS = {"postgresql": "postgres"}


def is_database_input(value: str) -> bool:
    """Is ``input`` a query (``sql:...``) or a table (``table:...``) rather than a file?"""
    return value.startswith((SQL_PREFIX, TABLE_PREFIX))


def check_database_input(value: str) -> str:
    """Check the shape of a ``sql:``/``table:`` input; raise ValueError saying what to write."""
    if value.startswith(SQL_PREFIX):
        if not value[len(SQL_PREFIX) :].strip():
            raise ValueError('give the query after "sql:", e.g. "sql:SELECT id, text FROM reviews"')
    elif not TABLE_NAME.match(value[len(TABLE_PREFIX) :]):
        raise ValueError(
            'give a table name after "table:" (letters, digits, _ and $, optionally '
            'schema.table), e.g. "table:reviews"; for anything else write "sql:SELECT ..."'
        )
    return value


def input_label(value: str, width: int = 60) -> str:
    """How messages name a database input: the ``input`` text on one line, shortened."""
    text = " ".join(value.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def check_url_syntax(raw: str) -> str:
    """Check that ``input_url`` looks like a database URL (placeholders left in)."""
    if _ENV_VAR.fullmatch(raw.strip()):
        return raw  # the whole URL comes from the environment
    try:
        make_url(_ENV_VAR.sub("0", raw))  # a placeholder may stand for the port
    except (ArgumentError, ValueError):
        raise ValueError(
            f"not a database URL: {mask_raw_url(raw)}; write one like "
            '"sqlite:///reviews.db" or "postgresql://user:${DB_PASSWORD}@host/db"'
        ) from None
    return raw


def mask_raw_url(raw: str) -> str:
    """``raw`` with any ``user:password@`` password masked (for a URL that did not parse)."""
    return _USERINFO.sub(r"\1***@", raw)


def resolve_url(raw: str, base_dir: Path, where: str) -> URL:
    """``input_url`` ready to connect: ``${VAR}`` filled from the environment, a relative
    SQLite file made relative to ``base_dir`` (the spec's directory) and checked to exist.
    """
    whole = _ENV_VAR.fullmatch(raw.strip())
    try:
        if whole:
            url = make_url(_env(whole[1], where))
        else:
            # The port first (a placeholder there does not parse), then the parts of the
            # parsed URL: a filled-in password may hold '@' or '/'.
            url = make_url(_PORT_VAR.sub(lambda found: f":{_env(found[1], where)}", raw))
            url = url.set(
                username=_fill(url.username, where),
                password=_fill(_password(url), where),
                host=_fill(url.host, where),
                database=_fill(url.database, where),
                query={key: _fill_query(value, where) for key, value in url.query.items()},
            )
    except (ArgumentError, ValueError):
        message = f"input_url: not a database URL: {mask_raw_url(raw)}"
        raise SpecError(message, location=where) from None
    if url.get_backend_name() == "sqlite":
        database = url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            file = (base_dir / database).resolve()
            if not file.is_file():
                message = f"input_url: SQLite database file not found: {file}"
                raise SpecError(message, location=where)
            url = url.set(database=str(file))
    return url


def _password(url: URL) -> str | None:
    password = url.password
    return None if password is None else str(password)


def _env(name: str, where: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise SpecError(
            f"input_url: environment variable {name} is not set (used as ${{{name}}})",
            location=where,
        )
    return value


def _fill(part: str | None, where: str) -> str | None:
    if part is None:
        return None
    return _ENV_VAR.sub(lambda found: _env(found[1], where), part)


def _fill_query(value: str | tuple[str, ...], where: str) -> str | tuple[str, ...]:
    if isinstance(value, str):
        return _fill(value, where) or ""
    return tuple(_fill(item, where) or "" for item in value)


def masked(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def database_rows(
    value: str, raw_url: str, base_dir: Path, where: str
) -> Iterator[tuple[int, Row]]:
    """(row number from 1, row) per row of the query or table, streamed.

    ``where`` names the spec for errors that are not about one row (connecting, the
    query itself). Values are made plain (:func:`~orchestrator.domain.datasets.plain_row`).
    """
    url = resolve_url(raw_url, base_dir, where)
    shown = masked(url)
    try:
        engine = create_engine(url, poolclass=NullPool)
    except NoSuchModuleError:
        kind = url.get_backend_name()
        message = f"input_url: SQLAlchemy has no database kind {kind!r} ({shown})"
        raise SpecError(message, location=where) from None
    except ImportError as exc:
        raise SpecError(_missing_driver(url, exc), location=where) from None
    try:
        with engine.connect() as conn:  # never committed: closing rolls back
            result = _execute(conn, value)
            names = list(result.keys())
            _check_columns(names, where)
            for number, record in enumerate(result, start=1):
                yield number, plain_row(dict(zip(names, record, strict=True)))
    except ImportError as exc:
        raise SpecError(_missing_driver(url, exc), location=where) from None
    except SQLAlchemyError as exc:
        problem = _first_line(exc, url)
        message = f"input: cannot read the rows from {shown}: {problem}"
        raise SpecError(message, location=where) from None
    finally:
        engine.dispose()


def _execute(conn: Connection, value: str) -> CursorResult[Any]:
    streaming = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS)
    if value.startswith(SQL_PREFIX):
        # Sent as written (no bind-parameter parsing: a ':x' in a string literal stays).
        return streaming.exec_driver_sql(value[len(SQL_PREFIX) :].strip())
    schema, _, name = value[len(TABLE_PREFIX) :].rpartition(".")
    source = table(name, schema=schema or None)
    return streaming.execute(select(literal_column("*")).select_from(source))


def _check_columns(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SpecError(
                f"input: the query returns column {name!r} twice; name them apart "
                "(SELECT a.id AS a_id, ...)",
                location=where,
            )
        seen.add(name)


def _first_line(exc: SQLAlchemyError, url: URL) -> str:
    """The driver's own message (its first line), never showing the password."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    password = _password(url)
    return line.replace(password, "***") if password else line


def _missing_driver(url: URL, exc: ImportError) -> str:
    kind = url.get_backend_name()
    extra = _EXTRAS.get(kind)
    install = (
        f"pip install 'batch-orchestrator[{extra}]'"
        if extra
        else f"pip install {exc.name or 'the driver'}"
    )
    return f"input_url: the {kind} driver is not installed ({exc.name}): {install}"
