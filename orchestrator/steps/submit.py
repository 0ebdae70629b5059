"""Submit step: create planned batches, crash-safely.

1. ``mark_creating`` commits the intent (status ``creating``) BEFORE the POST.
2. The POST streams the body from the store in pages.
3. The returned batch id is recorded in a second transaction.

A create whose outcome is unknown (timeout or reset after sending, 5xx) is never
sent again blindly: the batch becomes ``unknown`` and the recover step
reconciles it by listing (docs/message-batches-api.md §8: the API takes no
idempotency key). A worker that dies between 1 and 3 leaves ``creating`` with
an expiring lease, which recover turns into ``unknown`` too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from orchestrator.api.retry import is_transient
from orchestrator.domain.planning import request_bytes
from orchestrator.domain.recovery import answered_deadline
from orchestrator.domain.states import BatchStatus
from orchestrator.errors import (
    AmbiguousCreateError,
    APIConnectionError,
    APIError,
    BadRequestError,
    RequestTooLargeError,
)
from orchestrator.steps.context import SUBMIT_RETRY_S, StepContext, StepReport, log, utcnow
from orchestrator.steps.remote import remote_state
from orchestrator.store.records import Lease

#: Batches created per run of the step; the rest wait for the next tick.
CREATES_PER_RUN = 20
BACKOFF_SCOPE = "create"
#: Step outcomes of a create that made nothing and is planned again.
DEFERRED = "deferred"
UNREACHABLE = "unreachable"
#: Step outcomes of a create held back on purpose (nothing was sent).
QUEUE_FULL = "queue_full"
PACED = "paced"


def submit(
    ctx: StepContext, now: datetime, should_stop: Callable[[], bool] = lambda: False
) -> StepReport:
    """Create the planned batches that are due, one after the other; ``should_stop``
    is asked between creates (the create under way always finishes)."""
    report = StepReport("submit")
    until = ctx.store.backoff_until(BACKOFF_SCOPE)
    if until is not None and until > now:
        report.details["backing_off"] = 1
        return report
    leases = ctx.store.claim_batches(
        [BatchStatus.PLANNED], ctx.owner, now, ctx.ttl_s, CREATES_PER_RUN, job_id=ctx.job_id
    )
    held = list(leases)
    try:
        for lease in leases:
            if should_stop():
                break
            held_back = _held_back(ctx, lease, now)
            if held_back is not None:
                report.details[held_back] = 1
                break
            outcome = _create(ctx, lease, now, report)
            # Free at once: the batch may end (and be ingested by the worker's other
            # thread, or a peer) while the next one is being created.
            held.remove(lease)
            ctx.store.release_batch(lease)
            report.add(outcome)
            if outcome in (DEFERRED, UNREACHABLE):
                report.unreachable = outcome == UNREACHABLE
                break
    finally:
        # Every claimed batch not reached when a create was deferred or an exception
        # (Ctrl-C, SIGTERM, a store error) unwound the loop: a peer or the restarted
        # worker takes them at once instead of after the lease TTL. A lease already
        # moved on (or taken over) matches no row here.
        for lease in held:
            ctx.store.release_batch(lease)
    return report


def _held_back(ctx: StepContext, lease: Lease, now: datetime) -> str | None:
    """Why this create must wait: the processing queue would overflow (the API would
    refuse it), or creates would outpace the requests-per-minute limit. Waiting costs
    no item an attempt; a batch larger than the cap alone still goes when nothing runs.
    """
    in_flight = ctx.store.requests_in_flight()
    size = ctx.store.get_batch(lease.row_id).request_count
    if in_flight and in_flight + size > ctx.settings.max_requests_in_flight:
        return QUEUE_FULL
    if ctx.store.creates_since(now - timedelta(minutes=1)) >= ctx.settings.creates_per_minute:
        return PACED
    return None


def _create(ctx: StepContext, lease: Lease, now: datetime, report: StepReport) -> str:
    if not ctx.store.mark_creating(lease, now, ctx.api.endpoint):
        return "skipped"
    outcome = "interrupted"
    try:
        outcome = _send(ctx, lease, now, report)
    finally:
        if outcome != "created":
            ctx.routes.forget(lease.row_id)
    return outcome


def _send(ctx: StepContext, lease: Lease, now: datetime, report: StepReport) -> str:
    """The create itself, its intent committed: what it made, and how that is recorded."""
    job = ctx.store.job_of_batch(lease.row_id)

    def read_routes() -> None:
        # The whole body is out: the route table is read while the API checks it, not
        # sooner (it would slow the upload; ``steps/routes.py`` says why).
        ctx.routes.read_ahead(ctx.store, lease.row_id)

    try:
        # The job's own version: its params were validated under that version's rules.
        batch = ctx.api.create(
            lambda: _body_lines(ctx, lease.row_id, then=read_routes),
            betas=job.betas,
            api_version=job.api_version,
        )
    except AmbiguousCreateError as exc:
        # Answered: whatever the API made exists now, so the listing settles it soon.
        until = answered_deadline(utcnow()) if exc.answered else None
        log.warning("batch %s: create outcome unknown (%s); will reconcile", lease.row_id, exc)
        ctx.store.mark_unknown(lease, str(exc), utcnow(), until)
        return BatchStatus.UNKNOWN
    except (BadRequestError, RequestTooLargeError) as exc:
        log.error("batch %s: the API refused the create: %s", lease.row_id, exc)
        ctx.store.mark_rejected(lease, exc.error_type or "invalid_request_error", str(exc), now)
        return BatchStatus.REJECTED
    except APIError as exc:
        if is_transient(exc):  # refused before processing (429/529/408/409, no connection)
            report.error = str(exc)
            return _defer(ctx, lease, exc, now)
        # 401/402/403/404...: refused outright, nothing was created; the user must act.
        replan(ctx, lease, str(exc), now, now)
        raise
    except BaseException:
        # Ctrl-C, SIGTERM or a bug mid-POST: the body may have arrived. Never resend
        # blindly; reconcile by listing like any other create of unknown outcome.
        ctx.store.mark_unknown(lease, "interrupted during the create", utcnow(), None)
        raise
    if not ctx.store.record_created(lease, remote_state(batch), utcnow()):
        log.warning("batch %s: lost its lease before recording %s", lease.row_id, batch.id)
        ctx.routes.forget(lease.row_id)
    else:
        ctx.routes.created(lease.row_id, batch.id)
    log.info("batch %s: created %s", lease.row_id, batch.id)
    return "created"


def replan(ctx: StepContext, lease: Lease, error: str, retry_at: datetime, now: datetime) -> bool:
    """A create that provably made nothing is planned again, due at ``retry_at``.

    If its job was canceled meanwhile (``cancel_job`` flags a create in flight),
    the batch is dropped and its items canceled instead: nothing is sent after a
    cancel. Returns whether the batch will be sent again.
    """
    if ctx.store.return_to_planned(lease, error, retry_at, now):
        return True
    if ctx.store.drop_canceled_create(lease, now):
        log.info("batch %s: dropped, its job was canceled before the create", lease.row_id)
    return False


def _defer(ctx: StepContext, lease: Lease, exc: APIError, now: datetime) -> str:
    """The create provably made nothing (refused, or the API was not reachable at
    all): plan it again, and make every worker on the store wait before the next."""
    retry_after = getattr(exc, "retry_after_s", None)
    wait = SUBMIT_RETRY_S if retry_after is None else retry_after
    until = now + timedelta(seconds=wait)
    unreachable = isinstance(exc, APIConnectionError)
    reason = f"API unreachable: {exc}" if unreachable else f"create refused: {exc}"
    replan(ctx, lease, reason, until, now)
    ctx.store.set_backoff(BACKOFF_SCOPE, until, reason)
    log.warning("batch %s: %s; sending again after %.0f s", lease.row_id, reason, wait)
    return UNREACHABLE if unreachable else DEFERRED


def _body_lines(ctx: StepContext, batch_id: int, then: Callable[[], None]) -> Iterator[bytes]:
    """The batch's request lines, from the store; ``then`` runs once the last one is
    handed over (each attempt that reads them all)."""
    for custom_id, params_json in ctx.store.request_rows(batch_id):
        yield request_bytes(custom_id, params_json)
    then()
