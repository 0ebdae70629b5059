"""A tentative adoption is proven by the batch's results, or undone: another store's
batch that matched a lost create is given back, and the create is settled again."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson

from orchestrator.domain.planning import request_bytes
from orchestrator.domain.states import BatchStatus, ItemStatus
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import ingest, plan, poll, recover, submit
from orchestrator.steps.context import utcnow
from orchestrator.steps.recover import deadline_of
from tests.integration.conftest import (
    MakeCtx,
    SilentCreate,
    assert_job_complete,
    assert_no_double_spend,
    ledger,
    new_job,
    run_job,
    wait_until,
    write_job,
)

ITEMS = 8


def test_a_wrong_adoption_is_undone_by_the_results_and_nothing_is_lost(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    with make_ctx(transport=SilentCreate(), create_timeout_s=1) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "wrong", ITEMS))
        plan(ctx, utcnow())
        assert submit(ctx, utcnow()).details == {"unknown": 1}
        # Another store sharing the key creates a batch of the same size meanwhile:
        # the only candidate, so it is adopted (tentatively).
        message = {"role": "user", "content": "x"}
        params = orjson.dumps({"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [message]})
        theirs = ctx.api.create([request_bytes(f"zz9-{i}-1", params) for i in range(1, ITEMS + 1)])
        assert recover(ctx, utcnow()).details == {"adopted": 1}
        [adopted] = ctx.store.batches([BatchStatus.IN_PROGRESS], job_id)
        assert (adopted.remote_id, adopted.adopted) == (theirs.id, True)

        wait_until(lambda: bool(poll(ctx, utcnow()).details.get("ended")), "their batch to end")
        assert ingest(ctx, utcnow()).details == {"foreign": 1}
        [undone] = ctx.store.batches([BatchStatus.UNKNOWN], job_id)
        assert undone.remote_id is None
        assert ctx.store.foreign_remote_ids() == {theirs.id}
        report = ctx.store.job_report(job_id)
        assert report.items == {ItemStatus.QUEUED: ITEMS}  # no item failed
        assert report.results == {}  # nothing of theirs was kept

        # Settled again without their batch: ours never arrived, so it is planned again.
        assert recover(ctx, deadline_of(undone, ctx.settings) + timedelta(seconds=1)).details == {
            "replanned": 1
        }
        run_job(ctx, job_id)
        assert_job_complete(ctx, job_id)
        assert_no_double_spend(ctx, sim, job_id)
    assert len(ledger(sim)["batches"]) == 2  # theirs, and ours sent once
