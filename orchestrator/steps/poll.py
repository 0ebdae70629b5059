"""Poll step: refresh open batches from paginated list calls, and send cancels.

One list page covers up to 1,000 batches (newest first), so polling costs one
call per thousand open batches instead of one GET each; a batch the pages did
not show (older than the pages read) is retrieved by id.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestrator.api.models import MessageBatch
from orchestrator.errors import BadRequestError, NotFoundError
from orchestrator.steps.context import StepContext, StepReport, log
from orchestrator.steps.submit import remote_state
from orchestrator.store.records import BatchRecord, RemoteState
from orchestrator.store.tables import BatchStatus

OPEN = (BatchStatus.IN_PROGRESS, BatchStatus.CANCELING)


def poll(ctx: StepContext, now: datetime) -> StepReport:
    report = StepReport("poll")
    open_batches = ctx.store.batches(OPEN)
    if not open_batches:
        return report
    found = _list_open(ctx, open_batches)
    for batch in open_batches:
        assert batch.remote_id is not None  # schema: open statuses have a remote id
        remote = found.get(batch.remote_id)
        if remote is None:
            remote = _retrieve(ctx, batch, now)
            report.add("retrieved")
        if remote is None:
            report.add("gone")
            continue
        state = remote_state(remote)
        if batch.cancel_requested and state.processing_status == "in_progress":
            state = _cancel(ctx, batch.remote_id, state)
            report.add("cancel_sent")
        if (
            ctx.store.update_remote_state(batch.id, state, now)
            and state.processing_status == "ended"
        ):
            report.add("ended")
    report.add("polled", len(open_batches))
    return report


def _cancel(ctx: StepContext, remote_id: str, listed: RemoteState) -> RemoteState:
    try:
        return remote_state(ctx.api.cancel(remote_id))
    except BadRequestError:
        # It ended between the list call and the cancel (§6.3: an ended batch
        # can't be canceled, 400): take its state as it is now.
        log.info("batch %s ended before its cancel arrived", remote_id)
        fresh = _retrieve_state(ctx, remote_id)
        return listed if fresh is None else fresh


def _retrieve_state(ctx: StepContext, remote_id: str) -> RemoteState | None:
    try:
        return remote_state(ctx.api.retrieve(remote_id))
    except NotFoundError:
        return None  # deleted meanwhile: the next poll handles it as gone


def _list_open(ctx: StepContext, open_batches: list[BatchRecord]) -> dict[str, MessageBatch]:
    wanted = {b.remote_id for b in open_batches}
    known = [b.remote_created_at for b in open_batches if b.remote_created_at is not None]
    oldest = min(known) - timedelta(seconds=ctx.settings.reconcile_skew_s) if known else None
    found: dict[str, MessageBatch] = {}
    for remote in ctx.api.iter_batches(limit=1000):
        if remote.id in wanted:
            found[remote.id] = remote
        if len(found) == len(wanted) or (oldest is not None and remote.created_at < oldest):
            break
    return found


def _retrieve(ctx: StepContext, batch: BatchRecord, now: datetime) -> MessageBatch | None:
    assert batch.remote_id is not None
    try:
        return ctx.api.retrieve(batch.remote_id)
    except NotFoundError:
        # Deleted on the API side while we still waited for it: nothing to download.
        log.warning("batch %s (%s) is gone from the API", batch.id, batch.remote_id)
        gone = RemoteState(
            remote_id=batch.remote_id,
            processing_status="ended",
            created_at=batch.remote_created_at or now,
            expires_at=None,
            ended_at=now,
            archived_at=None,
            results_url=None,
            succeeded=0,
            errored=0,
            canceled=0,
            expired=0,
            processing=0,
        )
        ctx.store.update_remote_state(batch.id, gone, now)
        return None
