"""Reading datasets row by row: JSONL objects and CSV records, each with its line.

A bad row is returned as its :class:`~orchestrator.errors.SpecError` (naming the file
and line) in place of the row, so a caller can report every bad row in one run; a
problem that stops the reading (a broken CSV header or quoting) is raised.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from orchestrator.errors import SpecError

_BOM = b"\xef\xbb\xbf"


def jsonl_rows(path: Path, label: str) -> Iterator[tuple[int, dict[str, Any] | SpecError]]:
    """(line number, object or its problem) per non-blank line.

    Binary mode splits on b"\\n" only and each line is parsed on its own, so a bad
    line (JSON or UTF-8) is reported with its own number.
    """
    with path.open("rb") as lines:
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
