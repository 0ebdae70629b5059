"""Crash safety on SQLite and PostgreSQL: lost creates, concurrent claims, fencing.

Real store (both backends), real HTTP to the simulator; the guarantees are the
ones in design §5.3 and §5.5 (anchors B4 scenarios 2, 8 and 9).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from orchestrator.api.client import BatchesClient
from orchestrator.settings import load_settings
from orchestrator.simulator import SimulatorConfig, SimulatorServer
from orchestrator.steps import StepContext, plan, recover, run_cycle, submit
from orchestrator.steps.context import utcnow
from orchestrator.steps.jobs import submit_spec
from orchestrator.store.queries import Store
from orchestrator.store.tables import Batch, BatchStatus

ITEMS = 40


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(processing_seconds=0.2, processing_jitter=0.0)) as server:
        yield server


@pytest.fixture
def ctx(store_url: str, sim: SimulatorServer, tmp_path: Path) -> Iterator[StepContext]:
    settings = load_settings(
        api_key="sk-test",
        base_url=sim.base_url,
        database_url=store_url,
        poll_interval_s=0.1,
        lease_ttl_s=30,
        max_retries=0,
    )
    store = Store.open(store_url)
    with BatchesClient(api_key="sk-test", base_url=sim.base_url, max_retries=0) as api:
        yield StepContext(store=store, api=api, settings=settings, owner="worker-a")
    store.close()


def _job(ctx: StepContext, root: Path, batches: int = 1) -> int:
    rows = root / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"id": f"k{i}", "t": f"text {i}"}) + "\n" for i in range(ITEMS))
    )
    spec = root / "spec.toml"
    spec.write_text(
        'name = "crash"\ninput = "rows.jsonl"\nkey = "id"\n[request]\n'
        'model = "claude-haiku-4-5"\nmax_tokens = 8\nprompt = "Say {t}"\n'
        f"[batching]\nmax_requests = {ITEMS // batches}\n"
    )
    job, _ = submit_spec(ctx.store, spec, utcnow(), ctx.prices)
    return job.id


def _run_to_done(ctx: StepContext, job_id: int) -> None:
    for _ in range(200):
        run_cycle(ctx)
        if ctx.store.job_report(job_id).job.status.value == "done":
            return
        threading.Event().wait(0.05)
    pytest.fail("the job did not finish")


def test_lost_create_is_adopted_by_listing_not_resent(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    job_id = _job(ctx, tmp_path)
    plan(ctx, utcnow())
    sim.state.configure(lost_create_share=1.0)
    report = submit(ctx, utcnow())
    assert report.details == {"unknown": 1}
    [batch] = ctx.store.batches([BatchStatus.UNKNOWN])
    sim.state.configure(lost_create_share=0.0)

    assert recover(ctx, utcnow()).details == {"adopted": 1}
    _run_to_done(ctx, job_id)
    ledger = sim.state.ledger.to_json()
    assert len(ledger["batches"]) == 1  # created once, never resent
    assert ledger["batches"][0]["response_lost"] is True
    assert ctx.store.get_batch(batch.id).remote_id == ledger["batches"][0]["id"]
    assert max(ledger["submissions"].values()) == 1
    assert ctx.store.job_report(job_id).items == {"succeeded": ITEMS}


def test_concurrent_claims_have_one_winner_per_batch(ctx: StepContext, tmp_path: Path) -> None:
    _job(ctx, tmp_path, batches=4)
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
    claimed = [batch_id for ids in won.values() for batch_id in ids]
    assert sorted(claimed) == sorted(b.id for b in ctx.store.batches([BatchStatus.PLANNED]))
    assert len(claimed) == len(set(claimed)) == 4


def test_stale_lease_holder_is_fenced(ctx: StepContext, tmp_path: Path) -> None:
    _job(ctx, tmp_path)
    plan(ctx, utcnow())
    now = utcnow()
    [stale] = ctx.store.claim_batches([BatchStatus.PLANNED], "worker-a", now, 30)
    with ctx.store.engine.begin() as conn:  # the holder stalls past its lease
        conn.execute(
            update(Batch)
            .where(Batch.id == stale.row_id)
            .values(lease_expires_at=now - timedelta(minutes=5))
        )
    [fresh] = ctx.store.claim_batches([BatchStatus.PLANNED], "worker-b", now, 30)
    assert fresh.row_id == stale.row_id
    assert fresh.version == stale.version + 1

    assert ctx.store.mark_creating(stale, now) is False
    assert ctx.store.heartbeat(stale, now, 30) is False
    assert ctx.store.upsert_results(stale, [], []) is False
    assert ctx.store.mark_creating(fresh, now) is True
    assert ctx.store.get_batch(fresh.row_id).status is BatchStatus.CREATING
