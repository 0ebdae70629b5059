"""API and store faults, on SQLite and PostgreSQL: 429/529 storms, cut and corrupt
results streams, results that vanished, a locked SQLite file (anchors B4
scenarios 3, 5, 6, 7, 12 and 13).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from orchestrator.domain.states import BatchStatus
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import StepContext, plan, poll, run_cycle, submit
from orchestrator.steps.context import MAX_SHORT_DOWNLOADS, utcnow
from orchestrator.store.tables import ApiBackoff, Quarantine
from tests.integration.conftest import (
    MakeCtx,
    assert_job_complete,
    assert_no_double_spend,
    ledger,
    new_job,
    run_job,
    wait_until,
    write_job,
)


def test_rate_limit_storm_on_create_backs_off_and_completes(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    """Scenario 3: refusals are retried with back-off, shared in the store, never doubled."""
    asked: list[float] = []

    def sleep(seconds: float) -> None:
        asked.append(seconds)
        time.sleep(min(seconds, 0.02))

    with make_ctx(sleep=sleep, max_retries=6) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "storm", 60, max_requests=20))
        plan(ctx, utcnow())
        # The first create and all six client retries are refused; the last with retry-after.
        sim.state.faults.inject(529, 429, 529, 429, 529, 429, 429)
        assert submit(ctx, utcnow()).details == {"deferred": 1}
        until = ctx.store.backoff_until("create")
        assert until is not None
        assert until > utcnow()
        # Every worker on this store honours the shared back-off: no create is sent.
        assert submit(ctx, utcnow()).details == {"backing_off": 1}
        assert ledger(sim)["calls"]["create"] == 7
        assert ledger(sim)["batches"] == []

        # Then a storm on every endpoint: 20 % of calls refused until the end (the
        # client's 6 retries absorb it on reads; creates may be deferred again).
        sim.state.configure(fault_429_share=0.1, fault_529_share=0.1)
        run_job(ctx, job_id)

        assert_job_complete(ctx, job_id)
        assert_no_double_spend(ctx, sim, job_id)
        assert ctx.store.job_report(job_id).items == {"succeeded": 60}
        book = ledger(sim)
        assert len(book["batches"]) == 3
        assert book["responses"]["create 429"] >= 4
        assert book["responses"]["create 529"] >= 3
        assert sum(n for k, n in book["responses"].items() if k.endswith((" 429", " 529"))) > 7
        with ctx.store.engine.connect() as conn:
            [(scope, reason)] = conn.execute(select(ApiBackoff.scope, ApiBackoff.reason)).all()
        assert scope == "create"
        assert reason
    assert 1.0 in asked  # retry-after honoured by the client
    assert max(asked) <= 60


def test_cut_results_stream_is_downloaded_again(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario 5: a download cut mid-stream is read again; nothing doubled or dropped."""
    # The package re-exports the step function under the module's name.
    ingest_module = importlib.import_module("orchestrator.steps.ingest")
    monkeypatch.setattr(ingest_module, "INGEST_RETRY_S", 0.05)
    sim.state.configure(cut_results_share=1.0, results_chunk_lines=16)
    with make_ctx(ingest_chunk_rows=16) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "cut", 200))

        def cut_twice() -> bool:
            run_cycle(ctx)
            return int(ledger(sim)["calls"].get("results", 0)) >= 2

        wait_until(cut_twice, "two cut downloads")
        [batch] = ctx.store.batches([BatchStatus.ENDED])
        assert batch.ingest_attempts >= 2
        assert "broke off" in (batch.last_error or "")
        sim.state.configure(cut_results_share=0.0)
        run_job(ctx, job_id)

        assert_job_complete(ctx, job_id)
        assert_no_double_spend(ctx, sim, job_id)
        assert ctx.store.get_batch(batch.id).status is BatchStatus.INGESTED
        assert ctx.store.count_results(batch.id) == batch.request_count == 200
        report = ctx.store.job_report(job_id)
        assert report.items == {"succeeded": 200}
        assert report.results == {"succeeded": 200}
        assert report.quarantined == 0  # a half line at the cut is never parsed


GARBLED = b'{"custom_id": "half a line", "result": {"type": "succ\n'
FOREIGN = b'{"custom_id": "other-tool-7", "result": {"type": "expired"}}\n'


class _CorruptResults(httpx.BaseTransport):
    """Serves the first batch's results with its first line garbled, a duplicate of the
    second line, and a line from some other tool in the same workspace."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.target: str | None = None
        self.garbled: str | None = None
        self.served = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        path = request.url.path
        if not path.endswith("/results") or self.target not in (None, path):
            return response
        self.target = path
        try:
            lines = response.read().splitlines(keepends=True)
        finally:
            response.close()
        self.garbled = json.loads(lines[0])["custom_id"]
        body = b"".join([GARBLED, *lines[1:], lines[1], FOREIGN])
        self.served += 1
        headers = {"content-type": "application/x-jsonl"}
        return httpx.Response(200, headers=headers, content=body, request=request)

    def close(self) -> None:
        self.inner.close()


def test_malformed_and_foreign_lines_are_quarantined(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    """Scenarios 6 and 7: bad lines go to quarantine, the rest is ingested, and the
    request whose line was lost is resolved as missing and sent again."""
    transport = _CorruptResults()
    with make_ctx(transport=transport) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "corrupt", 30))
        report = run_job(ctx, job_id)

        rows = assert_job_complete(ctx, job_id)
        assert_no_double_spend(ctx, sim, job_id)
        assert report.items == {"succeeded": 30}
        assert report.quarantined == 2
        with ctx.store.engine.connect() as conn:
            quarantined = conn.execute(
                select(Quarantine.line_no, Quarantine.custom_id, Quarantine.error).order_by(
                    Quarantine.line_no
                )
            ).all()
        assert [(q.line_no, q.custom_id) for q in quarantined] == [
            (1, None),
            (32, "other-tool-7"),
        ]
        assert quarantined[0].error.startswith("unparseable")
        assert "not a request of this batch" in quarantined[1].error
        assert transport.served == MAX_SHORT_DOWNLOADS  # tried again, then gave up on it
        first, second = ctx.store.batches([BatchStatus.INGESTED], job_id)
        assert first.last_error is not None
        assert "1 of 30 results missing" in first.last_error
        assert second.request_count == 1
        retried = [r for r in rows if r["attempts"] == 2]
        assert transport.garbled is not None
        assert [r["custom_id"] for r in retried] == [transport.garbled.removesuffix("-1") + "-2"]


@pytest.mark.parametrize("seen_ended", [True, False], ids=["after-poll", "before-poll"])
def test_deleted_batch_is_unavailable_and_its_items_retried(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path, seen_ended: bool
) -> None:
    """Scenario 12: the results vanished before ingest; no endless retry, no lost item."""
    job_id = new_job(ctx, write_job(tmp_path, "deleted", 20))
    plan(ctx, utcnow())
    submit(ctx, utcnow())
    [batch] = ctx.store.batches([BatchStatus.IN_PROGRESS])
    assert batch.remote_id is not None
    remote_id = batch.remote_id
    if seen_ended:
        wait_until(lambda: bool(poll(ctx, utcnow()).details.get("ended")), "the batch to end")
    else:
        wait_until(
            lambda: ctx.api.retrieve(remote_id).processing_status == "ended", "the remote end"
        )
    ctx.api.delete(remote_id)

    report = run_job(ctx, job_id)

    assert_job_complete(ctx, job_id)
    assert_no_double_spend(ctx, sim, job_id)
    assert report.items == {"succeeded": 20}
    assert report.batches == {"unavailable": 1, "ingested": 1}
    assert ctx.store.get_batch(batch.id).status is BatchStatus.UNAVAILABLE
    assert all(r["attempts"] == 2 for r in ctx.store.final_results(job_id))
    assert len(ledger(sim)["batches"]) == 2


def test_locked_sqlite_store_is_waited_for(
    ctx_factory: MakeCtx, sqlite_url: str, tmp_path: Path
) -> None:
    """Scenario 13: another process holds the write lock for a second; the step waits."""
    with ctx_factory(sqlite_url) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "locked", 20))
        path = sqlite_url.removeprefix("sqlite:///")
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        with contextlib.closing(holder):
            holder.execute("BEGIN IMMEDIATE")
            release = threading.Timer(1.0, lambda: holder.execute("COMMIT"))
            release.start()
            started = time.monotonic()
            try:
                report = plan(ctx, utcnow())
            finally:
                release.join()
            waited = time.monotonic() - started
        assert report.details == {"batches": 1}
        assert waited >= 0.9
        run_job(ctx, job_id)
        assert_job_complete(ctx, job_id)
