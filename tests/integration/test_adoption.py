"""A tentative adoption is proven by the batch's results, or undone: another store's
batch that matched a lost create is given back, one of this store's goes to the
create whose requests it holds, and the create is settled again."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import orjson

from orchestrator.api.models import MessageBatch
from orchestrator.domain.planning import request_bytes
from orchestrator.domain.states import BatchStatus, ItemStatus
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import ingest, plan, poll, recover, submit
from orchestrator.steps.context import StepContext, utcnow
from orchestrator.steps.recover import deadline_of
from orchestrator.store.records import BatchRecord
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
        theirs = their_batch(ctx, ITEMS)
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


#: Seconds before a new batch shows in the simulator's list pages.
LIST_LAG_S = 1.5


def test_a_batch_adopted_by_the_wrong_create_is_handed_to_its_own(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    """The list shows new batches late. X's create is made (RX) but its answer lost,
    and X's reconciliation sees only a neighbour's batch of the same size (RF): it
    adopts RF. Y's create, of the same size, is answered 500 and made nothing; by
    then RX is listed and Y adopts it. The results sort it out: RF is foreign, RX
    goes to X, and Y is planned again. Every request is sent exactly once."""
    sim.state.configure(list_lag_seconds=LIST_LAG_S)
    with make_ctx(creates_per_minute=10_000) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "handover", ITEMS, max_requests=ITEMS // 2))
        plan(ctx, utcnow())
        theirs = their_batch(ctx, ITEMS // 2)
        time.sleep(LIST_LAG_S)  # theirs is listed; X's batch won't be when X reconciles

        sim.state.configure(lost_create_share=1.0)
        assert submit(ctx, utcnow()).details["unknown"] == 1  # the other batch waits its turn
        sim.state.configure(lost_create_share=0.0)
        assert recover(ctx, utcnow()).details == {"adopted": 1}
        [x] = _adopted(ctx, job_id)
        assert x.remote_id == theirs.id
        [rx] = [b["id"] for b in ledger(sim)["batches"] if b["id"] != theirs.id]

        sim.state.configure(create_500_share=1.0, create_500_made_share=0.0)
        assert submit(ctx, utcnow()).details["unknown"] == 1
        sim.state.configure(create_500_share=0.0)
        time.sleep(LIST_LAG_S)  # now X's batch is listed, and nothing holds it
        assert recover(ctx, utcnow()).details == {"adopted": 1}
        [y] = [b for b in _adopted(ctx, job_id) if b.id != x.id]
        assert y.remote_id == rx

        wait_until(lambda: _ended(ctx, job_id) == 2, "both adopted batches to end")
        ingest(ctx, utcnow())
        # RF is foreign; RX is X's (proven by its custom_ids); Y waits to be settled again.
        assert ctx.store.foreign_remote_ids() == {theirs.id}
        assert ctx.store.get_batch(x.id).remote_id == rx
        y = ctx.store.get_batch(y.id)
        assert (y.status, y.remote_id) == (BatchStatus.UNKNOWN, None)
        assert ctx.store.job_report(job_id).items == {ItemStatus.QUEUED: ITEMS}
        # Nothing else matches Y's create (RX is proven X's now): it never happened.
        assert recover(ctx, deadline_of(y, ctx.settings) + timedelta(seconds=1)).details == {
            "replanned": 1
        }

        run_job(ctx, job_id)
        assert_job_complete(ctx, job_id)
        assert_no_double_spend(ctx, sim, job_id)
        assert ctx.store.get_batch(x.id).status is BatchStatus.INGESTED
    # Theirs, RX, and Y sent again once (its first create made nothing).
    assert len(ledger(sim)["batches"]) == 3


def their_batch(ctx: StepContext, size: int) -> MessageBatch:
    """A batch of ``size`` requests made by another store sharing the key."""
    message = {"role": "user", "content": "x"}
    params = orjson.dumps({"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [message]})
    return ctx.api.create([request_bytes(f"zz9-{i}-1", params) for i in range(1, size + 1)])


def _adopted(ctx: StepContext, job_id: int) -> list[BatchRecord]:
    return [b for b in ctx.store.batches(list(BatchStatus), job_id) if b.adopted]


def _ended(ctx: StepContext, job_id: int) -> int:
    poll(ctx, utcnow())
    return len(ctx.store.batches([BatchStatus.ENDED], job_id))
