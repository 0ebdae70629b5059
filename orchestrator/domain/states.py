"""Every state a job, an item, a batch and a result can be in, and how they group.

The one home of these names: the store's schema, the steps, the runner and the
progress display all use the members and the named sets below, never string
literals, so a renamed or added state is a change in one place (and a migration).

The API's own words come first: a remote batch's ``processing_status``
(docs/message-batches-api.md §6.1) and a result line's ``type`` (§2.5).
"""

from __future__ import annotations

from enum import StrEnum


class ProcessingStatus(StrEnum):
    """A remote batch's ``processing_status`` as the API reports it (§6.1)."""

    IN_PROGRESS = "in_progress"  #: Requests are being processed.
    CANCELING = "canceling"  #: A cancel was accepted; in-flight requests finish.
    ENDED = "ended"  #: Every request finished, was canceled or expired; results wait.


class ResultType(StrEnum):
    """A result line's ``result.type`` (§2.5); only ``succeeded`` is billed (§5.4)."""

    SUCCEEDED = "succeeded"  #: The request produced a message.
    ERRORED = "errored"  #: The request failed; its error type says whether to resend.
    CANCELED = "canceled"  #: The batch was canceled before the request was processed.
    EXPIRED = "expired"  #: The batch hit its 24 h limit before the request was processed.


class JobStatus(StrEnum):
    ACTIVE = "active"  #: Items remain that are not terminal; the steps work on it.
    DONE = "done"  #: Every item is terminal (succeeded, failed or canceled).
    CANCELED = "canceled"  #: The user canceled it; no new batches, retries stopped.


class ItemStatus(StrEnum):
    PENDING = "pending"  #: Waiting to be put in a batch (new, or due for a retry).
    QUEUED = "queued"  #: In a batch that is planned, being created, or processing.
    SUCCEEDED = "succeeded"  #: Has a succeeded result (or a cached one).
    FAILED = "failed"  #: Terminal failure: a final error, or attempts used up.
    CANCELED = "canceled"  #: Canceled by the user or by a batch cancel.


class BatchStatus(StrEnum):
    PLANNED = "planned"  #: Requests assigned; the create has not been sent.
    CREATING = "creating"  #: Intent committed; the create may be on the wire right now.
    UNKNOWN = "unknown"  #: The create's outcome is unknown; reconcile by listing.
    IN_PROGRESS = "in_progress"  #: The API is processing it (remote_id known).
    CANCELING = "canceling"  #: A cancel was accepted; in-flight requests finish.
    ENDED = "ended"  #: Processing ended; results are waiting to be ingested.
    INGESTED = "ingested"  #: Every result is stored and its items resolved.
    UNAVAILABLE = "unavailable"  #: Results can't be downloaded (archived/deleted).
    REJECTED = "rejected"  #: The API refused the create outright (a final 4xx).


class DuplicateStatus(StrEnum):
    """Another listed batch that matched the same lost create as the adopted one."""

    WATCHING = "watching"  #: Not ended yet: its results will tell whose it is.
    OURS = "ours"  #: Its results carry this store's custom_ids: a billed duplicate.
    FOREIGN = "foreign"  #: Somebody else's (or gone): nothing of it is stored.


class Outcome(StrEnum):
    """The decision for one item after one result (``domain.outcomes.decide``)."""

    SUCCEEDED = "succeeded"  #: Terminal: the item has its answer.
    RETRY = "retry"  #: Send the item again, in a new batch, as its next attempt.
    FAILED = "failed"  #: Terminal failure: invalid request, final error, attempts used up.
    CANCELED = "canceled"  #: Terminal: the batch (or job) was canceled; never retried.

    @property
    def item_status(self) -> ItemStatus:
        """The status an item takes on this outcome (a retry waits as ``pending``)."""
        return _ITEM_STATUS_OF_OUTCOME[self]


_ITEM_STATUS_OF_OUTCOME = {
    Outcome.SUCCEEDED: ItemStatus.SUCCEEDED,
    Outcome.RETRY: ItemStatus.PENDING,
    Outcome.FAILED: ItemStatus.FAILED,
    Outcome.CANCELED: ItemStatus.CANCELED,
}

#: Jobs the steps no longer work on.
SETTLED_JOB_STATUSES = frozenset({JobStatus.DONE, JobStatus.CANCELED})

#: Items that have their final answer or failure; nothing more is sent for them.
TERMINAL_ITEM_STATUSES = frozenset({ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.CANCELED})
#: Items still to be answered: waiting for a batch, or in one.
OPEN_ITEM_STATUSES = frozenset(ItemStatus) - TERMINAL_ITEM_STATUSES

#: A create is under way or its outcome is being reconciled (at most one per job).
CREATE_IN_FLIGHT = frozenset({BatchStatus.CREATING, BatchStatus.UNKNOWN})
#: The API knows the batch, so it has a ``remote_id``.
REMOTE_BATCH_STATUSES = frozenset(
    {
        BatchStatus.IN_PROGRESS,
        BatchStatus.CANCELING,
        BatchStatus.ENDED,
        BatchStatus.INGESTED,
        BatchStatus.UNAVAILABLE,
    }
)
#: Processing on the API side: the poll step watches these.
OPEN_REMOTE_BATCH_STATUSES = frozenset({BatchStatus.IN_PROGRESS, BatchStatus.CANCELING})
#: The batch will still change: it holds items that are not resolved yet.
IN_FLIGHT_BATCH_STATUSES = frozenset(
    {BatchStatus.PLANNED, BatchStatus.ENDED} | CREATE_IN_FLIGHT | OPEN_REMOTE_BATCH_STATUSES
)
#: Sent and not yet ended: what "batches in flight" counts on screen.
SENT_BATCH_STATUSES = frozenset({BatchStatus.CREATING} | OPEN_REMOTE_BATCH_STATUSES)
#: Nothing more happens to the batch.
FINAL_BATCH_STATUSES = frozenset(BatchStatus) - IN_FLIGHT_BATCH_STATUSES

_LOCAL_OF_PROCESSING = {
    ProcessingStatus.IN_PROGRESS: BatchStatus.IN_PROGRESS,
    ProcessingStatus.CANCELING: BatchStatus.CANCELING,
    ProcessingStatus.ENDED: BatchStatus.ENDED,
}


def local_batch_status(processing_status: str) -> BatchStatus:
    """The store's status for a batch the API reports in ``processing_status``.

    A status this code does not know yet (the API may add one) counts as still
    processing: the batch keeps being polled rather than being ingested early.
    """
    try:
        return _LOCAL_OF_PROCESSING[ProcessingStatus(processing_status)]
    except ValueError:
        return BatchStatus.IN_PROGRESS


__all__ = [
    "CREATE_IN_FLIGHT",
    "FINAL_BATCH_STATUSES",
    "IN_FLIGHT_BATCH_STATUSES",
    "OPEN_ITEM_STATUSES",
    "OPEN_REMOTE_BATCH_STATUSES",
    "REMOTE_BATCH_STATUSES",
    "SENT_BATCH_STATUSES",
    "SETTLED_JOB_STATUSES",
    "TERMINAL_ITEM_STATUSES",
    "BatchStatus",
    "DuplicateStatus",
    "ItemStatus",
    "JobStatus",
    "Outcome",
    "ProcessingStatus",
    "ResultType",
    "local_batch_status",
]
