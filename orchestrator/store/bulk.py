"""Inserting many rows in one go: COPY on PostgreSQL, an executemany on SQLite.

Both functions insert in the caller's transaction (the SQLAlchemy ``Connection`` it
got from its session) and commit exactly the rows Core's ``conn.execute(table.insert(),
rows)`` would: every value goes through its column type's bind processing first (the
``TypeDecorator``'s ``process_bind_param`` then the dialect's own), so a UTC datetime,
JSON bytes or an enum is stored as Core stores it, and a column left out gets its
Python-side scalar default as Core gives it, or else the server's default.

On PostgreSQL the rows go through psycopg 3's ``COPY ... FROM STDIN`` on the
connection's own DBAPI connection: one command a call instead of a statement a row
(psycopg's pipelined executemany still parses, plans and executes each row apart). A
psycopg error is raised as SQLAlchemy's wrapper of it (``OperationalError``,
``IntegrityError``, ...), as a statement run through SQLAlchemy raises it.

On SQLite nothing is gained by COPY's protocol: ``insert_rows`` is Core's executemany,
and ``insert_values`` hands the driver plain tuples, many rows a statement (see there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.exc import DBAPIError, IntegrityError

if TYPE_CHECKING:
    import psycopg

#: SQLite's limit on the parameters of one statement (SQLITE_MAX_VARIABLE_NUMBER,
#: 32,766 since SQLite 3.32).
SQLITE_MAX_PARAMETERS = 32_766
#: Rows an SQLite INSERT carries at most (fewer if they would exceed the parameter
#: limit). A chunk of this many rows is one statement, run in one call that lets go of
#: the GIL; row by row, the GIL is taken back after every row.
SQLITE_ROWS_PER_STATEMENT = 1000

#: PostgreSQL's SQLSTATE for a duplicate key.
UNIQUE_VIOLATION = "23505"

Processor = Callable[[Any], Any]


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows``, each a dict of column name -> value with the same keys in every
    row, as ``conn.execute(table.insert(), rows)`` does (on SQLite, exactly that)."""
    if not rows:
        return
    columns = tuple(rows[0])
    defaults = _scalar_defaults(table, columns)
    if conn.dialect.name != "postgresql" or defaults is None:
        # A default computed per row (a callable, a SQL expression) is Core's to give.
        conn.execute(table.insert(), list(rows))
        return
    constants = tuple(defaults.values())
    values = itemgetter(*columns)
    if len(columns) == 1:  # itemgetter of one key gives the value, not a tuple of it
        rows_values = [(values(r), *constants) for r in rows]
    else:
        rows_values = [values(r) + constants for r in rows]
    insert_values(conn, table, (*columns, *defaults), rows_values)


def insert_values(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    skip_stored: Sequence[str] = (),
    processed: bool = False,
) -> None:
    """Insert ``rows``, each a tuple of values in ``columns`` order (values as Core
    takes them: they go through their column types' bind processing), or with
    ``processed``, values the driver takes as they are (ints, floats, strings, None:
    what that processing would make of them): then nothing is done row by row before
    the driver (SQLite's ``Float`` alone would call a function for every row).

    ``skip_stored``: the columns of a unique constraint of ``table``. A row whose key is
    stored already, or repeats the key of an earlier row of ``rows``, is not inserted
    (the first one stands): ``INSERT ... ON CONFLICT (key) DO NOTHING``. COPY has no ON
    CONFLICT: on PostgreSQL the rows are copied in a savepoint, and inserted that way
    only if the copy met a key (see ``_copy_new``). Each call opens a subtransaction
    then: a transaction that makes more than 64 of them slows down the snapshots other
    sessions take while it is open, so a caller should make fewer calls of more rows.

    Columns left out get the server's default (Python-side defaults are not applied
    here: see :func:`insert_rows`).
    """
    if not rows:
        return
    dialect = conn.dialect
    if not processed:
        processors = _processors(dialect, table, tuple(columns))
        if any(p is not None for p in processors):
            rows = _processed(processors, rows)
    if dialect.name == "postgresql":
        if skip_stored:
            _copy_new(conn, table, columns, rows, skip_stored)
        else:
            _copy(conn, table, columns, rows)
    else:
        _sqlite_insert(conn, table, tuple(columns), rows, tuple(skip_stored))


# -- PostgreSQL ---------------------------------------------------------------------------


def _copy(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """``COPY table (columns) FROM STDIN`` of ``rows`` (text format: each value written
    by psycopg's text dumper for its Python type, NULL for None)."""
    import psycopg

    dialect = conn.dialect
    statement = f"COPY {_table_name(dialect, table)} ({_column_list(dialect, columns)}) FROM STDIN"
    dbapi = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
    try:
        with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
            write = copy.write_row
            for row in rows:
                write(row)
    except psycopg.Error as exc:
        raise _wrapped(conn, statement, exc) from exc


def _copy_new(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    key: Sequence[str],
) -> None:
    """COPY of ``rows`` in a savepoint; if a key is stored already (or repeats), the
    savepoint is rolled back and the rows go again as one INSERT ... ON CONFLICT (key)
    DO NOTHING, arrays unnested. The common case, nothing stored yet, costs two short
    statements more than the COPY; a COPY that failed has sent its rows in vain (a
    download read again from the start is the case, and it is rare)."""
    try:
        with conn.begin_nested():
            _copy(conn, table, columns, rows)
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        arrays = tuple(list(column) for column in zip(*rows, strict=True))
        conn.exec_driver_sql(
            _insert_unnest_sql(conn.dialect, table, tuple(columns), tuple(key)), arrays
        )


@lru_cache(maxsize=16)
def _insert_unnest_sql(
    dialect: Dialect, table: Table, columns: tuple[str, ...], key: tuple[str, ...]
) -> str:
    """PostgreSQL: the INSERT of rows given as one array a column, a key stored already
    (or repeated) skipped."""
    arrays = ", ".join(f"%b::{table.c[name].type.compile(dialect=dialect)}[]" for name in columns)
    return (
        f"INSERT INTO {_table_name(dialect, table)} ({_column_list(dialect, columns)}) "
        f"SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({_column_list(dialect, key)}) DO NOTHING"
    )


def _wrapped(conn: Connection, statement: str, exc: psycopg.Error) -> BaseException:
    """SQLAlchemy's wrapper of a psycopg error, as ``Connection.execute`` raises it (a
    lost connection invalidated first, so the pool does not hand it out again)."""
    import psycopg

    lost = conn.dialect.is_disconnect(cast(Any, exc), conn.connection.dbapi_connection, None)
    if lost:
        conn.invalidate(exc)
    wrapped = DBAPIError.instance(
        statement, None, exc, psycopg.Error, connection_invalidated=lost, dialect=conn.dialect
    )
    return wrapped if isinstance(wrapped, BaseException) else exc


# -- SQLite -------------------------------------------------------------------------------


def _sqlite_insert(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
    key: tuple[str, ...],
) -> None:
    """Multi-row INSERTs of plain tuples at the driver, a statement of
    ``_rows_per_statement`` rows at a time and the rest in statements of a power of
    two rows each: SQLite keeps each distinct statement it ran compiled (a 1,000-row
    one takes about 2 MB), so the sizes must be few, whatever sizes the rows come in."""
    full = _rows_per_statement(len(columns))
    start = 0
    while start < len(rows):
        left = len(rows) - start
        size = full if left >= full else 1 << (left.bit_length() - 1)
        flat = tuple(chain.from_iterable(rows[start : start + size]))
        conn.exec_driver_sql(_sqlite_insert_sql(conn.dialect, table, columns, size, key), flat)
        start += size


def _rows_per_statement(columns: int) -> int:
    return max(1, min(SQLITE_ROWS_PER_STATEMENT, SQLITE_MAX_PARAMETERS // columns))


@lru_cache(maxsize=64)
def _sqlite_insert_sql(
    dialect: Dialect, table: Table, columns: tuple[str, ...], rows: int, key: tuple[str, ...]
) -> str:
    one = f"({', '.join(['?'] * len(columns))})"
    conflict = f" ON CONFLICT ({_column_list(dialect, key)}) DO NOTHING" if key else ""
    return (
        f"INSERT INTO {_table_name(dialect, table)} ({_column_list(dialect, columns)}) "
        f"VALUES {', '.join([one] * rows)}{conflict}"
    )


# -- both ---------------------------------------------------------------------------------


def driver_value(dialect: Dialect, table: Table, column: str, value: Any) -> Any:
    """``value`` as Core hands it to the driver for ``table.column`` (its type's bind
    processing on this dialect): for a statement run at the driver, which binds the
    same value many times, processed once."""
    process = _processors(dialect, table, (column,))[0]
    return value if process is None else process(value)


@lru_cache(maxsize=64)
def _processors(
    dialect: Dialect, table: Table, columns: tuple[str, ...]
) -> tuple[Processor | None, ...]:
    """Each column's bind processing on this dialect, as Core applies it (None: the
    value goes to the driver as it is)."""
    return tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    )


def _processed(
    processors: Sequence[Processor | None], rows: Sequence[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    """``rows`` with each value through its column's processor, column by column (the
    loops are the interpreter's own, in C: only the processors are Python calls)."""
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    for i, process in enumerate(processors):
        if process is not None:
            columns[i] = list(map(process, columns[i]))
    return list(zip(*columns, strict=True))


def _scalar_defaults(table: Table, given: Sequence[str]) -> dict[str, Any] | None:
    """The Python-side defaults Core adds for the columns of ``table`` not ``given``;
    None if one of them is computed (Core's to compute, row by row)."""
    defaults: dict[str, Any] = {}
    for column in table.columns:
        default = column.default
        if column.name in given or default is None:
            continue
        if not default.is_scalar:
            return None
        defaults[column.name] = cast(Any, default).arg
    return defaults


def _table_name(dialect: Dialect, table: Table) -> str:
    return dialect.identifier_preparer.format_table(table)


def _column_list(dialect: Dialect, columns: Sequence[str]) -> str:
    quote = dialect.identifier_preparer.quote
    return ", ".join(quote(name) for name in columns)
