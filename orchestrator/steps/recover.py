"""Recover step: settle creates whose outcome is unknown, by listing.

A create is ``unknown`` after a timeout or reset once its body was sent, a 5xx,
or a worker that died mid-call. The API takes no idempotency key and a batch
carries no metadata, so the only evidence is the list of batches: one created
in the intent's time window, with our request count, that no row of this store
owns yet (:func:`reconcile` decides, purely):

* exactly one candidate: adopt it (its results are routed by custom_id);
* none, once the window has passed: the create never happened, plan it again;
* several: adopt the one created closest to the intent and report the others
  (ownership of those can only be proven from their results' custom_ids).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from orchestrator.api.models import MessageBatch
from orchestrator.domain.states import BatchStatus
from orchestrator.steps.context import StepContext, StepReport, log
from orchestrator.steps.remote import remote_state
from orchestrator.steps.submit import replan
from orchestrator.store.records import BatchRecord, Lease

#: How far back the listing is read at most (pages of 1,000 batches).
MAX_LIST_PAGES = 20
#: Unknown creates settled per run of the step.
SETTLES_PER_RUN = 50


class Verdict(StrEnum):
    ADOPT = "adopted"  #: A listed batch is this create's: record its id.
    WAIT = "waiting"  #: Nothing matches yet, but the window is still open.
    REPLAN = "replanned"  #: Nothing matched in the whole window: the create never happened.


@dataclass(frozen=True)
class Reconciliation:
    verdict: Verdict
    chosen: MessageBatch | None = None
    others: list[MessageBatch] = field(default_factory=list)


def create_window(intent_at: datetime, upload_s: float, skew_s: float) -> tuple[datetime, datetime]:
    """When a batch made by this create can have been stamped ``created_at``."""
    skew = timedelta(seconds=skew_s)
    return intent_at - skew, intent_at + timedelta(seconds=upload_s) + skew


def reconcile(
    request_count: int,
    intent_at: datetime,
    window: tuple[datetime, datetime],
    listing: Sequence[MessageBatch],
    owned: Collection[str],
    now: datetime,
) -> Reconciliation:
    """What to do with one unknown create, given the listing of remote batches."""
    start, end = window
    candidates = [
        r
        for r in listing
        if r.id not in owned
        and start <= r.created_at <= end
        and r.request_counts.total == request_count
    ]
    if not candidates:
        return Reconciliation(Verdict.WAIT if now <= end else Verdict.REPLAN)
    chosen = min(candidates, key=lambda r: abs((r.created_at - intent_at).total_seconds()))
    return Reconciliation(Verdict.ADOPT, chosen, [r for r in candidates if r is not chosen])


def recover(ctx: StepContext, now: datetime) -> StepReport:
    report = StepReport("recover")
    abandoned = ctx.store.abandoned_creates(now, ctx.job_id)
    if abandoned:
        report.add("abandoned_creates", abandoned)
    leases = ctx.store.claim_batches(
        [BatchStatus.UNKNOWN], ctx.owner, now, ctx.ttl_s, SETTLES_PER_RUN, job_id=ctx.job_id
    )
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
    settings = ctx.settings
    return create_window(batch.intent_at, settings.request_timeout_s, settings.reconcile_skew_s)


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
) -> Verdict:
    assert batch.intent_at is not None
    found = reconcile(
        batch.request_count, batch.intent_at, _window(ctx, batch), listing, owned, now
    )
    if found.verdict is Verdict.REPLAN:
        replan(ctx, lease, "reconciled: the create never happened", now, now)
        log.info("batch %s: no remote batch matches the lost create; planning it again", batch.id)
    elif found.chosen is not None:
        if found.others:
            log.warning(
                "batch %s: %s remote batches match; adopted %s, possible duplicates: %s",
                batch.id,
                len(found.others) + 1,
                found.chosen.id,
                ", ".join(r.id for r in found.others),
            )
        ctx.store.record_created(lease, remote_state(found.chosen), now)
        owned.add(found.chosen.id)
        log.info("batch %s: adopted %s after a lost create", batch.id, found.chosen.id)
    return found.verdict
