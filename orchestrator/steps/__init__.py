"""The steps of a job, and one cycle that runs them all in order.

``orchestrator run`` loops over :func:`run_cycle` in the foreground; the daemon
calls it from an APScheduler timer. There is no second code path.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

from orchestrator.api.retry import is_transient
from orchestrator.errors import APIConnectionError
from orchestrator.steps.context import StepContext, StepReport, log, utcnow
from orchestrator.steps.duplicates import duplicates
from orchestrator.steps.ingest import ingest
from orchestrator.steps.plan import plan
from orchestrator.steps.poll import poll
from orchestrator.steps.recover import recover
from orchestrator.steps.submit import submit

Step = Callable[[StepContext, datetime], StepReport]
#: The detail of a step's report that says a transient failure cut this run short.
SKIPPED = "skipped_transient"

#: Order matters only for latency: recover settles lost creates before new ones
#: go out; ingest right after poll picks up what just ended.
STEPS: tuple[Step, ...] = (recover, plan, submit, poll, ingest, duplicates)


def free_own_leases(ctx: StepContext, now: datetime) -> StepReport:  # noqa: ARG001 - a step
    """Free what this worker still holds from a step an outage interrupted.

    Between cycles none of its steps runs, so any lease it holds is left over (its
    release failed with the store); without this, the heartbeat would keep renewing
    it and nobody, this worker included, could take that work again.
    """
    report = StepReport("leases")
    freed = ctx.store.release_holder(ctx.owner)
    if freed:
        log.warning("freed %s lease(s) left over from an interrupted step", freed)
        report.add("freed", freed)
    return report


def finish_jobs(ctx: StepContext, now: datetime) -> StepReport:
    """Mark jobs done whose items are all terminal (e.g. answered from the cache)."""
    report = StepReport("finish")
    for job_id in ctx.store.active_job_ids(ctx.job_id):
        if ctx.store.finish_job_if_done(job_id, now):
            log.info("job %s: every item is finished", job_id)
            report.add("finished")
    return report


def run_cycle(
    ctx: StepContext,
    should_stop: Callable[[], bool] = lambda: False,
    *,
    submitter: Step | None = None,
) -> list[StepReport]:
    """Every step once, each with a fresh ``now``; stops between steps when asked.

    ``submitter`` stands in for the submit step: ``BackgroundSubmit.submit`` of
    ``steps/background.py``, whose thread creates batches while this one plans,
    polls and ingests. Each step runs through :func:`run_step`.
    """
    reports: list[StepReport] = []
    steps = STEPS if submitter is None else tuple(submitter if s is submit else s for s in STEPS)
    for step in (free_own_leases, *steps, finish_jobs):
        if should_stop():
            break
        reports.append(run_step(ctx, step.__name__, partial(_call, step, ctx)))
    return reports


def _call(step: Step, ctx: StepContext) -> StepReport:
    return step(ctx, utcnow())


def run_step(ctx: StepContext, name: str, call: Callable[[], StepReport]) -> StepReport:
    """One run of the step ``name``.

    A transient failure (``api.retry.is_transient``: the same verdict the client
    retries on) ends only this run of the step, and is logged once until that step
    succeeds again; anything else (a bad key, a missing permission, a bug)
    propagates to the caller.
    """
    try:
        report = call()
    except Exception as exc:
        if not is_transient(exc):
            raise
        return _skipped(ctx, name, exc)
    if name in ctx.failing_steps:
        ctx.failing_steps.discard(name)
        log.info("%s step works again", name)
    return report


def _skipped(ctx: StepContext, name: str, exc: Exception) -> StepReport:
    if name not in ctx.failing_steps:
        ctx.failing_steps.add(name)
        log.warning("%s step failed, will run again next cycle: %s", name, exc)
    unreachable = isinstance(exc, APIConnectionError)
    return StepReport(name, details={SKIPPED: 1}, unreachable=unreachable, error=str(exc))


__all__ = [
    "SKIPPED",
    "STEPS",
    "StepContext",
    "StepReport",
    "duplicates",
    "finish_jobs",
    "ingest",
    "plan",
    "poll",
    "recover",
    "run_cycle",
    "run_step",
    "submit",
]
