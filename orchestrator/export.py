"""Export a job's rows as JSONL, CSV or Parquet, in the column layout of ``domain.output``.

Columns, in the layout's order (``domain.output.columns``):

* identity: ``job_name, key, custom_id, attempts, status``;
* one per top-level property of the job's output schema, named as the property:
  the item's validated answer (empty when it has none, e.g. a failed
  ``invalid_output`` item);
* one per column of the item's input row (``input_<name>`` when the name is taken);
* the final result (``result_<name>`` when a property took the name):
  ``result_type, text``; ``thinking``, the texts of the thinking blocks joined by
  a blank line; ``tool_input``, the input of the first tool_use block;
  ``output_error``, why the answer was invalid; ``stop_reason, model``, the four
  token counts, ``cost_usd, cached, error_type, error_message``.

Each column has a type (``ColumnType``): string, double, int64, bool, or json for
anything nested or mixed (``tool_input``, array and object properties). Numbers
are converted where exact (1 becomes 1.0 in a double column, 2.0 becomes 2 in an
int64 one); a value that does not fit its column raises ExportError naming the
item and the column, never dropped (validation upstream makes that a bug). Input
columns keep their values as they are in the input row.

Per format (an empty value is a JSON null, an empty CSV cell, a Parquet null):

* JSONL: one JSON object per line, keys in column order; nested values stay
  nested, input values keep their JSON type.
* CSV: a header of the column names; a string as it is, any other value as
  compact JSON text (``true``/``false``, ``0.9``, ``["a","b"]``). A json column
  always holds JSON text, so a string in one is quoted (``"abc"``).
* Parquet: one field per column: string, float64, int64, bool; a json column is
  a string of compact JSON text (read it with DuckDB's json functions, or
  ``json.loads`` in pandas); an input column is a string, a non-string input
  value JSON-encoded (3 becomes ``"3"``). Written in row groups of
  ``PARQUET_ROWS_PER_GROUP`` rows.

Rows are streamed from the store and written to a temporary file beside the
target, which replaces the target only when complete: an export that fails
leaves no half-written file.
"""

from __future__ import annotations

import csv
import enum
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from orchestrator.chunking import chunked
from orchestrator.domain.output import Column, ColumnType, Source
from orchestrator.errors import ConfigError

PARQUET_ROWS_PER_GROUP = 10_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Characters of an offending value shown in an ExportError.
_MAX_SHOWN = 80


class Format(enum.StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


class _Row(NamedTuple):
    """One row projected on the layout: its item's key, and a value per column."""

    key: Any
    values: list[Any]


_Writer = Callable[[Iterable[_Row], Path, tuple[Column, ...]], int]


class ExportError(ValueError):
    """A stored value can't be written in its column; the message names the item and column."""


def default_path(job_name: str, fmt: Format) -> Path:
    """``<job name>.<format>`` in the working directory, the name made safe for a file."""
    safe = re.sub(r"[^A-Za-z0-9._@-]+", "_", job_name).strip("._") or "job"
    return Path(f"{safe}.{fmt.value}")


def write(rows: Iterable[dict[str, Any]], fmt: Format, path: Path, layout: Sequence[Column]) -> int:
    """Write ``rows`` (of ``final_results``) to ``path`` atomically, one column per
    ``layout`` entry; returns how many rows were written."""
    layout = tuple(layout)
    writer: _Writer
    if fmt is Format.PARQUET:
        writer = _parquet_writer()
    else:
        writer = {Format.JSONL: _jsonl, Format.CSV: _csv}[fmt]
    project = _Projector(layout)
    with _atomic(path) as tmp:
        return writer((project(r) for r in rows), tmp, layout)


class _Projector:
    """Turns a ``final_results`` row into the layout's values, typed by column."""

    def __init__(self, layout: tuple[Column, ...]) -> None:
        self.layout = layout
        sources = {c.source for c in layout}
        fields = {c.field for c in layout if c.source is Source.RESULT}
        self.needs_output = Source.PROPERTY in sources
        self.needs_input = Source.INPUT in sources
        self.needs_content = bool(fields & {"thinking", "tool_input"})

    def __call__(self, row: dict[str, Any]) -> _Row:
        key = row.get("key")
        output = stored_object(row, "output") if self.needs_output else None
        input_row = stored_object(row, "input") if self.needs_input else None
        blocks = _stored_blocks(row) if self.needs_content else []
        values: list[Any] = []
        for column in self.layout:
            if column.source is Source.INPUT:
                values.append(input_row.get(column.field) if input_row is not None else None)
                continue
            if column.source is Source.PROPERTY:
                value = output.get(column.field) if output is not None else None
            else:
                value = _row_field(row, column.field, blocks)
            values.append(_typed(value, column, key))
        return _Row(key, values)


def _row_field(row: dict[str, Any], field: str, blocks: list[dict[str, Any]]) -> Any:
    """An identity or result field: from the row, or computed from the content blocks."""
    if field == "thinking":
        texts = [
            b["thinking"]
            for b in blocks
            if b.get("type") == "thinking" and isinstance(b.get("thinking"), str)
        ]
        return "\n\n".join(texts) if texts else None
    if field == "tool_input":
        return next((b.get("input") for b in blocks if b.get("type") == "tool_use"), None)
    value = row.get(field)
    if field == "cached" and value is not None:
        return bool(value)
    return value


def _stored_json(row: dict[str, Any], name: str) -> Any:
    """A JSON column of the row, parsed (a driver may already have parsed it)."""
    value = row.get(name)
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ExportError(
                f"item {row.get('key')!r}: the stored {name} is not JSON ({exc})"
            ) from None
    return value


def stored_object(row: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A JSON-object column of a ``final_results`` row (``input``, ``output``), parsed."""
    value = _stored_json(row, name)
    if value is not None and not isinstance(value, dict):
        raise ExportError(f"item {row.get('key')!r}: the stored {name} is not a JSON object")
    return value


def _stored_blocks(row: dict[str, Any]) -> list[dict[str, Any]]:
    value = _stored_json(row, "content")
    if value is None:
        return []
    if not isinstance(value, list):
        raise ExportError(f"item {row.get('key')!r}: the stored content is not a JSON array")
    return [b for b in value if isinstance(b, dict)]


def _typed(value: Any, column: Column, key: Any) -> Any:
    """``value`` as its column's type; ExportError when it can't be without loss."""
    if value is None or column.type is ColumnType.JSON:
        return value
    kind = column.type
    if kind is ColumnType.STRING and isinstance(value, str):
        return value
    if kind is ColumnType.BOOL and isinstance(value, bool):
        return value
    if kind is ColumnType.INT64 and isinstance(value, int | float) and not isinstance(value, bool):
        if (isinstance(value, int) or value.is_integer()) and _INT64_MIN <= value <= _INT64_MAX:
            return int(value)
    if kind is ColumnType.DOUBLE and isinstance(value, int | float | Decimal):
        if not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                pass
    shown = repr(value)
    if len(shown) > _MAX_SHOWN:
        shown = shown[: _MAX_SHOWN - 3] + "..."
    raise ExportError(f"item {key!r}, column {column.name!r}: {shown} is not a {kind.value} value")


def _json_text(value: Any, column: Column, key: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise ExportError(f"item {key!r}, column {column.name!r}: {exc}") from None


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _jsonl(rows: Iterable[_Row], path: Path, layout: tuple[Column, ...]) -> int:
    names = [c.name for c in layout]
    count = 0
    with path.open("wb") as fh:
        for row in rows:
            try:
                line = orjson.dumps(dict(zip(names, row.values, strict=True)))
            except orjson.JSONEncodeError as exc:
                raise ExportError(f"item {row.key!r}: {exc}") from None
            fh.write(line + b"\n")
            count += 1
    return count


def _csv_cell(value: Any, column: Column, key: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str) and column.type is not ColumnType.JSON:
        return value
    return _json_text(value, column, key)


def _csv(rows: Iterable[_Row], path: Path, layout: tuple[Column, ...]) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([c.name for c in layout])
        for row in rows:
            writer.writerow(
                [_csv_cell(v, c, row.key) for c, v in zip(layout, row.values, strict=True)]
            )
            count += 1
    return count


def _parquet_cell(value: Any, column: Column, key: Any) -> Any:
    if value is None:
        return None
    if column.type is ColumnType.JSON:
        return _json_text(value, column, key)
    if column.source is Source.INPUT and not isinstance(value, str):
        return _json_text(value, column, key)
    return value


def _pyarrow(what: str) -> Any:
    """pyarrow, or a ConfigError naming the extra that installs it."""
    try:
        import pyarrow as pa
    except ImportError:
        raise ConfigError(
            f"{what} needs pyarrow: pip install 'batch-orchestrator[parquet]'"
        ) from None
    return pa


def _arrow_layout(pa: Any, layout: tuple[Column, ...]) -> tuple[Any, list[Any]]:
    """The Arrow schema of a layout, and each column's type."""
    arrow_types = {
        ColumnType.STRING: pa.string(),
        ColumnType.DOUBLE: pa.float64(),
        ColumnType.INT64: pa.int64(),
        ColumnType.BOOL: pa.bool_(),
        ColumnType.JSON: pa.string(),
    }
    types = [pa.string() if c.source is Source.INPUT else arrow_types[c.type] for c in layout]
    return pa.schema([pa.field(c.name, t) for c, t in zip(layout, types, strict=True)]), types


def _arrow_groups(
    pa: Any, rows: Iterable[_Row], layout: tuple[Column, ...]
) -> Iterator[tuple[Any, int]]:
    """Arrow tables of up to PARQUET_ROWS_PER_GROUP rows, with their row counts."""
    schema, types = _arrow_layout(pa, layout)
    for group in chunked(rows, PARQUET_ROWS_PER_GROUP):
        arrays = [
            pa.array([_parquet_cell(r.values[i], c, r.key) for r in group], type=t)
            for i, (c, t) in enumerate(zip(layout, types, strict=True))
        ]
        yield pa.Table.from_arrays(arrays, schema=schema), len(group)


def arrow_table(rows: Iterable[dict[str, Any]], layout: Sequence[Column]) -> Any:
    """The rows as one ``pyarrow.Table``, typed as the Parquet export is."""
    pa = _pyarrow("An Arrow table")
    layout = tuple(layout)
    project = _Projector(layout)
    tables = [t for t, _ in _arrow_groups(pa, (project(r) for r in rows), layout)]
    return pa.concat_tables(tables) if tables else _arrow_layout(pa, layout)[0].empty_table()


def _parquet_writer() -> _Writer:
    """The Parquet writer; ConfigError naming the ``parquet`` extra when pyarrow is missing."""
    pa = _pyarrow("Parquet export")
    import pyarrow.parquet as pq

    def write(rows: Iterable[_Row], path: Path, layout: tuple[Column, ...]) -> int:
        schema, _ = _arrow_layout(pa, layout)
        count = 0
        with pq.ParquetWriter(str(path), schema) as out:
            for table, size in _arrow_groups(pa, rows, layout):
                out.write_table(table)
                count += size
        return count

    return write


__all__ = [
    "PARQUET_ROWS_PER_GROUP",
    "ExportError",
    "Format",
    "arrow_table",
    "default_path",
    "stored_object",
    "write",
]
