"""Bulk inserts (``store/bulk.py``): COPY on PostgreSQL commits what Core's executemany
commits, value for value; rows already stored are skipped when asked; a failure is
raised as SQLAlchemy raises it. Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, Table, event, select
from sqlalchemy.exc import IntegrityError

from orchestrator.domain.states import ItemStatus, ResultType
from orchestrator.store.bulk import insert_rows, insert_values
from orchestrator.store.queries import Store
from orchestrator.store.tables import Item, Result
from tests.unit.store.helpers import ended_batch, make_job

ITEMS: Table = Item.__table__  # type: ignore[assignment]
RESULTS: Table = Result.__table__  # type: ignore[assignment]
#: Strings that COPY's text format must escape, or that look like its NULL marker.
AWKWARD = [
    "plain",
    "",
    "tab\there",
    "new\nline and carriage\rreturn",
    "back\\slash and \\N and \\.",
    "\\N",
    "quotes \" and '",
    "naïve café 東京 🙂",
    "comma, semicolon; pipe|",
]
#: A timestamp away from UTC with microseconds: stored as the same instant in UTC.
EAST = datetime(2026, 3, 4, 5, 6, 7, 891_234, tzinfo=timezone(timedelta(hours=5, minutes=30)))


def item_rows(job_id: int) -> list[dict[str, Any]]:
    """Item rows as ``JobOps.create_job`` builds them, with awkward values throughout."""
    rows = []
    for n, word in enumerate(AWKWARD):
        rows.append(
            {
                "job_id": job_id,
                "ordinal": n,
                "key": f"key {n}: {word}",
                "params": f'{{"prompt":"{word.encode("unicode_escape").decode()}"}}'.encode(),
                "params_hash": f"{n:064d}",
                "input": None if n % 2 else f'{{"text": "{n}"}}',
                "status": ItemStatus.PENDING if n % 3 else ItemStatus.CANCELED,
                "attempts": n,
                "updated_at": EAST + timedelta(days=n),
            }
        )
    return rows


def read_items(conn: Connection, job_id: int) -> list[tuple[Any, ...]]:
    """Every column of the job's items but the generated id and the job, by ordinal."""
    columns = [c for c in ITEMS.c if c.name not in ("id", "job_id")]
    query = select(*columns).where(ITEMS.c.job_id == job_id).order_by(ITEMS.c.ordinal)
    return [tuple(row) for row in conn.execute(query)]


def result_values(batch_id: int, refs: Sequence[Any]) -> list[tuple[Any, ...]]:
    """One result row per request (in ``RESULT_COLUMNS`` order) with awkward values."""
    rows = []
    for n, ref in enumerate(refs):
        word = AWKWARD[n % len(AWKWARD)]
        succeeded = n % 2 == 0
        rows.append(
            (
                batch_id,
                ref.item_id,
                ref.custom_id,
                ref.attempt,
                ResultType.SUCCEEDED if succeeded else ResultType.ERRORED,
                f"msg_{n}" if succeeded else None,
                "claude-test" if succeeded else None,
                word if succeeded else None,
                f'[{{"type":"text","text":"{n}"}}]' if succeeded else None,
                2_000_000_000 + n if succeeded else None,
                0.1 + 0.2 * n if succeeded else None,
                None if succeeded else "overloaded_error",
                None if succeeded else word,
            )
        )
    return rows


RESULT_COLUMNS = (
    "batch_id",
    "item_id",
    "custom_id",
    "attempt",
    "result_type",
    "message_id",
    "model",
    "text",
    "content",
    "input_tokens",
    "cost_usd",
    "error_type",
    "error_message",
)


def read_results(conn: Connection, batch_id: int) -> list[tuple[Any, ...]]:
    """The batch's results, in request order, without what differs between two batches
    (the row id, the batch, the item and its custom_id, the time it was stored)."""
    compared = [RESULTS.c[name] for name in RESULT_COLUMNS[3:]]
    query = select(*compared).where(RESULTS.c.batch_id == batch_id).order_by(RESULTS.c.item_id)
    return [tuple(row) for row in conn.execute(query)]


def core_insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """The reference: Core's executemany, as the store inserted before ``bulk``."""
    conn.execute(table.insert(), list(rows))


def test_insert_rows_commits_what_core_commits(store: Store) -> None:
    bulk_job, core_job = make_job(store, 0, name="bulk"), make_job(store, 0, name="core")
    with store.engine.begin() as conn:
        insert_rows(conn, ITEMS, item_rows(bulk_job.id))
        core_insert(conn, ITEMS, item_rows(core_job.id))

    with store.engine.connect() as conn:
        copied, reference = read_items(conn, bulk_job.id), read_items(conn, core_job.id)
    assert copied == reference
    assert len(copied) == len(AWKWARD)
    # The values themselves, not merely the same on both paths.
    names = [c.name for c in ITEMS.c if c.name not in ("id", "job_id")]
    first = dict(zip(names, copied[1], strict=True))
    assert first["key"] == f"key 1: {AWKWARD[1]}"
    assert first["params"] == item_rows(0)[1]["params"]  # bytes again (JSONText)
    assert first["status"] == ItemStatus.PENDING
    assert first["updated_at"] == EAST + timedelta(days=1)
    assert first["updated_at"].tzinfo == UTC
    assert first["cached"] is False  # the column's Python-side default, as Core gives it


def test_insert_values_commits_what_core_commits(store: Store) -> None:
    bulk_batch = ended_batch(store, make_job(store, 9, name="bulk").id)
    core_batch = ended_batch(store, make_job(store, 9, name="core").id)
    with store.engine.begin() as conn:
        insert_values(
            conn,
            RESULTS,
            RESULT_COLUMNS,
            result_values(bulk_batch.batch_id, bulk_batch.refs),
            skip_stored=("batch_id", "custom_id"),
        )
        core_rows = result_values(core_batch.batch_id, core_batch.refs)
        core_insert(
            conn, RESULTS, [dict(zip(RESULT_COLUMNS, row, strict=True)) for row in core_rows]
        )

    with store.engine.connect() as conn:
        copied = read_results(conn, bulk_batch.batch_id)
        assert copied == read_results(conn, core_batch.batch_id)
    assert len(copied) == 9
    assert copied[0] == (
        1,
        "succeeded",
        "msg_0",
        "claude-test",
        "plain",
        '[{"type":"text","text":"0"}]',
        2_000_000_000,
        0.1,
        None,
        None,
    )
    assert copied[3][-2:] == ("overloaded_error", AWKWARD[3])


def test_insert_values_skips_stored_keys_and_repeats(store: Store) -> None:
    ended = ended_batch(store, make_job(store, 3).id)
    first, second, third = result_values(ended.batch_id, ended.refs)
    again = (*second[:7], "a later answer", *second[8:])
    with store.engine.begin() as conn:
        insert_values(conn, RESULTS, RESULT_COLUMNS, [first], skip_stored=("batch_id", "custom_id"))
    with store.engine.begin() as conn:
        # ``second`` twice in one call, ``first`` stored already: the first one stands.
        insert_values(
            conn,
            RESULTS,
            RESULT_COLUMNS,
            [second, first, again, third],
            skip_stored=("batch_id", "custom_id"),
        )

    with store.engine.connect() as conn:
        stored = read_results(conn, ended.batch_id)
    assert [row[4] for row in stored] == [first[7], second[7], third[7]]


def test_skipping_stored_keys_keeps_the_rest_of_the_transaction(store: Store) -> None:
    ended = ended_batch(store, make_job(store, 4).id)
    rows = result_values(ended.batch_id, ended.refs)
    key = ("batch_id", "custom_id")
    with store.engine.begin() as conn:
        insert_values(conn, RESULTS, RESULT_COLUMNS, rows[:2], skip_stored=key)
        insert_values(conn, RESULTS, RESULT_COLUMNS, rows[1:3], skip_stored=key)  # one stored
        insert_values(conn, RESULTS, RESULT_COLUMNS, rows[3:], skip_stored=key)

    with store.engine.connect() as conn:
        assert len(read_results(conn, ended.batch_id)) == 4


def test_skipping_stored_keys_still_refuses_a_row_that_breaks_another_rule(
    store: Store,
) -> None:
    ended = ended_batch(store, make_job(store, 2).id)
    good, bad = result_values(ended.batch_id, ended.refs)
    unknown_type = (*bad[:4], "bogus", *bad[5:])
    with store.engine.begin() as conn:
        insert_values(conn, RESULTS, RESULT_COLUMNS, [good], skip_stored=("batch_id", "custom_id"))
    with store.engine.connect() as conn:
        conn.begin()
        with pytest.raises(IntegrityError):  # ck_results_result_type_known
            insert_values(
                conn,
                RESULTS,
                RESULT_COLUMNS,
                [good, unknown_type],
                skip_stored=("batch_id", "custom_id"),
            )
        conn.rollback()

    with store.engine.connect() as conn:
        assert len(read_results(conn, ended.batch_id)) == 1


def test_a_failed_copy_raises_as_sqlalchemy_does_and_keeps_nothing(store: Store) -> None:
    job = make_job(store, 0)
    rows = item_rows(job.id)
    with store.engine.connect() as conn:
        conn.begin()
        insert_rows(conn, ITEMS, rows[:3])
        with pytest.raises(IntegrityError):
            insert_rows(conn, ITEMS, rows[2:])  # rows[2]'s key again: (job_id, key) is unique
        conn.rollback()

    with store.engine.connect() as conn:
        assert read_items(conn, job.id) == []  # rolled back, the first call's rows too
    with store.engine.begin() as conn:  # the pool's connection is usable again
        insert_rows(conn, ITEMS, rows)
    with store.engine.connect() as conn:
        assert len(read_items(conn, job.id)) == len(AWKWARD)


@pytest.fixture
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL of every statement run on the store's engine while the test runs."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(store.engine, "before_cursor_execute", record)
    yield seen
    event.remove(store.engine, "before_cursor_execute", record)


def test_rows_in_any_number_reuse_a_few_sqlite_statements(
    store: Store, statements: list[str]
) -> None:
    """SQLite keeps every distinct statement it ran compiled (a 1,000-row INSERT takes
    about 2 MB): chunks of every size must not each make one of their own."""
    if store.dialect != "sqlite":
        pytest.skip("SQLite's statement cache")
    ended = ended_batch(store, make_job(store, 1000).id)
    rows = result_values(ended.batch_id, ended.refs)
    with store.engine.begin() as conn:
        for size in [1000, *range(950, 1000)]:
            insert_values(
                conn, RESULTS, RESULT_COLUMNS, rows[:size], skip_stored=("batch_id", "custom_id")
            )

    inserts = {sql for sql in statements if sql.startswith("INSERT INTO results")}
    assert len(inserts) <= 11  # one of 1,000 rows, one of each power of two below it
    with store.engine.connect() as conn:
        assert len(read_results(conn, ended.batch_id)) == 1000


def test_a_column_left_out_gets_its_python_default_as_with_core(store: Store) -> None:
    """Core gives a column missing from the rows its Python-side default, a constant or
    one computed per row; COPY would leave it to the server, so ``bulk`` adds it."""
    counter = iter(range(100, 200))

    def next_number() -> int:
        return next(counter)

    table = Table(
        "bulk_defaults",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("given", Integer),
        Column("constant", Integer, default=3),
        Column("computed", Integer, default=next_number),
        Column("server", Integer, server_default="5"),
    )
    with store.engine.begin() as conn:
        table.create(conn)
        insert_rows(conn, table, [{"given": 1}, {"given": 2}])

    with store.engine.connect() as conn:
        query = select(table.c.given, table.c.constant, table.c.computed, table.c.server)
        stored = [tuple(row) for row in conn.execute(query.order_by(table.c.given))]
    assert stored == [(1, 3, 100, 5), (2, 3, 101, 5)]


def test_rows_of_one_column_get_the_defaults_of_the_others(store: Store) -> None:
    table = Table(
        "bulk_one_column",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("given", Integer),
        Column("constant", Integer, default=3),
        Column("server", Integer, server_default="5"),
    )
    with store.engine.begin() as conn:
        table.create(conn)
        insert_rows(conn, table, [{"given": 1}, {"given": 2}])  # COPY on PostgreSQL

    with store.engine.connect() as conn:
        query = select(table.c.given, table.c.constant, table.c.server)
        stored = [tuple(row) for row in conn.execute(query.order_by(table.c.given))]
    assert stored == [(1, 3, 5), (2, 3, 5)]
