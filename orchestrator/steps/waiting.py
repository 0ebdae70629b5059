"""Why a job is not moving, in words a person can act on (the screen and ``status``)."""

from __future__ import annotations

from datetime import datetime

from orchestrator.domain.states import BatchStatus
from orchestrator.settings import Settings
from orchestrator.steps.recover import deadline_of
from orchestrator.steps.submit import BACKOFF_SCOPE
from orchestrator.store.queries import Store


def waiting_reason(store: Store, settings: Settings, job_id: int, now: datetime) -> str | None:
    """What the job waits for and until when, or None when nothing holds it back.

    Two things hold a job back on purpose: a create of unknown outcome (nothing
    more is sent for the job until it is reconciled by listing), and the shared
    back-off after the API refused a create or could not be reached.
    """
    unknown = store.batches([BatchStatus.UNKNOWN], job_id)
    if unknown:
        ends = [deadline_of(b, settings) for b in unknown if b.intent_at is not None]
        until = f", at the latest until {max(ends):%H:%M:%S} UTC" if ends else ""
        return (
            f"reconciling {len(unknown)} create(s) of unknown outcome by listing batches"
            f" (nothing is sent twice){until}"
        )
    backoff = store.backoff(BACKOFF_SCOPE)
    planned = store.batches([BatchStatus.PLANNED], job_id)
    if backoff is not None and backoff.until > now and planned:
        return f"{backoff.reason}; sending again at {backoff.until:%H:%M:%S} UTC"
    in_flight = store.requests_in_flight()
    smallest = min((b.request_count for b in planned), default=0)
    if planned and in_flight and in_flight + smallest > settings.max_requests_in_flight:
        return (
            f"the processing queue is full ({in_flight:,} requests in flight, "
            f"ORCHESTRATOR_MAX_REQUESTS_IN_FLIGHT={settings.max_requests_in_flight:,}); "
            "more is sent as batches end"
        )
    return None
