"""Canceling a job mid-flight, on SQLite and PostgreSQL (design §4 `orchestrator
cancel`; anchors B4 scenario 11): nothing new is sent, in-flight batches get the
API cancel, finished answers are kept, nothing is retried after the cancel.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from orchestrator.domain.states import BatchStatus, ItemStatus, ResultType
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import StepContext, plan, submit
from orchestrator.steps.context import utcnow
from orchestrator.store.tables import Item
from tests.integration.conftest import MakeCtx, ledger, new_job, run_job, wait_until, write_job

ITEMS = 60


def test_cancel_mid_flight_keeps_answers_and_retries_nothing(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.state.configure(
        processing_seconds=60.0,  # still running when the user cancels
        cancel_seconds=0.2,
        # Half the requests were in flight and finish anyway; of those, some errored.
        # (Outcomes hang on the random store tag: shares this high make both certain.)
        cancel_inflight_share=0.5,
        errored_share={"api_error": 0.4},
    )
    job_id = new_job(ctx, write_job(tmp_path, "cancel", ITEMS, max_requests=ITEMS // 3))
    plan(ctx, utcnow())
    # Two of the three batches go out; the third is still planned when the user cancels.
    monkeypatch.setattr(importlib.import_module("orchestrator.steps.submit"), "CREATES_PER_RUN", 2)
    assert submit(ctx, utcnow()).details == {"created": 2}
    [never_sent] = ctx.store.batches([BatchStatus.PLANNED])

    assert ctx.store.cancel_job(job_id, utcnow()) == 2
    report = run_job(ctx, job_id)

    assert report.job.status.value == "canceled"
    assert report.batches == {"ingested": 2}  # the planned one is gone, never created
    assert set(report.items) == {"succeeded", "canceled"}
    assert report.items[ItemStatus.SUCCEEDED] >= 1  # in-flight requests that finished are kept
    assert report.items[ItemStatus.CANCELED] >= ITEMS // 3
    assert report.results.get(ResultType.ERRORED, 0) >= 1  # errored in flight, yet not retried
    book = ledger(sim)
    assert len(book["batches"]) == 2
    assert book["calls"]["cancel"] == 2  # one cancel per running batch
    assert max(book["submissions"].values()) == 1
    sent = set(book["submissions"])
    rows = list(ctx.store.final_results(job_id))
    assert len(rows) == ITEMS
    for row in rows:
        if row["status"] == "succeeded":
            assert row["text"]
            assert row["custom_id"] in sent
        else:
            assert row["status"] == "canceled"
    with ctx.store.engine.connect() as conn:
        unsent = conn.execute(
            select(Item.status, Item.custom_id).where(Item.job_id == job_id)
        ).all()
    assert not [r for r in unsent if r.custom_id in sent and r.status == "pending"]
    assert ctx.store.get_job(job_id).status.value == "canceled"
    assert never_sent.id not in {b.id for b in ctx.store.batches(list(BatchStatus), job_id)}


class _CancelDuringCreate(httpx.BaseTransport):
    """The user cancels the job while the create is on the wire; the API then
    refuses the create (429), so the batch goes back to ``planned``."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self.inner = httpx.HTTPTransport()
        self.cancel = cancel
        self.refused = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v1/messages/batches":
            self.cancel()
            self.refused += 1
            body = b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
            headers = {"content-type": "application/json", "retry-after": "1"}
            return httpx.Response(429, headers=headers, content=body, request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_batch_refused_while_its_job_was_canceled_is_never_sent(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    job_id = 0

    def cancel() -> None:
        with make_ctx(owner="user") as user:
            assert user.store.cancel_job(job_id, utcnow()) == 1  # the batch being created

    transport = _CancelDuringCreate(cancel)
    with make_ctx(transport=transport, max_retries=0) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "refused", 20))
        plan(ctx, utcnow())
        assert submit(ctx, utcnow()).details == {"deferred": 1}
        report = run_job(ctx, job_id, deadline_s=10)

        assert transport.refused == 1  # not sent again after the cancel
        assert report.job.status.value == "canceled"
        assert report.items == {"canceled": 20}
        assert ledger(sim)["batches"] == []


class _SlowCancel(httpx.BaseTransport):
    """Holds the cancel call until the batch has ended (the list said in_progress)."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.inner = httpx.HTTPTransport()
        self.sim = sim
        self.cancels = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/cancel"):
            self.cancels += 1
            remote_id = request.url.path.split("/")[-2]
            wait_until(
                lambda: self.sim.state.get(remote_id).ended_at is not None, "the batch to end"
            )
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_cancel_racing_the_batch_end_is_harmless(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    """The batch ends between the list call and the cancel call: the API answers 400
    (§6.3, ended batches can't be canceled); the run goes on and keeps the answers."""
    sim.state.configure(processing_seconds=0.5)
    transport = _SlowCancel(sim)
    with make_ctx(transport=transport) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "race", 20))
        plan(ctx, utcnow())
        assert submit(ctx, utcnow()).details == {"created": 1}
        assert ctx.store.cancel_job(job_id, utcnow()) == 1
        report = run_job(ctx, job_id, deadline_s=10)

        assert transport.cancels == 1
        assert report.job.status.value == "canceled"
        assert report.items == {"succeeded": 20}  # it finished before the cancel landed
        assert report.batches == {"ingested": 1}
