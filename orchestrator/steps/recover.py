"""Recover step: settle creates whose outcome is unknown, by listing.

A create is ``unknown`` after a timeout or reset once its body was sent, a 5xx,
or a worker that died mid-call. The API takes no idempotency key and a batch
carries no metadata, so the only evidence is the list of batches: one created
in the intent's time window, with our request count, that no row of this store
owns yet.

* exactly one candidate: adopt it (its results are routed by custom_id);
* none, once the window has passed: the create never happened, plan it again;
* several: adopt the one created closest to the intent and report the others
  (ownership of those can only be proven from their results' custom_ids).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestrator.api.models import MessageBatch
from orchestrator.steps.context import StepContext, StepReport, log
from orchestrator.steps.submit import remote_state
from orchestrator.store.records import BatchRecord, Lease
from orchestrator.store.tables import BatchStatus

#: How far back the listing is read at most (pages of 1,000 batches).
MAX_LIST_PAGES = 20


def recover(ctx: StepContext, now: datetime) -> StepReport:
    report = StepReport("recover")
    abandoned = ctx.store.abandoned_creates(now)
    if abandoned:
        report.add("abandoned_creates", abandoned)
    leases = ctx.store.claim_batches([BatchStatus.UNKNOWN], ctx.owner, now, ctx.ttl_s, 50)
    if not leases:
        return report
    try:
        batches = [ctx.store.get_batch(lease.row_id) for lease in leases]
        listing = _recent_batches(ctx, batches)
        owned = set(ctx.store.owned_remote_ids())
        for lease, batch in zip(leases, batches, strict=True):
            report.add(_settle(ctx, lease, batch, listing, owned, now))
    finally:
        for lease in leases:
            ctx.store.release_batch(lease)
    return report


def _window(ctx: StepContext, batch: BatchRecord) -> tuple[datetime, datetime]:
    assert batch.intent_at is not None  # schema: unknown implies intent_at
    skew = timedelta(seconds=ctx.settings.reconcile_skew_s)
    upload = timedelta(seconds=ctx.settings.request_timeout_s)
    return batch.intent_at - skew, batch.intent_at + upload + skew


def _recent_batches(ctx: StepContext, batches: list[BatchRecord]) -> list[MessageBatch]:
    """Remote batches newest first, back to the oldest window start."""
    oldest = min(_window(ctx, b)[0] for b in batches)
    seen: list[MessageBatch] = []
    for remote in ctx.api.iter_batches(limit=1000):
        if remote.created_at < oldest or len(seen) >= MAX_LIST_PAGES * 1000:
            break
        seen.append(remote)
    return seen


def _settle(
    ctx: StepContext,
    lease: Lease,
    batch: BatchRecord,
    listing: list[MessageBatch],
    owned: set[str],
    now: datetime,
) -> str:
    start, end = _window(ctx, batch)
    candidates = [
        r
        for r in listing
        if r.id not in owned
        and start <= r.created_at <= end
        and r.request_counts.total == batch.request_count
    ]
    if not candidates:
        if now <= end:
            return "waiting"
        ctx.store.return_to_planned(lease, "reconciled: the create never happened", now, now)
        log.info("batch %s: no remote batch matches the lost create; planning it again", batch.id)
        return "replanned"
    assert batch.intent_at is not None
    intent = batch.intent_at
    chosen = min(candidates, key=lambda r: abs((r.created_at - intent).total_seconds()))
    if len(candidates) > 1:
        others = ", ".join(r.id for r in candidates if r is not chosen)
        log.warning(
            "batch %s: several remote batches match (%s); adopted %s, possible duplicates: %s",
            batch.id,
            len(candidates),
            chosen.id,
            others,
        )
    ctx.store.record_created(lease, remote_state(chosen), now)
    owned.add(chosen.id)
    log.info("batch %s: adopted %s after a lost create", batch.id, chosen.id)
    return "adopted"
