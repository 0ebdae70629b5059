"""Results files an API or a proxy could serve by mistake, for a real batch: every line
is stored, quarantined or reported, nothing crashes, and nothing billed is bought again.

A transport in front of the simulator rewrites the genuine results file of the job's
batch: each case is a function of its lines (bytes, in the order served).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import text

from orchestrator.domain.states import ItemStatus
from orchestrator.simulator import SimulatorServer
from tests.integration.conftest import MakeCtx, ledger, new_job, run_job, write_job

ITEMS = 6
Lines = list[bytes]
RAW_NUL = b'"\x00x":1,"custom_id"'  # a NUL byte inside a JSON string: unparseable


def _retyped(line: bytes, new_type: str) -> bytes:
    record = orjson.loads(line)
    record["result"] = {"type": new_type, "detail": "a result type this code does not know"}
    return orjson.dumps(record)


def _with_text(line: bytes, value: str) -> bytes:
    record = orjson.loads(line)
    record["result"]["message"]["content"] = [{"type": "text", "text": value}]
    return orjson.dumps(record)


def _custom_id(line: bytes) -> str:
    return str(orjson.loads(line)["custom_id"])


CASES: dict[str, Callable[[Lines], Lines]] = {
    "every line twice": lambda lines: lines + lines,
    "a conflicting duplicate": lambda lines: [*lines, _with_text(lines[0], "a second answer")],
    "an unknown result type": lambda lines: [_retyped(lines[0], "paused"), *lines[1:]],
    "a NUL in the text": lambda lines: [_with_text(lines[0], "be\u0000fore"), *lines[1:]],
    "a raw NUL byte": lambda lines: [
        lines[0].replace(b'"custom_id"', b'"\x00x":1,"custom_id"'),
        *lines[1:],
    ],
    "a truncated last line": lambda lines: [*lines[:-1], lines[-1][:-7]],
    "a line of someone else": lambda lines: [
        *lines,
        b'{"custom_id":"zz9-1-1","result":{"type":"expired"}}',
    ],
    "a Windows file": lambda lines: [line + b"\r" for line in lines],
}
#: Case -> (items succeeded, items failed as unreadable, quarantine rows).
EXPECTED = {
    "every line twice": (ITEMS, 0, 0),
    "a conflicting duplicate": (ITEMS, 0, 0),
    "an unknown result type": (ITEMS - 1, 1, 1),
    "a NUL in the text": (ITEMS, 0, 0),
    "a raw NUL byte": (ITEMS - 1, 1, 1),
    "a truncated last line": (ITEMS - 1, 1, 1),
    "a line of someone else": (ITEMS, 0, 1),
    "a Windows file": (ITEMS, 0, 0),
}


class _Rewrite(httpx.BaseTransport):
    """Serves every results file through ``change``."""

    def __init__(self, change: Callable[[Lines], Lines]) -> None:
        self.inner = httpx.HTTPTransport()
        self.change = change
        self.served = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not request.url.path.endswith("/results"):
            return response
        try:
            lines = response.read().splitlines()
        finally:
            response.close()
        self.served += 1
        body = b"\n".join(self.change(lines)) + b"\n"
        headers = {"content-type": "application/x-jsonl"}
        return httpx.Response(200, headers=headers, content=body, request=request)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("case", list(CASES))
def test_a_flawed_results_file(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path, case: str
) -> None:
    transport = _Rewrite(CASES[case])
    with make_ctx(transport=transport) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "flawed", ITEMS))
        report = run_job(ctx, job_id)
        with ctx.store.engine.connect() as conn:
            texts = conn.execute(text("SELECT text FROM results WHERE text IS NOT NULL")).all()
    succeeded, unreadable, quarantined = EXPECTED[case]
    assert report.items.get(ItemStatus.SUCCEEDED, 0) == succeeded
    assert report.items.get(ItemStatus.FAILED, 0) == unreadable
    assert report.quarantined == quarantined
    assert [g.error_type for g in report.failures] == ["unreadable_result"] * bool(unreadable)
    # Nothing that the API answered is bought again: one batch, every request once.
    book = ledger(sim)
    assert len(book["batches"]) == 1
    assert max(book["submissions"].values()) == 1
    assert transport.served == 1
    assert all("\x00" not in row.text for row in texts)
    if case == "a NUL in the text":
        assert ("be\ufffdfore",) in [tuple(row) for row in texts]


def test_an_empty_results_file_is_fetched_again_before_anything_is_sent(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    served: list[int] = []

    def empty_first(lines: Lines) -> Lines:
        served.append(len(lines))
        return [] if len(served) == 1 else lines

    with make_ctx(transport=_Rewrite(empty_first)) as ctx:
        report = run_job(ctx, new_job(ctx, write_job(tmp_path, "empty", ITEMS)), 45)
    assert report.items == {ItemStatus.SUCCEEDED: ITEMS}
    assert len(served) == 2
    assert len(ledger(sim)["batches"]) == 1
