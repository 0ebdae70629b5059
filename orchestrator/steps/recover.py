"""Recover step: settle creates whose outcome is unknown, by listing.

A create is ``unknown`` after a timeout or reset once its body was sent, a 5xx,
or a worker that died mid-call. The API takes no idempotency key and a batch
carries no metadata, so the evidence is the list of batches: one created in the
create's window (``domain.recovery``), with its request count. :func:`reconcile`
weighs each such batch by what this store knows of it (``Store.remote_claims``):

* unclaimed, or watched for this very create: a candidate. The one created
  closest to the intent is adopted, the others are watched; the adoption stays
  tentative until ingest reads its results' custom_ids (``steps.ingest``), which
  prove it, hand it to the local batch whose requests it holds, or undo it.
  Within the store a match is exact (no two creates in flight share a request
  count: a unique index); a batch of another store sharing the API key can
  still match, hence the proof;
* proven (created by this store, read, or foreign), or claimed tentatively
  before this create's intent (it existed before the create was sent): not
  this create's;
* claimed tentatively by another batch since the intent: it may still prove to
  be this create's, so the create waits for that proof rather than being
  planned again (which would pay twice);
* nothing at all, once the create's deadline has passed: it never happened;
  plan it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from orchestrator.store.records import BatchRecord, Claim, Lease

#: How far back the listing is read at most (pages of 1,000 batches).
MAX_LIST_PAGES = 20
#: Unknown creates settled per run of the step.
SETTLES_PER_RUN = 50


class Verdict(StrEnum):
    ADOPT = "adopted"  #: A listed batch is this create's (tentatively): record its id.
    WAIT = "waiting"  #: Nothing matches yet: the create may still be processed, or a
    #: batch another create holds tentatively may prove to be this one's.
    REPLAN = "replanned"  #: Nothing matched by the deadline: the create never happened.


@dataclass(frozen=True)
class Reconciliation:
    verdict: Verdict
    chosen: MessageBatch | None = None
    others: list[MessageBatch] = field(default_factory=list)
    #: Matching batches held tentatively by other creates, whose proof is awaited.
    contested: list[MessageBatch] = field(default_factory=list)


def deadline_of(batch: BatchRecord, settings: Settings) -> datetime:
    """When an unknown create not yet listed may be declared never made."""
    assert batch.intent_at is not None  # schema: unknown implies intent_at
    if batch.reconcile_until is not None:
        return batch.reconcile_until
    return unanswered_deadline(batch.intent_at, batch.body_bytes, settings.create_timeout_s)


def reconcile(
    batch_id: int,
    request_count: int,
    intent_at: datetime,
    deadline: datetime,
    window: tuple[datetime, datetime],
    listing: Sequence[MessageBatch],
    claims: Mapping[str, Claim],
    now: datetime,
) -> Reconciliation:
    """What to do with one unknown create, given the listing of remote batches and
    what the store knows of each (see the module's docstring)."""
    start, end = window
    candidates: list[MessageBatch] = []
    contested: list[MessageBatch] = []
    for remote in listing:
        if not (start <= remote.created_at <= end and remote.request_counts.total == request_count):
            continue
        claim = claims.get(remote.id)
        if claim is None or claim.batch_id == batch_id:
            candidates.append(remote)
        elif not claim.settled and (claim.since is None or claim.since >= intent_at):
            contested.append(remote)
    if not candidates:
        waiting = contested or now <= deadline
        return Reconciliation(Verdict.WAIT if waiting else Verdict.REPLAN, contested=contested)
    chosen = min(candidates, key=lambda r: abs((r.created_at - intent_at).total_seconds()))
    others = [r for r in candidates if r is not chosen]
    return Reconciliation(Verdict.ADOPT, chosen, others, contested)


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
        claims = ctx.store.remote_claims()
        for lease, batch in zip(leases, batches, strict=True):
            report.add(_settle(ctx, lease, batch, listing, claims, now))
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
    claims: dict[str, Claim],
    now: datetime,
) -> Verdict:
    assert batch.intent_at is not None
    deadline = deadline_of(batch, ctx.settings)
    found = reconcile(
        batch.id,
        batch.request_count,
        batch.intent_at,
        deadline,
        _window(ctx, batch),
        listing,
        claims,
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
        for remote in [found.chosen, *found.others]:
            claims.setdefault(remote.id, Claim(batch.id, now, settled=False))
        ctx.store.add_duplicates(batch.id, [r.id for r in found.others], now)
        log.info("batch %s: adopted %s after a lost create", batch.id, found.chosen.id)
    elif found.contested and now > deadline:
        log.debug(
            "batch %s: waiting for the results of %s, held by other creates, to tell whose "
            "they are",
            batch.id,
            ", ".join(r.id for r in found.contested),
        )
    return found.verdict
