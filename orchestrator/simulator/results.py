"""The results file (§5.2): JSONL, one line per request, seeded shuffle, ``\\n`` only.

Lines are generated lazily, a chunk at a time, from the stored Prompt sketches; the
whole file never exists in memory. A cut stream (``cut_results_share``) sends some whole
lines and half of the next one, then raises :class:`StreamCut` so the server drops the
connection and the client sees an incomplete chunked body (§5.5, §10.13).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import orjson

from . import model, outcomes
from .batch import Batch
from .ids import digest64, message_id
from .ledger import Ledger, ServedLine


class StreamCut(Exception):
    """Raised mid-stream to drop the connection on purpose."""


def shuffled_order(seed: int, batch_id: str, count: int) -> list[int]:
    """§5.2: "results are not in request order"; the same order on every download."""
    order = list(range(count))
    random.Random(digest64(seed, "results", batch_id)).shuffle(order)
    return order


def result_line(batch: Batch, index: int, seed: int) -> tuple[bytes, str]:
    """One JSONL line (with ``\\n``) and its result type."""
    assert batch.outcomes is not None
    code = batch.outcomes[index]
    kind = outcomes.result_type(code)
    custom_id = batch.custom_ids[index]
    result: dict[str, Any] = {"type": kind}
    if kind == "succeeded":
        msg_id = message_id(seed, batch.id, custom_id)
        result["message"] = model.message(batch.prompts[index], seed, msg_id, "batch")
    elif kind == "errored":
        result["error"] = _error_envelope(code, batch.prompts[index].error)
    line = orjson.dumps(
        {"custom_id": custom_id, "result": result}, option=orjson.OPT_APPEND_NEWLINE
    )
    return line, kind


def _error_envelope(code: int, problem: str | None) -> dict[str, Any]:
    """§2.5: errored results carry a full ErrorResponse (nested error); §12.9: null id."""
    error_type = outcomes.error_type(code)
    message = (
        problem
        if code == outcomes.INVALID and problem
        else outcomes.ERROR_MESSAGES.get(error_type, error_type)
    )
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": None}


def result_chunks(
    batch: Batch, seed: int, ledger: Ledger, chunk_lines: int, cut_after: int | None = None
) -> Iterator[bytes]:
    """Yield the results file in chunks; record each fully sent line in the ledger."""
    order = shuffled_order(seed, batch.id, len(batch.custom_ids))
    if cut_after is not None:
        order = order[: cut_after + 1]
    for start in range(0, len(order), chunk_lines):
        lines, served = [], []
        for index in order[start : start + chunk_lines]:
            line, kind = result_line(batch, index, seed)
            lines.append(line)
            served.append(ServedLine(batch.id, batch.custom_ids[index], kind))
        if cut_after is not None and start + len(lines) == len(order):
            yield from _cut(b"".join(lines), ledger, served)
        yield b"".join(lines)
        ledger.record_served(served)


def _cut(chunk: bytes, ledger: Ledger, served: list[ServedLine]) -> Iterator[bytes]:
    """Send every line of the last chunk but half of its final line, then drop."""
    last_start = chunk.rstrip(b"\n").rfind(b"\n") + 1
    partial = chunk[: last_start + max(1, (len(chunk) - last_start) // 2)]
    yield partial
    ledger.record_served(served[:-1])
    raise StreamCut("results stream cut on purpose (cut_results_share)")
