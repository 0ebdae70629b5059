"""What happens to a job, as typed events: an item finished, a batch changed, progress,
the end. Read them in a loop (``Job.events()``) or hand a :class:`JobEventHandler`
to ``Job.until_done`` / ``Job.watch``, in the style of the SDK's stream helpers.

Events are derived from the store after each cycle, so a process that only watches
(a notebook observing a daemon) sees the same ones as the process that drives.
Each item's :class:`ItemFinished` comes once per watch: a job reopened after a
restart reports its already-finished items again, first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.domain.states import BatchStatus, ItemStatus
from orchestrator.store.queries import Store
from orchestrator.store.records import FinishedItem, JobReport

#: How far back each look for finished items reaches past the previous one, so an item
#: resolved by another process whose clock runs a little behind is not missed.
CLOCK_MARGIN = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class ItemFinished:
    """An item reached its final state (succeeded, failed or canceled)."""

    item_id: int
    key: str
    status: ItemStatus
    attempts: int
    error_type: str | None


@dataclass(frozen=True, slots=True)
class BatchChanged:
    """A batch of the job was planned, created, ended, ingested... (``status`` is new)."""

    batch_id: int
    remote_id: str | None
    status: BatchStatus
    request_count: int


@dataclass(frozen=True, slots=True)
class Progress:
    """The job's counts after a cycle (items by state, cost, batches)."""

    report: JobReport


@dataclass(frozen=True, slots=True)
class Ended:
    """The job is done or canceled, and nothing of it is in flight (the last event)."""

    report: JobReport


Event = ItemFinished | BatchChanged | Progress | Ended


class JobEventHandler:
    """Subclass and override what you need; every method does nothing by default.

    An exception raised by a handler method stops the job's loop (the job itself is
    safe: run ``until_done`` again to resume).
    """

    def on_item(self, item: ItemFinished) -> None:
        """An item reached its final state (once per item per watch)."""

    def on_batch(self, batch: BatchChanged) -> None:
        """A batch was planned, created, ended, ingested... (once per change seen)."""

    def on_progress(self, report: JobReport) -> None:
        """After each cycle: the job's counts."""

    def on_exception(self, exc: BaseException) -> None:
        """The loop failed with ``exc`` (it is raised again after this call)."""

    def on_end(self, report: JobReport) -> None:
        """The job is over (once)."""

    def dispatch(self, event: Event) -> None:
        """Call the method that handles ``event``."""
        if isinstance(event, ItemFinished):
            self.on_item(event)
        elif isinstance(event, BatchChanged):
            self.on_batch(event)
        elif isinstance(event, Progress):
            self.on_progress(event.report)
        else:
            self.on_end(event.report)


class EventTracker:
    """Turns successive looks at a job in the store into the events between them."""

    def __init__(self, store: Store, job_id: int) -> None:
        self.store = store
        self.job_id = job_id
        self._seen = bytearray()  # one byte per item ordinal: 1 once reported
        self._batches: dict[int, BatchStatus] = {}
        self._since: datetime | None = None

    def events(self, report: JobReport, now: datetime) -> Iterator[Event]:
        """The events since the previous call, given the job's latest report."""
        since = None if self._since is None else self._since - CLOCK_MARGIN
        self._since = now
        for batch in self.store.batches(list(BatchStatus), self.job_id):
            if self._batches.get(batch.id) is not batch.status:
                self._batches[batch.id] = batch.status
                yield BatchChanged(batch.id, batch.remote_id, batch.status, batch.request_count)
        for item in self.store.finished_items(self.job_id, since):
            if item.ordinal >= len(self._seen):
                self._seen.extend(bytes(item.ordinal + 1 - len(self._seen)))
            if not self._seen[item.ordinal]:
                self._seen[item.ordinal] = 1
                yield _finished(item)
        yield Progress(report)


def _finished(item: FinishedItem) -> ItemFinished:
    return ItemFinished(item.item_id, item.key, item.status, item.attempts, item.error_type)


__all__ = [
    "BatchChanged",
    "Ended",
    "Event",
    "EventTracker",
    "ItemFinished",
    "JobEventHandler",
    "Progress",
]
