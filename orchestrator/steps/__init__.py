"""The steps of a job, and one cycle that runs them all in order.

``orchestrator run`` loops over :func:`run_cycle` in the foreground; the daemon
calls it from an APScheduler timer. There is no second code path.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from orchestrator.api.retry import is_transient
from orchestrator.steps.context import StepContext, StepReport, log, utcnow
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
            report.add("finished")
    return report


def run_cycle(
    ctx: StepContext, should_stop: Callable[[], bool] = lambda: False
) -> list[StepReport]:
    """Every step once, each with a fresh ``now``; stops between steps when asked.

    A transient failure (``api.retry.is_transient``: the same verdict the client
    retries on) ends only its own step for this cycle; anything else (a bad key,
    a missing permission, a bug) propagates to the caller.
    """
    reports: list[StepReport] = []
    for step in (*STEPS, finish_jobs):
        if should_stop():
            break
        try:
            reports.append(step(ctx, utcnow()))
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("%s step failed, will run again next cycle: %s", step.__name__, exc)
            reports.append(StepReport(step.__name__, details={"skipped_transient": 1}))
    return reports


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
