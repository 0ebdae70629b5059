"""Poll step: refresh open batches from paginated list calls, and send cancels.

One list page covers up to 1,000 batches (newest first), so polling costs one
call per thousand open batches instead of one GET each; a batch the pages did
not show (older than the pages read) is retrieved by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from orchestrator.api.models import MessageBatch
from orchestrator.domain.states import OPEN_REMOTE_BATCH_STATUSES, BatchStatus, ProcessingStatus
from orchestrator.errors import BadRequestError, NotFoundError
from orchestrator.steps.context import StepContext, StepReport, log
from orchestrator.steps.remote import gone_state, remote_state
from orchestrator.store.records import BatchRecord, RemoteState

#: Batches per list page (the API's maximum, §4.1).
LIST_PAGE_SIZE = 1000


def poll(ctx: StepContext, now: datetime) -> StepReport:
    report = StepReport("poll")
    open_batches = ctx.store.batches(OPEN_REMOTE_BATCH_STATUSES, ctx.job_id)
    if not open_batches:
        return report
    found = _list_open(ctx, open_batches)
    betas = _betas(ctx)
    for batch in open_batches:
        assert batch.remote_id is not None  # schema: open statuses have a remote id
        remote = found.get(batch.remote_id)
        if remote is None:
            remote = _retrieve(ctx, batch, now, betas(batch.job_id))
            report.add("retrieved")
        if remote is None:
            report.add("gone")
            continue
        state = remote_state(remote)
        if batch.cancel_requested and state.processing_status == ProcessingStatus.IN_PROGRESS:
            state = _cancel(ctx, batch.remote_id, state, betas(batch.job_id))
            report.add("cancel_sent")
        changed = state.status is not batch.status
        if ctx.store.update_remote_state(batch.id, state, now) and changed:
            log.info("batch %s (%s): %s", batch.id, batch.remote_id, _describe(state))
            if state.status is BatchStatus.ENDED:
                report.add(BatchStatus.ENDED)
    report.add("polled", len(open_batches))
    return report


def _describe(state: RemoteState) -> str:
    if state.status is not BatchStatus.ENDED:
        return state.status.value
    return (
        f"ended: {state.succeeded} succeeded, {state.errored} errored, "
        f"{state.canceled} canceled, {state.expired} expired"
    )


def cancel_now(ctx: StepContext, job_id: int, now: datetime) -> int:
    """Send the cancels a job's running batches wait for, without waiting for a poll.

    Returns how many of its batches the API now has canceling (or already ended).
    Creates still in flight are canceled once they are reconciled (next poll).
    """
    settled = 0
    betas = ctx.store.get_job(job_id).betas
    for batch in ctx.store.batches(OPEN_REMOTE_BATCH_STATUSES, job_id):
        if not batch.cancel_requested:
            continue
        assert batch.remote_id is not None
        state = _retrieve_state(ctx, batch.remote_id, betas)
        if state is None:
            continue  # gone: the next poll records it
        if state.processing_status == ProcessingStatus.IN_PROGRESS:
            state = _cancel(ctx, batch.remote_id, state, betas)
        ctx.store.update_remote_state(batch.id, state, now)
        settled += 1
    return settled


def _betas(ctx: StepContext) -> Callable[[int], tuple[str, ...]]:
    """Each job's beta flags (sent on the calls that read its batches), looked up once."""
    known: dict[int, tuple[str, ...]] = {}

    def betas(job_id: int) -> tuple[str, ...]:
        if job_id not in known:
            known[job_id] = ctx.store.get_job(job_id).betas
        return known[job_id]

    return betas


def _cancel(
    ctx: StepContext, remote_id: str, listed: RemoteState, betas: tuple[str, ...]
) -> RemoteState:
    try:
        return remote_state(ctx.api.cancel(remote_id, betas=betas))
    except BadRequestError:
        # It ended between the list call and the cancel (§6.3: an ended batch
        # can't be canceled, 400): take its state as it is now.
        log.info("batch %s ended before its cancel arrived", remote_id)
        fresh = _retrieve_state(ctx, remote_id, betas)
        return listed if fresh is None else fresh


def _retrieve_state(ctx: StepContext, remote_id: str, betas: tuple[str, ...]) -> RemoteState | None:
    try:
        return remote_state(ctx.api.retrieve(remote_id, betas=betas))
    except NotFoundError:
        return None  # deleted meanwhile: the next poll handles it as gone


def listing_cutoff(open_batches: Iterable[BatchRecord], skew_s: float) -> datetime | None:
    """How far back the newest-first listing must go to show every open batch.

    A batch listed older than this is before all of them (clocks may differ by
    ``skew_s``); None when no creation time is known. What the listing missed is
    retrieved by id.
    """
    known = [b.remote_created_at for b in open_batches if b.remote_created_at is not None]
    return min(known) - timedelta(seconds=skew_s) if known else None


def listing_done(found: int, wanted: int, created_at: datetime, cutoff: datetime | None) -> bool:
    """Stop reading pages once every wanted batch was seen, or the listing is past them."""
    return found >= wanted or (cutoff is not None and created_at < cutoff)


def _list_open(ctx: StepContext, open_batches: list[BatchRecord]) -> dict[str, MessageBatch]:
    wanted = {b.remote_id for b in open_batches}
    cutoff = listing_cutoff(open_batches, ctx.settings.reconcile_skew_s)
    found: dict[str, MessageBatch] = {}
    for remote in ctx.api.iter_batches(limit=LIST_PAGE_SIZE):
        if remote.id in wanted:
            found[remote.id] = remote
        if listing_done(len(found), len(wanted), remote.created_at, cutoff):
            break
    return found


def _retrieve(
    ctx: StepContext, batch: BatchRecord, now: datetime, betas: tuple[str, ...]
) -> MessageBatch | None:
    assert batch.remote_id is not None
    try:
        return ctx.api.retrieve(batch.remote_id, betas=betas)
    except NotFoundError:
        # Deleted on the API side while we still waited for it: nothing to download.
        log.warning("batch %s (%s) is gone from the API", batch.id, batch.remote_id)
        ctx.store.update_remote_state(batch.id, gone_state(batch, now), now)
        return None
