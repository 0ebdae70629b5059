"""Canceling a job mid-flight, on SQLite and PostgreSQL (design §4 `orchestrator
cancel`; anchors B4 scenario 11): nothing new is sent, in-flight batches get the
API cancel, finished answers are kept, nothing is retried after the cancel.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator.simulator import SimulatorServer
from orchestrator.steps import StepContext, plan, submit
from orchestrator.steps.context import utcnow
from orchestrator.store.tables import BatchStatus, Item
from tests.integration.conftest import ledger, new_job, run_job, write_job

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
    assert report.items["succeeded"] >= 1  # in-flight requests that finished are kept
    assert report.items["canceled"] >= ITEMS // 3
    assert report.results.get("errored", 0) >= 1  # errored in flight, yet not retried
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
    assert ctx.store.get_job(str(job_id)).status.value == "canceled"
    assert never_sent.id not in {b.id for b in ctx.store.batches(list(BatchStatus), job_id)}
