"""Reading datasets row by row: JSONL objects, CSV records and Parquet / Arrow rows,
each with its line (for Parquet and Arrow: its 1-based row number).

A bad row is returned as its :class:`~orchestrator.errors.SpecError` (naming the file
and line) in place of the row, so a caller can report every bad row in one run; a
problem that stops the reading (a broken CSV header or quoting, an unreadable Parquet
file) is raised.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from orchestrator.errors import SpecError

_BOM = b"\xef\xbb\xbf"
#: A dataset row: column name to value (JSON types only).
Row = dict[str, Any]
#: Parquet / Arrow IPC files, read with pyarrow (the ``parquet`` extra).
ARROW_SUFFIXES = (".parquet", ".arrow", ".feather")
#: Rows turned into Python values at a time (memory stays flat in the file's size).
ARROW_CHUNK_ROWS = 1024
PYARROW_MISSING = "pip install 'batch-orchestrator[parquet]'"
#: Bytes a data file is read at a time: each read lets go of the GIL, and a thread
#: that does so waits for it again while another one computes (``steps.jobs`` reads
#: its rows on a thread of their own), so reads are few and large.
READ_BUFFER_BYTES = 1 << 20


def jsonl_rows(path: Path, label: str) -> Iterator[tuple[int, dict[str, Any] | SpecError]]:
    """(line number, object or its problem) per non-blank line.

    Binary mode splits on b"\\n" only and each line is parsed on its own, so a bad
    line (JSON or UTF-8) is reported with its own number.
    """
    with path.open("rb", buffering=READ_BUFFER_BYTES) as lines:
        for line_no, raw in enumerate(lines, start=1):
            text = raw.removeprefix(_BOM) if line_no == 1 else raw
            if text.strip():
                yield line_no, _json_object(text, f"{label}:{line_no}")


def _json_object(text: bytes, where: str) -> dict[str, Any] | SpecError:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        message = utf8_problem(text) or f"invalid JSON at column {exc.colno}: {exc.msg}"
        return SpecError(message, location=where)
    if not isinstance(value, dict):
        kind = type(value).__name__.replace("list", "array").replace("dict", "object")
        return SpecError(f"expected a JSON object on each line, got {kind}", location=where)
    return value


def utf8_problem(raw: bytes) -> str | None:
    """Where ``raw`` (one line) stops being UTF-8, as a message; None when it is UTF-8."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8")) + 1  # in characters, 1-based
        return f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column})"
    return None


def csv_rows(path: Path, label: str) -> Iterator[tuple[int, dict[str, Any] | SpecError]]:
    """(line where the record starts, row or its problem) per record; quoted fields may
    span lines. A broken header or quoting stops the reading (raised at once).
    """
    not_utf8: list[SpecError] = []  # lines of the current record that are not UTF-8
    end = 0
    try:
        with path.open("rb") as data:
            reader = csv.reader(_text_lines(data, label, not_utf8))
            header: list[str] | None = None
            for record in reader:
                start, end = end + 1, reader.line_num
                where = f"{label}:{start}"
                if not_utf8:
                    problem = not_utf8[0]
                    not_utf8.clear()
                    if header is None:
                        raise problem
                    yield start, problem
                elif not record:
                    continue  # blank line
                elif header is None:
                    header = _csv_header(record, where)
                elif len(record) != len(header):
                    message = f"row has {len(record)} fields but the header has {len(header)}"
                    yield start, SpecError(message, location=where)
                else:
                    yield start, dict(zip(header, record, strict=True))
    except csv.Error as exc:
        raise SpecError(f"unreadable CSV: {exc}", location=f"{label}:{end + 1}") from None


def _text_lines(data: BinaryIO, label: str, not_utf8: list[SpecError]) -> Iterator[str]:
    """The file's lines decoded one by one, split as text mode with ``newline=""`` splits
    them (on \\r\\n, \\r or \\n, ends kept) so ``csv`` counts lines as before.

    Decoding each line on its own puts a byte that is not UTF-8 on its own line (a
    text-mode file fails on a read-ahead block instead). Such a line is noted in
    ``not_utf8`` and passed on with the bad bytes replaced, so the parser keeps its place.
    """
    line_no = 0
    for chunk in data:
        for raw in chunk.splitlines(keepends=True):
            line_no += 1
            line = raw.removeprefix(_BOM) if line_no == 1 else raw
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                problem = utf8_problem(line) or "not valid UTF-8"
                not_utf8.append(SpecError(problem, location=f"{label}:{line_no}"))
                text = line.decode("utf-8", "replace")
            yield text


def _csv_header(record: list[str], where: str) -> list[str]:
    seen: set[str] = set()
    for name in record:
        if not name or name in seen:
            problem = "an empty column name" if not name else f"column {name!r} twice"
            raise SpecError(f"the CSV header has {problem}", location=where)
        seen.add(name)
    return record


# -- Parquet and Arrow --------------------------------------------------------------------


def need_pyarrow(file: str, location: str) -> Any:
    """The pyarrow module, or a SpecError naming the file and the extra to install."""
    try:
        import pyarrow
    except ImportError:
        message = f"reading {file} needs pyarrow: {PYARROW_MISSING}"
        raise SpecError(message, location=location) from None
    return pyarrow


def arrow_rows(path: Path, label: str) -> Iterator[tuple[int, Row]]:
    """(row number from 1, row) per row of a Parquet or Arrow IPC (Feather v2) file.

    Record batches are read one at a time (Parquet: by row group; Arrow: memory-mapped)
    and turned into Python values :data:`ARROW_CHUNK_ROWS` rows at a time; values are
    made plain (:func:`plain_value`). An unreadable file is raised, naming it.
    """
    pyarrow = need_pyarrow(path.name, label)
    number = 0
    try:
        checked = False
        for batch in _record_batches(pyarrow, path):
            if not checked:
                _check_arrow_columns(list(batch.schema.names), label)
                checked = True
            for start in range(0, batch.num_rows, ARROW_CHUNK_ROWS):
                for record in batch.slice(start, ARROW_CHUNK_ROWS).to_pylist():
                    number += 1
                    yield number, plain_row(record)
    except (pyarrow.ArrowException, OSError, ValueError) as exc:
        kind = "Parquet" if path.suffix.lower() == ".parquet" else "Arrow IPC"
        where = f"{label}:{number + 1}" if number else label
        message = f"unreadable {kind} file: {_arrow_problem(exc)}"
        raise SpecError(message, location=where) from None


def _record_batches(pyarrow: Any, path: Path) -> Iterator[Any]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as parquet:
            yield from parquet.iter_batches(batch_size=ARROW_CHUNK_ROWS)
        return
    with pyarrow.memory_map(str(path), "r") as source:
        try:
            reader = pyarrow.ipc.open_file(source)
        except pyarrow.ArrowInvalid:  # not the file format: maybe the stream format
            source.seek(0)
            yield from pyarrow.ipc.open_stream(source)
            return
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)


def _arrow_problem(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_arrow_columns(names: list[str], label: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SpecError(f"the file has column {name!r} twice", location=label)
        seen.add(name)


# -- plain values -------------------------------------------------------------------------


def plain_row(record: dict[str, Any]) -> Row:
    """A row read from Parquet, Arrow or a database, with :func:`plain_value` values."""
    return {str(name): plain_value(value) for name, value in record.items()}


def plain_value(value: Any) -> Any:
    """A database or Arrow value as a JSON value, keeping its type where JSON has one.

    str, int, float, bool and None stay; lists and structs (dicts) are converted inside;
    timestamps, dates and times become ISO 8601 strings; a Decimal becomes an int when
    it is whole, else a float; bytes become base64 text; anything else its ``str()``.
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_value(item) for item in value]
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)
