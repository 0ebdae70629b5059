"""Inputs users have: Parquet / Arrow files and SQL databases as template-form datasets.

Each reader streams ``(line, row)``; values keep their types; every error names the
file (or the query) and the row, or the spec and the field.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
import tracemalloc
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from orchestrator.domain.datasets import plain_value
from orchestrator.domain.spec import ItemDraft, JobSpec, iter_items, load_spec
from orchestrator.domain.sql_input import mask_raw_url, resolve_url
from orchestrator.errors import SpecError
from tests.unit.domain.conftest import WriteSpec

REQUEST = '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 16\nprompt = "Review: {text}"\n'


def spec_for(source: str, extra: str = "") -> str:
    return f'name = "t"\ninput = "{source}"\nkey = "id"\n{extra}' + REQUEST


def items(path: Path) -> list[ItemDraft]:
    return list(iter_items(load_spec(path)))


def error_of(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        list(iter_items(load_spec(path)))
    return str(caught.value)


def contents(drafts: list[ItemDraft]) -> list[str]:
    return [str(item.params["messages"][0]["content"]) for item in drafts]


# --- Parquet and Arrow -------------------------------------------------------------------

TABLE = pa.table(
    {
        "id": ["a", "b", "c"],
        "text": ["great", "bad", "so-so"],
        "stars": [5, 1, None],
        "score": [0.5, 0.25, 1.0],
        "ok": [True, False, None],
        "tags": [["x", "y"], [], None],
        "meta": [{"n": 1}, {"n": 2}, None],
        "at": [dt.datetime(2024, 1, 2, 3, 4, 5), None, None],
        "day": [dt.date(2024, 1, 2), None, None],
        "price": pa.array([Decimal("1.50"), Decimal("2"), None], pa.decimal128(5, 2)),
    }
)
FIRST_ROW = {
    "id": "a",
    "text": "great",
    "stars": 5,
    "score": 0.5,
    "ok": True,
    "tags": ["x", "y"],
    "meta": {"n": 1},
    "at": "2024-01-02T03:04:05",
    "day": "2024-01-02",
    "price": 1.5,
}


def write_arrow(path: Path, table: pa.Table = TABLE) -> None:
    suffix = path.suffix
    if suffix == ".parquet":
        pq.write_table(table, path, row_group_size=2)
    elif suffix == ".feather":
        feather.write_feather(table, path)
    else:  # .arrow as the IPC stream format
        with pa.OSFile(str(path), "wb") as out, pa.ipc.new_stream(out, table.schema) as writer:
            writer.write_table(table, max_chunksize=2)


@pytest.mark.parametrize("name", ["rows.parquet", "rows.feather", "rows.arrow"])
def test_arrow_files_give_one_item_per_row_with_typed_values(
    write_spec: WriteSpec, tmp_path: Path, name: str
) -> None:
    write_arrow(tmp_path / name)
    spec = spec_for(name).replace("{text}", "{text} {stars} {tags} {at} {ok}")
    drafts = items(write_spec(spec, files={}))
    assert [(i.ordinal, i.key, i.line) for i in drafts] == [(0, "a", 1), (1, "b", 2), (2, "c", 3)]
    assert orjson.loads(drafts[0].input_json or b"") == FIRST_ROW
    assert drafts[0].columns == tuple(FIRST_ROW)
    assert contents(drafts) == [
        'Review: great 5 ["x","y"] 2024-01-02T03:04:05 True',
        "Review: bad 1 []  False",  # null renders as the empty string
        "Review: so-so    ",
    ]


def test_plain_values() -> None:
    assert plain_value(Decimal("2.000")) == 2
    assert plain_value(Decimal("2.5")) == 2.5
    assert plain_value(b"\x00\x01") == "AAE="
    assert plain_value(dt.time(1, 2)) == "01:02:00"
    assert plain_value((1, Decimal("3"))) == [1, 3]
    assert plain_value({1: dt.date(2020, 1, 1)}) == {"1": "2020-01-01"}
    assert plain_value(dt.timedelta(seconds=1)) == "0:00:01"


def test_a_bad_arrow_row_names_the_file_and_row_number(
    write_spec: WriteSpec, tmp_path: Path
) -> None:
    table = pa.table({"id": ["a", None, "c"], "text": ["x", "y", "z"]})
    write_arrow(tmp_path / "rows.parquet", table)
    path = write_spec(spec_for("rows.parquet"), files={})
    assert error_of(path) == f"{tmp_path / 'rows.parquet'}:2: row has no field 'id' (the item key)"


def test_an_unreadable_parquet_file_is_named(write_spec: WriteSpec, tmp_path: Path) -> None:
    (tmp_path / "rows.parquet").write_bytes(b"this is not parquet at all")
    message = error_of(write_spec(spec_for("rows.parquet"), files={}))
    assert message.startswith(f"{tmp_path / 'rows.parquet'}: unreadable Parquet file: ")


def test_an_unreadable_arrow_file_is_named(write_spec: WriteSpec, tmp_path: Path) -> None:
    (tmp_path / "rows.arrow").write_bytes(b"not arrow either")
    message = error_of(write_spec(spec_for("rows.arrow"), files={}))
    assert message.startswith(f"{tmp_path / 'rows.arrow'}: unreadable Arrow IPC file: ")


def test_duplicate_arrow_columns_are_refused(write_spec: WriteSpec, tmp_path: Path) -> None:
    table = pa.table([pa.array(["a"]), pa.array(["b"])], names=["id", "id"])
    write_arrow(tmp_path / "rows.feather", table)
    message = error_of(write_spec(spec_for("rows.feather"), files={}))
    assert message == f"{tmp_path / 'rows.feather'}: the file has column 'id' twice"


def test_missing_pyarrow_names_the_extra(
    write_spec: WriteSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_arrow(tmp_path / "rows.parquet")
    path = write_spec(spec_for("rows.parquet"), files={})
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == (
        f"{path}: reading rows.parquet needs pyarrow: pip install 'batch-orchestrator[parquet]'"
    )


def test_missing_arrow_file_names_the_resolved_path(write_spec: WriteSpec) -> None:
    path = write_spec(spec_for("data/rows.parquet"), files={})
    assert error_of(path) == f"{path}: input file not found: {path.parent / 'data/rows.parquet'}"


def test_parquet_content_hash_follows_the_file(write_spec: WriteSpec, tmp_path: Path) -> None:
    write_arrow(tmp_path / "rows.parquet")
    path = write_spec(spec_for("rows.parquet"), files={})
    first = load_spec(path).content_hash
    assert load_spec(path).content_hash == first
    write_arrow(tmp_path / "rows.parquet", TABLE.slice(0, 2))
    assert load_spec(path).content_hash != first


def test_parquet_streams_in_flat_memory(write_spec: WriteSpec, tmp_path: Path) -> None:
    count = 100_000
    table = pa.table(
        {
            "id": [f"k{n}" for n in range(count)],
            "text": [f"review number {n}, with some padding text" for n in range(count)],
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=5_000)
    loaded = load_spec(write_spec(spec_for("rows.parquet"), files={}))
    python_bytes = sum(len(f"k{n}") + 45 for n in range(count)) * 4
    stream = iter_items(loaded)
    next(stream)
    tracemalloc.start()
    try:
        for item in islice(stream, 20_000):
            last = item
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last.key == "k20000"
    assert peak < python_bytes / 10  # never every row as Python objects at once


# --- SQL ---------------------------------------------------------------------------------

REVIEWS = [("r1", "great", 5), ("r2", "bad", 1), ("r3", "fine", None)]


def make_db(path: Path, rows: list[tuple[Any, ...]] = REVIEWS) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE IF EXISTS reviews")
        db.execute("CREATE TABLE reviews (id TEXT, text TEXT, stars INTEGER)")
        db.executemany("INSERT INTO reviews VALUES (?, ?, ?)", rows)
    return path


QUERY = "sql:SELECT id, text, stars FROM reviews WHERE text <> ':none' ORDER BY id"


def sql_spec(source: str = QUERY, url: str = "sqlite:///reviews.db") -> str:
    return spec_for(source, f'input_url = "{url}"\n')


def test_a_query_gives_one_item_per_row(write_spec: WriteSpec, tmp_path: Path) -> None:
    make_db(tmp_path / "reviews.db")
    drafts = items(write_spec(sql_spec(), files={}))
    assert [(i.ordinal, i.key, i.line) for i in drafts] == [
        (0, "r1", 1),
        (1, "r2", 2),
        (2, "r3", 3),
    ]
    assert contents(drafts) == ["Review: great", "Review: bad", "Review: fine"]
    assert orjson.loads(drafts[0].input_json or b"") == {
        "id": "r1",
        "text": "great",
        "stars": 5,
    }


@pytest.mark.parametrize("source", ["table:reviews", "table:main.reviews"])
def test_a_whole_table(write_spec: WriteSpec, tmp_path: Path, source: str) -> None:
    make_db(tmp_path / "reviews.db")
    drafts = items(write_spec(sql_spec(source), files={}))
    assert [i.key for i in drafts] == ["r1", "r2", "r3"]
    assert drafts[0].columns == ("id", "text", "stars")


def test_relative_sqlite_paths_are_relative_to_the_spec(
    write_spec: WriteSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    make_db(tmp_path / "data" / "reviews.db")
    path = write_spec(sql_spec(url="sqlite:///data/reviews.db"), files={})
    monkeypatch.chdir("/")
    assert len(items(path)) == 3


def test_env_vars_fill_the_url(
    write_spec: WriteSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_db(tmp_path / "reviews.db")
    monkeypatch.setenv("REVIEWS_DB", "reviews.db")
    path = write_spec(sql_spec(url="sqlite:///${REVIEWS_DB}"), files={})
    loaded = load_spec(path)
    assert loaded.spec.input_url == "sqlite:///${REVIEWS_DB}"  # the spec keeps the name
    assert len(list(iter_items(loaded))) == 3
    monkeypatch.setenv("WHOLE_URL", f"sqlite:///{tmp_path / 'reviews.db'}")
    assert len(items(write_spec(sql_spec(url="${WHOLE_URL}"), files={}))) == 3


def test_an_unset_env_var_is_named(write_spec: WriteSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_DB_VAR", raising=False)
    path = write_spec(sql_spec(url="sqlite:///${NO_SUCH_DB_VAR}"), files={})
    assert error_of(path) == (
        f"{path}: input_url: environment variable NO_SUCH_DB_VAR is not set "
        "(used as ${NO_SUCH_DB_VAR})"
    )


def test_a_password_from_the_environment_is_used_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", "s3cr@t/pw")
    url = resolve_url("postgresql://app:${DB_PASSWORD}@db.example/reviews", tmp_path, "spec")
    assert (url.username, url.password, url.host) == ("app", "s3cr@t/pw", "db.example")
    assert "s3cr" not in url.render_as_string(hide_password=True)
    monkeypatch.setenv("DB_PORT", "6543")
    url = resolve_url("postgresql://app:${DB_PASSWORD}@db:${DB_PORT}/x", tmp_path, "spec")
    assert (url.port, url.password) == (6543, "s3cr@t/pw")
    assert mask_raw_url("postgresql://app:hunter2@db/x") == "postgresql://app:***@db/x"


def test_a_password_written_in_the_spec_is_never_shown_in_errors(write_spec: WriteSpec) -> None:
    url = "postgresql://app:hunter2@127.0.0.1:1/reviews?connect_timeout=2"  # nothing listens
    path = write_spec(sql_spec(url=url), files={})
    with pytest.raises(SpecError) as caught:
        load_spec(path)  # the content hash reads the rows: the error comes at load
    message = str(caught.value)
    assert message.startswith(f"{path}: input: cannot read the rows from postgresql://app:***@")
    assert "hunter2" not in message


def test_the_spec_dump_masks_a_written_password(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "name": "t",
            "input": "table:reviews",
            "input_url": "postgresql://app:hunter2@db/x",
            "key": "id",
            "request": {"model": "m", "max_tokens": 1, "prompt": "x"},
        },
        context={"base_dir": tmp_path},
    )
    assert spec.model_dump(mode="json")["input_url"] == "postgresql://app:***@db/x"
    assert "hunter2" not in repr(spec)
    assert spec.input_url == "postgresql://app:hunter2@db/x"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (sql_spec("sql:  "), 'input: give the query after "sql:"'),
        (sql_spec("table:drop table x"), 'input: give a table name after "table:"'),
        (spec_for(QUERY), "input_url: a database input needs the database: input_url ="),
        (
            spec_for("rows.jsonl", 'input_url = "sqlite:///x.db"\n'),
            'input_url: only used with input = "sql:SELECT ..." or "table:NAME"',
        ),
        (sql_spec(url="not a url"), "input_url: not a database URL: not a url; write one like"),
    ],
)
def test_database_input_mistakes(write_spec: WriteSpec, spec: str, message: str) -> None:
    path = write_spec(spec)
    assert error_of(path).startswith(f"{path}: {message}")


def test_a_missing_sqlite_file_is_named(write_spec: WriteSpec, tmp_path: Path) -> None:
    path = write_spec(sql_spec(url="sqlite:///nope.db"), files={})
    assert error_of(path) == (
        f"{path}: input_url: SQLite database file not found: {tmp_path / 'nope.db'}"
    )
    assert not (tmp_path / "nope.db").exists()  # not created empty by connecting


def test_a_failing_query_names_the_database_and_the_problem(
    write_spec: WriteSpec, tmp_path: Path
) -> None:
    make_db(tmp_path / "reviews.db")
    path = write_spec(sql_spec("sql:SELECT id FROM reviewz"), files={})
    assert error_of(path) == (
        f"{path}: input: cannot read the rows from sqlite:///{tmp_path / 'reviews.db'}: "
        "no such table: reviewz"
    )


def test_an_unknown_database_kind(write_spec: WriteSpec) -> None:
    path = write_spec(sql_spec(url="nosuchdb://h/x"), files={})
    assert error_of(path) == (
        f"{path}: input_url: SQLAlchemy has no database kind 'nosuchdb' (nosuchdb://h/x)"
    )


def test_duplicate_query_columns_are_refused(write_spec: WriteSpec, tmp_path: Path) -> None:
    make_db(tmp_path / "reviews.db")
    path = write_spec(sql_spec("sql:SELECT id, text, id FROM reviews"), files={})
    assert error_of(path).startswith(f"{path}: input: the query returns column 'id' twice")


def test_a_bad_database_row_names_the_query_and_row(write_spec: WriteSpec, tmp_path: Path) -> None:
    make_db(tmp_path / "reviews.db", [("r1", "ok", 1), (None, "no key", 2)])
    path = write_spec(sql_spec("sql:SELECT * FROM reviews ORDER BY stars"), files={})
    assert error_of(path) == (
        "sql:SELECT * FROM reviews ORDER BY stars:2: row has no field 'id' (the item key)"
    )


def test_long_queries_are_shortened_in_messages(write_spec: WriteSpec, tmp_path: Path) -> None:
    make_db(tmp_path / "reviews.db", [("", "empty key", 1)])
    query = (
        "sql:SELECT id, text, stars\n  FROM reviews\n  WHERE stars >= 1 AND text <> 'x' ORDER BY id"
    )
    message = error_of(write_spec(sql_spec(query.replace("\n", "\\n")), files={}))
    assert message == (
        "sql:SELECT id, text, stars FROM reviews WHERE stars >= 1 AN…:1: "
        "row has an empty key field 'id'"
    )


def test_database_content_hash_is_the_query_and_the_rows(
    write_spec: WriteSpec, tmp_path: Path
) -> None:
    db = make_db(tmp_path / "reviews.db")
    path = write_spec(sql_spec(), files={})
    first = load_spec(path).content_hash
    make_db(db)  # the same rows written again: a new file, the same data
    assert load_spec(path).content_hash == first
    make_db(db, [*REVIEWS, ("r4", "new", 3)])
    second = load_spec(path).content_hash
    assert second != first
    path.write_text(sql_spec(QUERY.replace("ORDER BY id", "ORDER BY id DESC")))
    assert load_spec(path).content_hash not in (first, second)
