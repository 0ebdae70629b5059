"""Regression guard for result ingestion memory (issue 13): peak allocations, never time.

A real SQLite store holds one ended batch of 50,000 requests, seeded through the
store's own operations; its results file (about 60 MB: succeeded lines of 0.6-1.8 KB
and some errored, canceled and expired ones, in random order) is streamed from disk by
an httpx transport in 64 KB pieces, as a download arrives. The real ``ingest_batch``
(download, parse, route, store, resolve every item) runs under ``tracemalloc``, and
its peak of Python allocations must stay under ``BOUND_MB``.

Why that bound: ingestion holds a chunk of lines at a time (``ingest_chunk_rows``,
1,000) while the thread that downloads frames the next one, so its peak does not grow
with the file: 14.5 MB measured here, whatever the number of lines. 30 MB leaves twice
that for the interpreter's and the allocator's drift, and is still well under what
holding the file, or its rows, would take (60 MB, and over 100 MB with their rows): a
change that keeps what it has stored, or reads the file whole, fails here.
``tracemalloc`` counts Python's allocations only (not SQLite's page cache, a fixed
2 MB), which makes the figure the same from run to run. ``bench/ingest.py --memory``
measures the whole process's peak RSS on a 256 MB file.
"""

from __future__ import annotations

import random
import shutil
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from orchestrator.api.client import BatchesClient
from orchestrator.domain.states import BatchStatus, ItemStatus
from orchestrator.settings import load_settings
from orchestrator.steps.context import StepContext
from orchestrator.steps.ingest import ingest_batch
from orchestrator.store.queries import Store
from tests.unit.store.helpers import OWNER, created_batch, end_batch, make_job

pytestmark = pytest.mark.slow

LINES = 50_000
BOUND_MB = 30.0
BASE_URL = "https://r"  # the helpers' batches end with results_url https://r/results


class _FileTransport(httpx.BaseTransport):
    """Serves the results file from disk in 64 KB pieces (nothing else is asked)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/results", request.url
        return httpx.Response(200, stream=_FileStream(self.path))


class _FileStream(httpx.SyncByteStream):
    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[bytes]:
        with self.path.open("rb") as fh:
            while piece := fh.read(65536):
                yield piece


def _results_file(path: Path, custom_ids: list[str]) -> None:
    rng = random.Random(13)
    words = "the product works as described naïve café 東京 “quoted” would buy again".split()
    order = list(custom_ids)
    rng.shuffle(order)
    with path.open("wb") as fh:
        for custom_id in order:
            draw = rng.random()
            result: dict[str, object]
            if draw < 0.05:
                error = {"type": "overloaded_error", "message": "Overloaded"}
                result = {"type": "errored", "error": {"type": "error", "error": error}}
            elif draw < 0.08:
                result = {"type": "expired"}
            elif draw < 0.10:
                result = {"type": "canceled"}
            else:
                text = " ".join(rng.choices(words, k=rng.randint(80, 220)))
                usage = {"input_tokens": rng.randint(50, 400), "output_tokens": len(text) // 4}
                message = {
                    "id": f"msg_{custom_id}",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-haiku-4-5",
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                }
                result = {"type": "succeeded", "message": message}
            line = {"custom_id": custom_id, "result": result}
            fh.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))


def test_ingesting_a_results_file_keeps_memory_flat(sqlite_template: Path, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    shutil.copyfile(sqlite_template, db)
    url = f"sqlite:///{db}"
    store = Store.open(url)
    try:
        job = make_job(store, LINES, max_requests=LINES)
        ended = end_batch(store, created_batch(store, job.id, status=BatchStatus.IN_PROGRESS))
        results = tmp_path / "results.jsonl"
        _results_file(results, [ref.custom_id for ref in ended.refs])
        settings = load_settings(api_key="sk-test", base_url=BASE_URL, database_url=url)
        api = BatchesClient(api_key="sk-test", base_url=BASE_URL, transport=_FileTransport(results))
        ctx = StepContext(store=store, api=api, settings=settings, owner=OWNER)
        lease = ended.lease
        del ended  # its 50,000 request refs are the test's, not the ingest's

        tracemalloc.start()
        try:
            outcome = ingest_batch(ctx, lease)
            peak = tracemalloc.get_traced_memory()[1] / 1e6
        finally:
            tracemalloc.stop()

        report = store.job_report(job.id)
    finally:
        store.close()
    assert outcome == BatchStatus.INGESTED
    assert sum(report.results.values()) == LINES
    assert report.items.get(ItemStatus.QUEUED, 0) == 0
    assert peak < BOUND_MB, f"ingest peak {peak:.1f} MB of Python allocations"
