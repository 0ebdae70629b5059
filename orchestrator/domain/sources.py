"""Where a template spec's rows come from: a file (JSONL, CSV, Parquet, Arrow) or a
database (``sql:``/``table:`` with ``input_url``), one interface for all of them.

``input`` is validated into a resolved :class:`~pathlib.Path` (a file) or kept as the
``sql:``/``table:`` text (a database). :func:`input_rows` streams ``(line, row)``
pairs; :func:`data_chunks` yields the bytes the job's content hash covers: the file's
bytes, or for a database each row as canonical JSON (the query text is in the spec).
"""

from __future__ import annotations

from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any

import orjson

from orchestrator.domain.datasets import (
    ARROW_SUFFIXES,
    Row,
    arrow_rows,
    csv_rows,
    jsonl_rows,
    need_pyarrow,
)
from orchestrator.domain.sql_input import (
    check_database_input,
    database_rows,
    input_label,
    is_database_input,
)
from orchestrator.errors import SpecError

#: Dataset files ``input`` may name.
INPUT_SUFFIXES = (".jsonl", ".csv", *ARROW_SUFFIXES)
HASH_CHUNK_BYTES = 1 << 20
#: What ``input`` may be, for messages.
INPUT_FORMS = 'a .jsonl, .csv, .parquet, .arrow or .feather file, "sql:SELECT ..." or "table:NAME"'

#: ``input`` after validation: a resolved file path, or the ``sql:``/``table:`` text.
Input = Path | str


def parse_input(value: Any, base_dir: Path) -> Any:
    """``input`` as written -> a resolved dataset path, or the database input text.

    Relative paths are relative to ``base_dir`` (the spec's directory). Raises
    ValueError saying what ``input`` may be; a value of another type is left for the
    field's own type check.
    """
    if isinstance(value, str) and is_database_input(value):
        return check_database_input(value)
    if not isinstance(value, str | PathLike):
        raise ValueError(f"must be {INPUT_FORMS}")
    path = Path(value)
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise ValueError(f"must be {INPUT_FORMS} (got {path.name!r})")
    return (base_dir / path).resolve()


def display_path(path: Path | str) -> str:
    """The path as the user would type it: relative to the working directory when inside
    it. A database input (text, not a path) is shown as written, shortened."""
    if isinstance(path, str):
        return input_label(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_input(value: Input, input_url: str | None, spec_label: str) -> None:
    """What can be checked before reading: the file exists, pyarrow is there."""
    if isinstance(value, str):
        if input_url is None:  # the spec model requires it; a guard for direct callers
            raise SpecError("input_url: a database input needs input_url", location=spec_label)
        return
    if not value.is_file():
        raise SpecError(f"input file not found: {value}", location=spec_label)
    if value.suffix.lower() in ARROW_SUFFIXES:
        need_pyarrow(value.name, spec_label)


def input_rows(
    value: Input, input_url: str | None, base_dir: Path, spec_label: str
) -> Iterator[tuple[int, Row | SpecError]]:
    """(line, row or its problem) per row of the input, in order, streamed.

    ``line`` is the file line where the row starts (JSONL, CSV) or the 1-based row
    number (Parquet, Arrow, database). Problems that stop the reading are raised.
    """
    if isinstance(value, str):
        assert input_url is not None  # JobSpec requires it with a database input
        yield from database_rows(value, input_url, base_dir, spec_label)
        return
    label = display_path(value)
    suffix = value.suffix.lower()
    if suffix == ".csv":
        yield from csv_rows(value, label)
    elif suffix in ARROW_SUFFIXES:
        yield from arrow_rows(value, label)
    else:
        yield from jsonl_rows(value, label)


def data_chunks(
    value: Input, input_url: str | None, base_dir: Path, spec_label: str
) -> Iterator[bytes]:
    """The bytes the content hash covers: the data file's bytes, or every database row
    as canonical JSON (one per line, columns in query order), read as it streams."""
    if isinstance(value, Path):
        with value.open("rb") as data:
            while chunk := data.read(HASH_CHUNK_BYTES):
                yield chunk
        return
    for _, row in input_rows(value, input_url, base_dir, spec_label):
        yield orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS) + b"\n"
