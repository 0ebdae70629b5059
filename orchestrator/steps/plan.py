"""Plan step: put pending items (new ones and retries) into batches under the limits.

The response cache answers never-sent items first, and items that repeat another's
params (``dedupe``) take its outcome once it has one: only the first is sent. Each batch is one
transaction (batch row, its requests, its items moved to ``queued``), under a
lease on the job so two daemons never plan the same items.
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.domain.planning import BatchPlanner, PlannedBatch, make_custom_id, request_size
from orchestrator.steps.context import StepContext, StepReport, log, utcnow
from orchestrator.store.records import JobRecord, Lease, PlannedRequest

#: Pending items read per transaction: ids, attempts and sizes only, a few dozen bytes each.
PAGE_ROWS = 5000


def plan(ctx: StepContext, now: datetime) -> StepReport:
    report = StepReport("plan")
    for job_id in ctx.store.jobs_with_pending_items(ctx.job_id):
        lease = ctx.store.claim_job(job_id, ctx.owner, now, ctx.ttl_s)
        if lease is None:
            continue  # another daemon is planning it
        try:
            job = ctx.store.get_job(job_id)
            answered = 0
            if job.use_cache:
                answered, _saved = ctx.store.apply_response_cache(job_id, now, ctx.api.endpoint)
                if answered:
                    report.add("cached", answered)
            shared = ctx.store.share_leaders_outcomes(job_id, now)
            if shared:
                report.add("shared", shared)
            report.add("batches", _plan_job(ctx, lease, job, now))
            # Answers taken from the store may have finished the job with nothing sent.
            if (answered or shared) and ctx.store.finish_job_if_done(job_id, utcnow()):
                log.info("job %s (%s): every item is finished", job.name, job.id)
        finally:
            ctx.store.release_job(lease)
    return report


def _plan_job(ctx: StepContext, lease: Lease, job: JobRecord, now: datetime) -> int:
    tag = ctx.store.store_tag()
    planner = BatchPlanner(job.max_requests, job.max_bytes)
    open_requests: dict[int, PlannedRequest] = {}
    made, after = 0, 0
    # The planner needs each request's size, not its bytes: the store measures the params.
    while page := ctx.store.pending_sizes(job.id, after, PAGE_ROWS):
        for item_id, attempts, params_bytes in page:
            attempt = attempts + 1
            custom_id = make_custom_id(tag, item_id, attempt)
            open_requests[item_id] = PlannedRequest(item_id, attempt, custom_id)
            closed = planner.add(item_id, request_size(custom_id, params_bytes))
            if closed is not None:
                made += _record(ctx, lease, closed, open_requests, now)
        after = page[-1][0]
    last = planner.finish()
    if last is not None:
        made += _record(ctx, lease, last, open_requests, now)
    return made


def _record(
    ctx: StepContext,
    lease: Lease,
    batch: PlannedBatch,
    open_requests: dict[int, PlannedRequest],
    now: datetime,
) -> int:
    requests = [open_requests.pop(item_id) for item_id in batch.request_ids]
    batch_id = ctx.store.add_planned_batch(lease, requests, batch.body_bytes, now)
    if batch_id is None:
        log.warning(
            "job %s: planning lost its lease or an item changed; will re-plan", lease.row_id
        )
        return 0
    log.info("job %s: planned batch %s with %s requests", lease.row_id, batch_id, len(requests))
    ctx.on_planned()
    return 1
