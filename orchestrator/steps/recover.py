"""Recover step: settle creates whose outcome is unknown, by listing.

A create is ``unknown`` after a timeout or reset once its body was sent, a 5xx,
or a worker that died mid-call. The API takes no idempotency key and a batch
carries no metadata, so the evidence is the list of batches: one created in the
create's window (``domain.recovery``), with its request count, that is neither
held by a row of this store nor proven foreign (:func:`reconcile` decides):

* a candidate: adopt the one created closest to the intent. No other create of
  this store in flight has the same request count (a unique index), so within
  the store the match is exact; a batch of another store sharing the API key
  could still match, so the adoption stays tentative until ingest reads its
  results' custom_ids (which carry this store's tag) and undoes a wrong one;
* none, once the create's deadline has passed: it never happened; plan it again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from orchestrator.api.models import MessageBatch
from orchestrator.domain.recovery import match_window, unanswered_deadline
from orchestrator.domain.states import BatchStatus
from orchestrator.settings import Settings
from orchestrator.steps.context import StepContext, StepReport, log
from orchestrator.steps.leases import free_dead_local_leases
from orchestrator.steps.remote import remote_state
from orchestrator.steps.submit import replan
from orchestrator.store.records import BatchRecord, Lease

#: How far back the listing is read at most (pages of 1,000 batches).
MAX_LIST_PAGES = 20
#: Unknown creates settled per run of the step.
SETTLES_PER_RUN = 50


class Verdict(StrEnum):
    ADOPT = "adopted"  #: A listed batch is this create's (tentatively): record its id.
    WAIT = "waiting"  #: Nothing matches yet, and the create may still be processed.
    REPLAN = "replanned"  #: Nothing matched by the deadline: the create never happened.


@dataclass(frozen=True)
class Reconciliation:
    verdict: Verdict
    chosen: MessageBatch | None = None
    others: list[MessageBatch] = field(default_factory=list)


def deadline_of(batch: BatchRecord, settings: Settings) -> datetime:
    """When an unknown create not yet listed may be declared never made."""
    assert batch.intent_at is not None  # schema: unknown implies intent_at
    if batch.reconcile_until is not None:
        return batch.reconcile_until
    return unanswered_deadline(batch.intent_at, batch.body_bytes, settings.create_timeout_s)


def reconcile(
    request_count: int,
    intent_at: datetime,
    deadline: datetime,
    window: tuple[datetime, datetime],
    listing: Sequence[MessageBatch],
    excluded: Collection[str],
    now: datetime,
) -> Reconciliation:
    """What to do with one unknown create, given the listing of remote batches."""
    start, end = window
    candidates = [
        r
        for r in listing
        if r.id not in excluded
        and start <= r.created_at <= end
        and r.request_counts.total == request_count
    ]
    if not candidates:
        return Reconciliation(Verdict.WAIT if now <= deadline else Verdict.REPLAN)
    chosen = min(candidates, key=lambda r: abs((r.created_at - intent_at).total_seconds()))
    return Reconciliation(Verdict.ADOPT, chosen, [r for r in candidates if r is not chosen])


def recover(ctx: StepContext, now: datetime) -> StepReport:
    report = StepReport("recover")
    freed = free_dead_local_leases(ctx.store, ctx.owner, now)
    if freed:
        report.add("freed_leases", freed)
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
        excluded = set(ctx.store.owned_remote_ids()) | ctx.store.foreign_remote_ids()
        for lease, batch in zip(leases, batches, strict=True):
            report.add(_settle(ctx, lease, batch, listing, excluded, now))
    finally:
        for lease in leases:
            ctx.store.release_batch(lease)
    return report


def _window(ctx: StepContext, batch: BatchRecord) -> tuple[datetime, datetime]:
    assert batch.intent_at is not None
    deadline = deadline_of(batch, ctx.settings)
    return match_window(batch.intent_at, deadline, ctx.settings.reconcile_skew_s)


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
    excluded: set[str],
    now: datetime,
) -> Verdict:
    assert batch.intent_at is not None
    deadline = deadline_of(batch, ctx.settings)
    found = reconcile(
        batch.request_count,
        batch.intent_at,
        deadline,
        _window(ctx, batch),
        listing,
        excluded,
        now,
    )
    if found.verdict is Verdict.REPLAN:
        replan(ctx, lease, "reconciled: the create never happened", now, now)
        log.info("batch %s: no remote batch matches the lost create; planning it again", batch.id)
    elif found.chosen is not None:
        if found.others:
            log.warning(
                "batch %s: %s remote batches match; adopted %s, also matching: %s",
                batch.id,
                len(found.others) + 1,
                found.chosen.id,
                ", ".join(r.id for r in found.others),
            )
        if not ctx.store.record_created(lease, remote_state(found.chosen), now, adopted=True):
            log.warning(
                "batch %s: %s was taken meanwhile; will look again", batch.id, found.chosen.id
            )
            return Verdict.WAIT
        excluded.add(found.chosen.id)
        ctx.store.add_duplicates(batch.id, [r.id for r in found.others])
        log.info("batch %s: adopted %s after a lost create", batch.id, found.chosen.id)
    return found.verdict
