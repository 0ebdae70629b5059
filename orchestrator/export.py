"""Export a job's ``final_results`` rows as JSONL, CSV or Parquet.

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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from orchestrator.chunking import chunked
from orchestrator.errors import ConfigError

#: Columns of an export, in order (a subset of the final_results view).
COLUMNS = (
    "job_name",
    "key",
    "custom_id",
    "attempts",
    "status",
    "result_type",
    "text",
    "stop_reason",
    "model",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cached",
    "error_type",
    "error_message",
)
PARQUET_ROWS_PER_GROUP = 10_000


class Format(enum.StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


def default_path(job_name: str, fmt: Format) -> Path:
    """``<job name>.<format>`` in the working directory, the name made safe for a file."""
    safe = re.sub(r"[^A-Za-z0-9._@-]+", "_", job_name).strip("._") or "job"
    return Path(f"{safe}.{fmt.value}")


def write(rows: Iterable[dict[str, Any]], fmt: Format, path: Path) -> int:
    """Write ``rows`` to ``path`` atomically; returns how many rows were written."""
    writer = {Format.JSONL: _jsonl, Format.CSV: _csv, Format.PARQUET: _parquet}[fmt]
    with _atomic(path) as tmp:
        return writer((_project(r) for r in rows), tmp)


def _project(row: dict[str, Any]) -> dict[str, Any]:
    out = {c: row.get(c) for c in COLUMNS}
    out["cached"] = bool(out["cached"])
    return out


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


def _jsonl(rows: Iterable[dict[str, Any]], path: Path) -> int:
    count = 0
    with path.open("wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row) + b"\n")
            count += 1
    return count


def _csv(rows: Iterable[dict[str, Any]], path: Path) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def _parquet(rows: Iterable[dict[str, Any]], path: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "Parquet export needs pyarrow: pip install 'batch-orchestrator[parquet]'"
        ) from None
    schema = pa.schema(
        [
            ("job_name", pa.string()),
            ("key", pa.string()),
            ("custom_id", pa.string()),
            ("attempts", pa.int32()),
            ("status", pa.string()),
            ("result_type", pa.string()),
            ("text", pa.string()),
            ("stop_reason", pa.string()),
            ("model", pa.string()),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("cost_usd", pa.float64()),
            ("cached", pa.bool_()),
            ("error_type", pa.string()),
            ("error_message", pa.string()),
        ]
    )
    count = 0
    with pq.ParquetWriter(str(path), schema) as out:
        for group in chunked(rows, PARQUET_ROWS_PER_GROUP):
            out.write_table(pa.Table.from_pylist(group, schema=schema))
            count += len(group)
    return count


__all__ = ["COLUMNS", "Format", "default_path", "write"]
