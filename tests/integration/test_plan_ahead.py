"""The plan step plans a job only ``PLAN_AHEAD`` batches ahead of its creates: the rest
of its items wait ``pending``, and are planned, in the same order, as creates start.
A 1,000,000-item job used to plan all ten batches in one cycle (about 5 s each on
PostgreSQL) while its first batch had ended long before and waited for that cycle's
poll, and the next create for it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from orchestrator.domain.states import BatchStatus, ItemStatus
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import StepContext, submit
from orchestrator.steps.context import utcnow
from orchestrator.steps.plan import PLAN_AHEAD, plan
from orchestrator.store.tables import Item
from tests.integration.conftest import assert_no_double_spend, new_job, run_job, write_job

ITEMS, PER_BATCH = 50, 10


def batch_members(ctx: StepContext) -> list[list[int]]:
    """Each batch's item ordinals, batches in the order they were planned."""
    with ctx.store.engine.connect() as conn:
        rows = conn.execute(
            select(Item.batch_id, Item.ordinal)
            .where(Item.batch_id.is_not(None))
            .order_by(Item.batch_id, Item.ordinal)
        ).all()
    members: dict[int | None, list[int]] = {}
    for batch_id, ordinal in rows:
        members.setdefault(batch_id, []).append(ordinal)
    return list(members.values())


def pending(ctx: StepContext) -> int:
    with ctx.store.engine.connect() as conn:
        return len(conn.execute(select(Item.id).where(Item.status == ItemStatus.PENDING)).all())


def test_a_job_is_planned_two_batches_ahead_of_its_creates(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    assert PLAN_AHEAD == 2
    job_id = new_job(ctx, write_job(tmp_path, "ahead", ITEMS, max_requests=PER_BATCH))

    assert plan(ctx, utcnow()).details == {"batches": 2}
    assert len(ctx.store.batches([BatchStatus.PLANNED])) == 2
    assert pending(ctx) == ITEMS - 2 * PER_BATCH
    # Two wait to be created: nothing more is planned, however often the step runs.
    assert plan(ctx, utcnow()).details.get("batches", 0) == 0
    assert pending(ctx) == ITEMS - 2 * PER_BATCH

    assert submit(ctx, utcnow()).details == {"created": 2}
    assert plan(ctx, utcnow()).details == {"batches": 2}
    assert pending(ctx) == ITEMS - 4 * PER_BATCH
    # Planned in parts, packed as in one go: full batches, in the items' order.
    expected = [list(range(n, n + PER_BATCH)) for n in range(0, 4 * PER_BATCH, PER_BATCH)]
    assert batch_members(ctx) == expected

    report = run_job(ctx, job_id)
    assert report.items == {"succeeded": ITEMS}
    assert batch_members(ctx) == [list(range(n, n + PER_BATCH)) for n in range(0, ITEMS, PER_BATCH)]
    assert_no_double_spend(ctx, sim, job_id)


def test_planning_without_a_limit_plans_every_batch(ctx: StepContext, tmp_path: Path) -> None:
    new_job(ctx, write_job(tmp_path, "all", ITEMS, max_requests=PER_BATCH))
    assert plan(ctx, utcnow(), ahead=None).details == {"batches": ITEMS // PER_BATCH}
    assert pending(ctx) == 0
