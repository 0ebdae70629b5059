"""Crash safety on SQLite and PostgreSQL: creates whose outcome is unknown, concurrent
claims, fencing of a stale lease holder.

Real store (both backends), real HTTP to the simulator; the guarantees are design
§5.1, §5.3 and §5.5 (anchors B4 scenarios 1, 2, 8 and 9). Crashes are injected
in-process as a BaseException (anchors B3 level (a)), and a worker "restarts"
with a fresh store connection, client and owner id.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from orchestrator.domain.states import BatchStatus, ItemStatus, ResultType
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import StepContext, plan, poll, recover, run_cycle, submit
from orchestrator.steps.context import utcnow
from orchestrator.steps.ingest import ingest_batch
from orchestrator.steps.recover import deadline_of
from orchestrator.store.queries import Store
from orchestrator.store.records import Lease, RemoteState, Resolution, ResultRow
from orchestrator.store.tables import Batch
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

ITEMS = 40


class SimulatedCrash(BaseException):
    """The process dies here (not an Exception: no handler may swallow it)."""


def _age_leases(store: Store, owner: str) -> int:
    """``owner`` stalled or died long ago (procrastinate's heartbeat aging)."""
    with store.engine.begin() as conn:
        aged = conn.execute(
            update(Batch)
            .where(Batch.lease_owner == owner)
            .values(lease_expires_at=utcnow() - timedelta(minutes=5))
        )
    return int(aged.rowcount)


@pytest.mark.parametrize("death", ["interrupted", "killed"])
def test_crash_after_create_adopts_the_remote_batch(
    make_ctx: MakeCtx,
    sim: SimulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    death: str,
) -> None:
    """Scenario 1: the POST succeeded, the batch id was never committed.

    ``interrupted``: a BaseException unwinds the step (its ``finally`` blocks run);
    ``killed``: the process vanished with its lease held, which then expires.
    """
    real_record = Store.record_created
    crashed: list[str] = []

    def record_created(self: Store, lease: Lease, remote: RemoteState, now: datetime) -> bool:
        if not crashed:
            crashed.append(remote.remote_id)
            raise SimulatedCrash
        return real_record(self, lease, remote, now)

    with make_ctx(owner="doomed") as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "crash", ITEMS, max_requests=ITEMS // 2))
        monkeypatch.setattr(Store, "record_created", record_created)
        if death == "killed":
            monkeypatch.setattr(Store, "release_batch", lambda _self, _lease: None)
        with pytest.raises(SimulatedCrash):
            run_cycle(ctx)
        monkeypatch.undo()
        [lost] = ctx.store.batches([BatchStatus.CREATING])
        if death == "killed":  # both planned batches were claimed by the dead worker
            assert _age_leases(ctx.store, "doomed") == 2

    with make_ctx(owner="restarted") as ctx:
        run_job(ctx, job_id)
        assert_job_complete(ctx, job_id)
        assert_no_double_spend(ctx, sim, job_id)
        assert ctx.store.get_batch(lost.id).remote_id == crashed[0]  # adopted, not resent
        book = ledger(sim)
        assert len(book["batches"]) == 2
        assert ctx.store.job_report(job_id).items == {"succeeded": ITEMS}


def test_lost_create_is_adopted_by_listing_not_resent(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    """Scenario 2: the batch was created but its response never came back."""
    job_id = new_job(ctx, write_job(tmp_path, "lost", ITEMS, max_requests=ITEMS // 2))
    plan(ctx, utcnow())
    sim.state.configure(lost_create_share=1.0)
    report = submit(ctx, utcnow())
    # One create in flight per job: the second batch waits until the first is settled.
    assert report.details == {"unknown": 1, "skipped": 1}
    [unknown] = ctx.store.batches([BatchStatus.UNKNOWN])
    sim.state.configure(lost_create_share=0.0)

    assert recover(ctx, utcnow()).details == {"adopted": 1}
    run_job(ctx, job_id)

    assert_job_complete(ctx, job_id)
    assert_no_double_spend(ctx, sim, job_id)
    book = ledger(sim)
    assert len(book["batches"]) == 2  # planned batches, each created once
    assert book["batches"][0]["response_lost"] is True
    assert ctx.store.get_batch(unknown.id).remote_id == book["batches"][0]["id"]
    assert ctx.store.job_report(job_id).items == {"succeeded": ITEMS}


def test_create_that_never_arrived_is_replanned_after_the_window(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    """Scenario 2, other branch: nothing matches in the listing once the deadline passed
    (upload time + the create's own timeout + the settle time, from the intent)."""
    transport = SilentCreate()
    with make_ctx(transport=transport, reconcile_skew_s=0, create_timeout_s=1) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "silent", ITEMS))
        plan(ctx, utcnow())
        assert submit(ctx, utcnow()).details == {"unknown": 1}
        [batch] = ctx.store.batches([BatchStatus.UNKNOWN])
        assert recover(ctx, utcnow()).details == {"waiting": 1}  # could still show up
        assert ledger(sim)["batches"] == []

        deadline = deadline_of(batch, ctx.settings)
        assert batch.intent_at is not None
        assert (deadline - batch.intent_at).total_seconds() < 20  # not the 600 s read timeout
        assert recover(ctx, deadline - timedelta(seconds=0.5)).details == {"waiting": 1}
        assert recover(ctx, deadline + timedelta(seconds=0.05)).details == {"replanned": 1}
        run_job(ctx, job_id)

        assert transport.swallowed == 1
        assert_job_complete(ctx, job_id)
        assert_no_double_spend(ctx, sim, job_id)
        book = ledger(sim)
        assert len(book["batches"]) == 1  # created once, after reconciliation
        assert ctx.store.get_batch(batch.id).remote_id == book["batches"][0]["id"]


def test_concurrent_claims_have_one_winner_per_batch(ctx: StepContext, tmp_path: Path) -> None:
    """Scenario 8: 8 workers claim the same 4 planned batches at once."""
    new_job(ctx, write_job(tmp_path, "claims", ITEMS, max_requests=ITEMS // 4))
    plan(ctx, utcnow())
    won: dict[str, list[int]] = {}
    barrier = threading.Barrier(8)

    def claim(owner: str) -> None:
        barrier.wait()
        leases = ctx.store.claim_batches([BatchStatus.PLANNED], owner, utcnow(), 30, limit=4)
        won[owner] = [lease.row_id for lease in leases]

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(won) == 8  # every worker got an answer (no deadlock, no error)
    claimed = [batch_id for ids in won.values() for batch_id in ids]
    assert sorted(claimed) == sorted(b.id for b in ctx.store.batches([BatchStatus.PLANNED]))
    assert len(claimed) == len(set(claimed)) == 4
    for owner, ids in won.items():
        for batch_id in ids:
            with ctx.store.engine.connect() as conn:
                holder = conn.execute(Batch.__table__.select().where(Batch.id == batch_id)).one()
            assert holder.lease_owner == owner


def _ended_batch(ctx: StepContext, tmp_path: Path) -> tuple[int, int]:
    """A job with one batch that ended remotely and waits to be ingested."""
    job_id = new_job(ctx, write_job(tmp_path, "fenced", ITEMS))
    plan(ctx, utcnow())
    submit(ctx, utcnow())
    wait_until(lambda: bool(poll(ctx, utcnow()).details.get("ended")), "the batch to end")
    [batch] = ctx.store.batches([BatchStatus.ENDED])
    return job_id, batch.id


def test_stale_lease_holder_is_fenced(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    """Scenario 9: A stalls past its lease, B takes over; A's late writes change nothing."""
    with make_ctx(owner="worker-a") as a, make_ctx(owner="worker-b") as b:
        job_id, batch_id = _ended_batch(a, tmp_path)
        now = utcnow()
        [stale] = a.store.claim_batches([BatchStatus.ENDED], a.owner, now, 30)
        assert _age_leases(a.store, a.owner) == 1
        [fresh] = b.store.claim_batches([BatchStatus.ENDED], b.owner, now, 30)
        assert fresh.row_id == stale.row_id == batch_id
        assert fresh.version == stale.version + 1

        assert ingest_batch(b, fresh) == "ingested"
        before = b.store.job_report(job_id)
        assert before.items == {"succeeded": ITEMS}

        row = ResultRow(
            batch_id=batch_id,
            item_id=1,
            custom_id="stale-1-1",
            attempt=1,
            result_type=ResultType.EXPIRED,
        )
        assert a.store.heartbeat(stale, now, 30) is False
        assert a.store.upsert_results(stale, [row], []) is False
        wipe = [Resolution(1, ItemStatus.PENDING, None, "x", "stale write")]
        assert a.store.resolve_items(stale, wipe, now) is False
        assert a.store.finish_batch(stale, BatchStatus.UNAVAILABLE, now, "stale") is False
        assert a.store.mark_creating(stale, now, a.api.endpoint) is False

        after = b.store.job_report(job_id)
        assert after.items == before.items
        assert after.results == before.results == {"succeeded": ITEMS}
        assert b.store.get_batch(batch_id).status is BatchStatus.INGESTED
        assert b.store.get_batch(batch_id).last_error is None
        assert_job_complete(b, job_id)
        assert len(ledger(sim)["batches"]) == 1
