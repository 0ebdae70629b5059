"""Poll step: refresh open batches from paginated list calls, and send cancels.

One list page covers up to 1,000 batches (newest first), so polling costs one
call per thousand open batches instead of one GET each: 2,000 batches in flight
take two calls a tick. Pages are read until every open batch was seen or the
listing is past the oldest of them; when other batches (of other tools on the
same workspace) push some open batches far down the listing, polling jumps
there instead of reading every page between (see :class:`_Listing`). A batch
the pages did not show is retrieved by id.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from orchestrator.api.models import MessageBatch, MessageBatchPage
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
    betas = _betas(ctx)
    listing = _Listing(ctx, open_batches, now, betas)
    listing.read()
    if listing.retrieved:
        report.add("retrieved", listing.retrieved)
    updates: list[tuple[BatchRecord, RemoteState]] = []
    for batch in open_batches:
        assert batch.remote_id is not None  # schema: open statuses have a remote id
        if batch.remote_id in listing.seen:
            remote = listing.seen[batch.remote_id]
        else:
            remote = _retrieve(ctx, batch, now, betas(batch.job_id))
            report.add("retrieved")
        if remote is None:
            report.add("gone")
            continue
        state = remote_state(remote)
        if batch.cancel_requested and state.processing_status == ProcessingStatus.IN_PROGRESS:
            state = _cancel(ctx, batch.remote_id, state, betas(batch.job_id))
            report.add("cancel_sent")
        updates.append((batch, state))
    # One transaction for the whole tick, not one per batch: thousands of open
    # batches are written every poll interval. A crash before it loses nothing
    # the next tick does not read again.
    applied = ctx.store.update_remote_states([(b.id, state) for b, state in updates], now)
    for batch, state in updates:
        if batch.id in applied and state.status is not batch.status:
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


def pages_to_reach(page: Sequence[MessageBatch], created_at: datetime) -> int:
    """About how many more pages the listing needs to reach a batch created at ``created_at``.

    Estimated from the page just read: the batches it lists per second, times the
    time still between its last batch and ``created_at``. The guess only chooses
    between paging on and jumping (see :class:`_Listing`); neither misses a batch.
    """
    if not page:
        return 1
    newest, oldest = page[0].created_at, page[-1].created_at
    behind_s = (oldest - created_at).total_seconds()
    if behind_s <= 0:
        return 1  # on the next page, if it was not on this one
    span_s = (newest - oldest).total_seconds()
    if span_s <= 0:
        return sys.maxsize  # a whole page created in one instant: no telling how far
    between = behind_s * (len(page) - 1) / span_s
    return int(between) // LIST_PAGE_SIZE + 1


class _Listing:
    """What the API says about the open batches, for as few calls as the listing allows.

    Pages are read newest first. While an open batch is unseen and the listing
    has not gone past it, the next call is the cheaper of two: the next page, or a
    jump: the newest unseen batch is retrieved by id and the page right after it
    (``after_id``, a cursor of a batch that exists) lists the open batches below
    it. A jump costs two calls (one if no other batch is left to find), so it is
    taken when more pages than that lie between, as guessed by
    :func:`pages_to_reach` from each page read afresh. Both read the same
    listing: a wrong guess costs a call, never a batch (a guess too short pages
    on, as without jumps), and what the listing missed is retrieved by id
    afterwards.
    """

    def __init__(
        self,
        ctx: StepContext,
        open_batches: list[BatchRecord],
        now: datetime,
        betas: Callable[[int], tuple[str, ...]],
    ) -> None:
        self._ctx, self._now, self._betas = ctx, now, betas
        self._skew_s = ctx.settings.reconcile_skew_s
        self._wanted = len(open_batches)
        self._unseen = {b.remote_id: b for b in open_batches if b.remote_id is not None}
        #: What the API said about each batch found (None: gone, already recorded so).
        self.seen: dict[str, MessageBatch | None] = {}
        #: How many of them were retrieved by id.
        self.retrieved = 0

    def read(self) -> None:
        page = self._page(None)
        while page.has_more and page.data and page.last_id is not None:
            target = self._next_target(page.data[-1].created_at)
            if target is None:
                return
            assert target.remote_id is not None
            assert target.remote_created_at is not None
            jump_cost = 2 if len(self._unseen) > 1 else 1
            if pages_to_reach(page.data, target.remote_created_at) <= jump_cost:
                page = self._page(page.last_id)
                continue
            remote = _retrieve(self._ctx, target, self._now, self._betas(target.job_id))
            self.retrieved += 1
            self._found(target.remote_id, remote)
            if remote is not None and jump_cost > 1:
                page = self._page(target.remote_id)
            # else: a gone batch is no cursor; the next target is chosen on this page

    def _page(self, after_id: str | None) -> MessageBatchPage:
        page = self._ctx.api.list_page(limit=LIST_PAGE_SIZE, after_id=after_id)
        for remote in page.data:
            if remote.id in self._unseen:
                self._found(remote.id, remote)
        return page

    def _found(self, remote_id: str, remote: MessageBatch | None) -> None:
        del self._unseen[remote_id]
        self.seen[remote_id] = remote

    def _next_target(self, listed_at: datetime) -> BatchRecord | None:
        """The newest unseen batch that pages older than ``listed_at`` may still show;
        None when the listing is done with every open batch.

        A batch created after ``listed_at`` (less the skew) should have shown
        already: the listing lags, or the batch is gone; either way it is retrieved
        by id. A batch with no known creation time can't be looked for in pages.
        """
        cutoff = listing_cutoff(self._unseen.values(), self._skew_s)
        if listing_done(len(self.seen), self._wanted, listed_at, cutoff):
            return None
        skew = timedelta(seconds=self._skew_s)
        ahead = [
            b
            for b in self._unseen.values()
            if b.remote_created_at is not None and b.remote_created_at - skew <= listed_at
        ]
        return max(ahead, key=lambda b: (b.remote_created_at, b.id), default=None)


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
