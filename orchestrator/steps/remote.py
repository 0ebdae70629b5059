"""Reading what the API says about a batch into the store's terms."""

from __future__ import annotations

from datetime import datetime

from orchestrator.api.models import MessageBatch
from orchestrator.domain.states import BatchStatus, ProcessingStatus, local_batch_status
from orchestrator.store.records import BatchRecord, RemoteState


def remote_state(batch: MessageBatch) -> RemoteState:
    """The store's view of an API ``MessageBatch``, with the local status it means."""
    counts = batch.request_counts
    return RemoteState(
        remote_id=batch.id,
        status=local_batch_status(batch.processing_status),
        processing_status=batch.processing_status,
        created_at=batch.created_at,
        expires_at=batch.expires_at,
        ended_at=batch.ended_at,
        results_url=batch.results_url,
        succeeded=counts.succeeded,
        errored=counts.errored,
        canceled=counts.canceled,
        expired=counts.expired,
    )


def gone_state(batch: BatchRecord, now: datetime) -> RemoteState:
    """A batch deleted on the API side: ended, with no results to download."""
    assert batch.remote_id is not None  # only a created batch can be gone
    return RemoteState(
        remote_id=batch.remote_id,
        status=BatchStatus.ENDED,
        processing_status=ProcessingStatus.ENDED,
        created_at=batch.remote_created_at or now,
        expires_at=None,
        ended_at=now,
        results_url=None,
        succeeded=0,
        errored=0,
        canceled=0,
        expired=0,
    )
