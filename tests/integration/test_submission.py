"""Queue-aware submission: creates wait for room in the processing queue and stay under a
pace, without spending any item's attempts."""

from __future__ import annotations

from pathlib import Path

from orchestrator.simulator import SimulatorServer
from orchestrator.steps import plan, submit
from orchestrator.steps.context import utcnow
from orchestrator.steps.waiting import waiting_reason
from tests.integration.conftest import MakeCtx, ledger, new_job, run_job, write_job


def test_creates_wait_for_room_in_the_processing_queue(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    with make_ctx(max_requests_in_flight=25) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "queue", 100, max_requests=20))
        plan(ctx, utcnow())
        assert submit(ctx, utcnow()).details == {"created": 1, "queue_full": 1}
        reason = waiting_reason(ctx.store, ctx.settings, job_id, utcnow())
        assert reason is not None
        assert "processing queue is full (20 requests in flight" in reason
        report = run_job(ctx, job_id)
    assert report.items == {"succeeded": 100}
    assert report.retried_items == 0  # waiting spent no attempt
    assert len(ledger(sim)["batches"]) == 5


def test_creates_are_paced_per_minute_across_the_store(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    with make_ctx(creates_per_minute=2) as ctx:
        new_job(ctx, write_job(tmp_path, "paced", 50, max_requests=10))
        plan(ctx, utcnow())
        assert submit(ctx, utcnow()).details == {"created": 2, "paced": 1}
        assert submit(ctx, utcnow()).details == {"paced": 1}
    assert len(ledger(sim)["batches"]) == 2
