"""Exports lay a job's rows out by ``domain.output.columns``, typed per format."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator import export
from orchestrator.domain.output import (
    IDENTITY_COLUMNS,
    INVALID_OUTPUT,
    RESULT_COLUMNS,
    Column,
    Output,
    OutputMode,
    columns,
)
from orchestrator.domain.states import ItemStatus, ResultType
from orchestrator.errors import ConfigError
from orchestrator.export import ExportError, Format

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["spam", "ham"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "count": {"type": "integer"},
        "urgent": {"type": "boolean"},
        "topics": {"type": "array", "items": {"type": "string"}},
        "details": {"type": "object"},
    },
    "required": ["label", "confidence", "count", "urgent", "topics", "details"],
}
LAYOUT = columns(Output.checked(SCHEMA, OutputMode.JSON_SCHEMA), ["text", "review", "stars"])
NAMES = [
    *IDENTITY_COLUMNS,
    "label",
    "confidence",
    "count",
    "urgent",
    "topics",
    "details",
    "input_text",
    "review",
    "stars",
    *RESULT_COLUMNS,
]
CONTENT = [
    {"type": "thinking", "thinking": "first", "signature": "s1"},
    {"type": "thinking", "thinking": "second", "signature": "s2"},
    {"type": "text", "text": "spam"},
    {"type": "tool_use", "id": "t1", "name": "record", "input": {"a": [1, 2]}},
    {"type": "tool_use", "id": "t2", "name": "record", "input": {"b": 2}},
]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _row(**changes: Any) -> dict[str, Any]:
    """A succeeded item's ``final_results`` row; its answer has an int for the
    double column and an integral float for the int64 one (both valid JSON Schema)."""
    row: dict[str, Any] = {
        "job_id": 1,
        "job_name": "triage",
        "item_id": 1,
        "key": "a",
        "ordinal": 0,
        "custom_id": "c-a",
        "attempts": 1,
        "status": ItemStatus.SUCCEEDED.value,
        "result_type": ResultType.SUCCEEDED.value,
        "text": '{"label": "spam"}',
        "stop_reason": "end_turn",
        "model": "claude-x",
        "message_id": "msg_1",
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 3,
        "cost_usd": 0.0012,
        "cached": 1,
        "error_type": None,
        "error_message": None,
        "updated_at": "2026-01-01T00:00:00",
        "input": _json({"text": "buy now", "review": "great", "stars": 3}),
        "output": _json(
            {
                "label": "spam",
                "confidence": 1,
                "count": 2.0,
                "urgent": True,
                "topics": ["ads", "money"],
                "details": {"x": 1, "y": None},
            }
        ),
        "content": _json(CONTENT),
        "output_error": None,
    }
    row.update(changes)
    return row


INVALID = _row(
    key="b",
    custom_id="c-b",
    attempts=3,
    status=ItemStatus.FAILED.value,
    text="not json",
    content=_json([{"type": "text", "text": "not json"}]),
    output=None,
    output_error="the answer is not JSON",
    cached=0,
    error_type=INVALID_OUTPUT,
    error_message="no valid answer after 3 attempts",
    input=_json({"text": "hello", "review": None, "stars": 4.5}),
)
CANCELED = _row(
    key="c",
    custom_id="c-c",
    attempts=0,
    status=ItemStatus.CANCELED.value,
    result_type=None,
    text=None,
    stop_reason=None,
    model=None,
    message_id=None,
    input_tokens=None,
    output_tokens=None,
    cache_creation_input_tokens=None,
    cache_read_input_tokens=None,
    cost_usd=None,
    cached=False,
    content=None,
    output=None,
    input=_json({"text": "bye", "review": "meh", "stars": "five"}),
)


def _export(
    tmp_path: Path,
    fmt: Format,
    rows: list[dict[str, Any]],
    layout: list[Column] = LAYOUT,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Write ``rows`` and read them back: (column names, rows as the format holds them)."""
    path = tmp_path / f"out.{fmt.value}"
    assert export.write(iter(rows), fmt, path, layout) == len(rows)
    if fmt is Format.JSONL:
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        assert all(list(line) == [c.name for c in layout] for line in lines)
        return [c.name for c in layout], lines
    if fmt is Format.CSV:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            return list(reader.fieldnames or []), list(reader)
    table = pq.read_table(path)
    return list(table.column_names), table.to_pylist()


@pytest.mark.parametrize("fmt", list(Format))
def test_columns_are_the_layouts_in_order(tmp_path: Path, fmt: Format) -> None:
    names, rows = _export(tmp_path, fmt, [_row(), INVALID, CANCELED])
    assert names == NAMES == [c.name for c in LAYOUT]
    assert [r["key"] for r in rows] == ["a", "b", "c"]


def test_jsonl_keeps_json_values(tmp_path: Path) -> None:
    _, (row, invalid, canceled) = _export(tmp_path, Format.JSONL, [_row(), INVALID, CANCELED])
    assert row == {
        "job_name": "triage",
        "key": "a",
        "custom_id": "c-a",
        "attempts": 1,
        "status": ItemStatus.SUCCEEDED.value,
        "label": "spam",
        "confidence": 1.0,
        "count": 2,
        "urgent": True,
        "topics": ["ads", "money"],
        "details": {"x": 1, "y": None},
        "input_text": "buy now",
        "review": "great",
        "stars": 3,
        "result_type": ResultType.SUCCEEDED.value,
        "text": '{"label": "spam"}',
        "thinking": "first\n\nsecond",
        "tool_input": {"a": [1, 2]},
        "output_error": None,
        "stop_reason": "end_turn",
        "model": "claude-x",
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 3,
        "cost_usd": 0.0012,
        "cached": True,
        "error_type": None,
        "error_message": None,
    }
    assert isinstance(row["confidence"], float)
    assert isinstance(row["count"], int)
    assert (invalid["stars"], invalid["review"]) == (4.5, None)
    assert canceled["stars"] == "five"
    assert canceled["cached"] is False


def test_csv_writes_strings_as_they_are_and_the_rest_as_json(tmp_path: Path) -> None:
    _, (row, invalid, canceled) = _export(tmp_path, Format.CSV, [_row(), INVALID, CANCELED])
    assert {n: row[n] for n in NAMES[3:14]} == {
        "attempts": "1",
        "status": ItemStatus.SUCCEEDED.value,
        "label": "spam",
        "confidence": "1.0",
        "count": "2",
        "urgent": "true",
        "topics": '["ads","money"]',
        "details": '{"x":1,"y":null}',
        "input_text": "buy now",
        "review": "great",
        "stars": "3",
    }
    assert row["text"] == '{"label": "spam"}'
    assert row["thinking"] == "first\n\nsecond"
    assert row["tool_input"] == '{"a":[1,2]}'
    assert (row["cost_usd"], row["cached"], row["error_type"]) == ("0.0012", "true", "")
    assert (invalid["stars"], invalid["review"], invalid["cached"]) == ("4.5", "", "false")
    assert canceled["stars"] == "five"
    assert all(canceled[n] == "" for n in ("result_type", "input_tokens", "cost_usd"))


def test_parquet_fields_are_typed_by_column(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    export.write([_row(), INVALID, CANCELED], Format.PARQUET, path, LAYOUT)
    schema = pq.read_schema(path)
    types = {n: schema.field(n).type for n in schema.names}
    assert types == {
        **dict.fromkeys(NAMES, pa.string()),
        "attempts": pa.int64(),
        "confidence": pa.float64(),
        "count": pa.int64(),
        "urgent": pa.bool_(),
        "input_tokens": pa.int64(),
        "output_tokens": pa.int64(),
        "cache_creation_input_tokens": pa.int64(),
        "cache_read_input_tokens": pa.int64(),
        "cost_usd": pa.float64(),
        "cached": pa.bool_(),
    }
    row, invalid, canceled = pq.read_table(path).to_pylist()
    assert {n: row[n] for n in NAMES[3:14]} == {
        "attempts": 1,
        "status": ItemStatus.SUCCEEDED.value,
        "label": "spam",
        "confidence": 1.0,
        "count": 2,
        "urgent": True,
        "topics": '["ads","money"]',
        "details": '{"x":1,"y":null}',
        "input_text": "buy now",
        "review": "great",
        "stars": "3",
    }
    assert (row["thinking"], row["tool_input"]) == ("first\n\nsecond", '{"a":[1,2]}')
    assert (row["cost_usd"], row["cached"]) == (0.0012, True)
    assert (invalid["stars"], invalid["review"], invalid["cached"]) == ("4.5", None, False)
    assert canceled["stars"] == "five"
    assert all(canceled[n] is None for n in ("result_type", "input_tokens", "cost_usd"))


@pytest.mark.parametrize("fmt", list(Format))
def test_thinking_and_tool_input_come_from_the_content(tmp_path: Path, fmt: Format) -> None:
    text_only = _json([{"type": "text", "text": "hi"}])
    _, rows = _export(tmp_path, fmt, [_row(), _row(key="t", content=text_only), CANCELED])
    empty = "" if fmt is Format.CSV else None
    tool_input: Any = {"a": [1, 2]} if fmt is Format.JSONL else '{"a":[1,2]}'
    assert [(r["thinking"], r["tool_input"]) for r in rows] == [
        ("first\n\nsecond", tool_input),
        (empty, empty),
        (empty, empty),
    ]


@pytest.mark.parametrize("fmt", list(Format))
def test_an_invalid_output_exports_empty_properties(tmp_path: Path, fmt: Format) -> None:
    _, (row,) = _export(tmp_path, fmt, [INVALID])
    empty = "" if fmt is Format.CSV else None
    properties = ("label", "confidence", "count", "urgent", "topics", "details")
    assert [row[p] for p in properties] == [empty] * len(properties)
    assert row["error_type"] == INVALID_OUTPUT
    assert row["output_error"] == "the answer is not JSON"
    assert row["input_text"] == "hello"


@pytest.mark.parametrize("fmt", list(Format))
def test_a_job_without_output_has_identity_and_result_columns(tmp_path: Path, fmt: Format) -> None:
    plain = _row(input=None, output=None, text="hello")
    names, (row,) = _export(tmp_path, fmt, [plain], columns(None, []))
    assert names == [*IDENTITY_COLUMNS, *RESULT_COLUMNS]
    assert (row["key"], row["text"], row["thinking"]) == ("a", "hello", "first\n\nsecond")


def test_a_json_column_holds_json_text_even_for_a_string(tmp_path: Path) -> None:
    mixed = {"type": "object", "properties": {"note": {"type": ["string", "integer"]}}}
    layout = columns(Output.checked(mixed, OutputMode.TOOL), [])
    rows = [_row(output=_json({"note": "abc"})), _row(key="n", output=_json({"note": 7}))]
    _, csv_rows = _export(tmp_path, Format.CSV, rows, layout)
    _, parquet_rows = _export(tmp_path, Format.PARQUET, rows, layout)
    _, jsonl_rows = _export(tmp_path, Format.JSONL, rows, layout)
    assert [r["note"] for r in csv_rows] == ['"abc"', "7"]
    assert [r["note"] for r in parquet_rows] == ['"abc"', "7"]
    assert [r["note"] for r in jsonl_rows] == ["abc", 7]


def test_json_columns_already_parsed_by_the_driver_are_accepted(tmp_path: Path) -> None:
    parsed = _row(
        input={"text": "buy now", "review": "great", "stars": 3},
        output=orjson.loads(_row()["output"]),
        content=CONTENT,
    )
    _, (expected,) = _export(tmp_path, Format.JSONL, [_row()])
    _, (row,) = _export(tmp_path, Format.JSONL, [parsed])
    assert row == expected


@pytest.mark.parametrize("fmt", list(Format))
def test_a_failing_row_source_leaves_no_file(tmp_path: Path, fmt: Format) -> None:
    def rows() -> Iterator[dict[str, Any]]:
        yield _row()
        raise RuntimeError("the store went away")

    target = tmp_path / "out" / f"job.{fmt.value}"
    with pytest.raises(RuntimeError, match="went away"):
        export.write(rows(), fmt, target, LAYOUT)
    assert list(target.parent.iterdir()) == []

    target.write_text("previous export")
    with pytest.raises(RuntimeError, match="went away"):
        export.write(rows(), fmt, target, LAYOUT)
    assert list(target.parent.iterdir()) == [target]
    assert target.read_text() == "previous export"


@pytest.mark.parametrize("fmt", list(Format))
@pytest.mark.parametrize(
    ("column", "value"),
    [("count", 2.5), ("count", True), ("confidence", "high"), ("urgent", 1), ("label", 3)],
)
def test_an_unexportable_value_names_the_column_and_key(
    tmp_path: Path, fmt: Format, column: str, value: Any
) -> None:
    answer = {**orjson.loads(_row()["output"]), column: value}
    rows = [_row(), _row(key="odd-item", output=_json(answer))]
    target = tmp_path / f"out.{fmt.value}"
    with pytest.raises(ExportError, match=f"item 'odd-item', column '{column}'"):
        export.write(rows, fmt, target, LAYOUT)
    assert list(tmp_path.iterdir()) == []


def test_stored_json_that_is_not_json_names_the_item(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="item 'a': the stored content is not JSON"):
        export.write([_row(content="[{")], Format.JSONL, tmp_path / "x.jsonl", LAYOUT)


def test_parquet_is_written_in_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "PARQUET_ROWS_PER_GROUP", 2)
    rows = [_row(key=f"k{i}") for i in range(5)]
    path = tmp_path / "out.parquet"
    assert export.write(rows, Format.PARQUET, path, LAYOUT) == 5
    assert pq.ParquetFile(path).num_row_groups == 3
    assert pq.read_table(path).column("key").to_pylist() == [f"k{i}" for i in range(5)]


@pytest.mark.parametrize("fmt", list(Format))
def test_no_rows_still_writes_the_columns(tmp_path: Path, fmt: Format) -> None:
    names, rows = _export(tmp_path, fmt, [])
    if fmt is not Format.JSONL:
        assert names == NAMES
    assert rows == []


def test_parquet_without_pyarrow_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match=r"batch-orchestrator\[parquet\]"):
        export.write([_row()], Format.PARQUET, tmp_path / "out" / "x.parquet", LAYOUT)
    assert not (tmp_path / "out").exists()


def test_default_path_is_the_job_name_made_safe() -> None:
    assert export.default_path("triage/2026 v1", Format.CSV) == Path("triage_2026_v1.csv")
    assert export.default_path("..", Format.JSONL) == Path("job.jsonl")
