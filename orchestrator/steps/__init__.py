"""The steps of a job (design §2), and one cycle that runs them all in order.

``orchestrator run`` loops over :func:`run_cycle` in the foreground; the daemon
calls it from an APScheduler timer. There is no second code path.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from orchestrator.steps.context import StepContext, StepReport, utcnow
from orchestrator.steps.ingest import ingest
from orchestrator.steps.plan import plan
from orchestrator.steps.poll import poll
from orchestrator.steps.recover import recover
from orchestrator.steps.submit import submit

Step = Callable[[StepContext, datetime], StepReport]

#: Order matters only for latency: recover settles lost creates before new ones
#: go out; ingest right after poll picks up what just ended.
STEPS: tuple[Step, ...] = (recover, plan, submit, poll, ingest)


def finish_jobs(ctx: StepContext, now: datetime) -> StepReport:
    """Mark jobs done whose items are all terminal (e.g. answered from the cache)."""
    report = StepReport("finish")
    for job_id in ctx.store.active_job_ids():
        if ctx.store.finish_job_if_done(job_id, now):
            report.add("done")
    return report


def run_cycle(ctx: StepContext) -> list[StepReport]:
    """Every step once, each with a fresh ``now``."""
    return [step(ctx, utcnow()) for step in (*STEPS, finish_jobs)]


__all__ = [
    "STEPS",
    "StepContext",
    "StepReport",
    "finish_jobs",
    "ingest",
    "plan",
    "poll",
    "recover",
    "run_cycle",
    "submit",
]
