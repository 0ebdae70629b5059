"""Immutable values the store hands out; ORM rows never leave ``store/``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from orchestrator.store.tables import BatchStatus, ItemStatus, JobStatus


class ItemLike(Protocol):
    """What the store needs of an item to record it (``domain.spec.ItemDraft`` fits)."""

    @property
    def ordinal(self) -> int: ...
    @property
    def key(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def params_json(self) -> bytes: ...
    @property
    def params_hash(self) -> str: ...


@dataclass(frozen=True, slots=True)
class NewJob:
    name: str
    content_hash: str
    spec_path: str
    spec: dict[str, Any]
    max_attempts: int
    max_requests: int
    max_bytes: int
    use_cache: bool
    budget_usd: float | None
    schedule: str | None
    api_version: str


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: int
    name: str
    status: JobStatus
    content_hash: str
    spec_path: str
    max_attempts: int
    max_requests: int
    max_bytes: int
    use_cache: bool
    budget_usd: float | None
    schedule: str | None
    api_version: str
    items_total: int
    cache_hits: int
    cache_saved_usd: float
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on one row; ``version`` is the fencing token for every write under it."""

    row_id: int
    owner: str
    version: int


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: int
    job_id: int
    status: BatchStatus
    remote_id: str | None
    request_count: int
    body_bytes: int
    intent_at: datetime | None
    remote_created_at: datetime | None
    results_url: str | None
    cancel_requested: bool
    ingest_attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class RemoteState:
    """What the API said about a batch (from a list page, retrieve or create)."""

    remote_id: str
    processing_status: str
    created_at: datetime
    expires_at: datetime | None
    ended_at: datetime | None
    archived_at: datetime | None
    results_url: str | None
    succeeded: int
    errored: int
    canceled: int
    expired: int
    processing: int

    @property
    def total(self) -> int:
        return self.processing + self.succeeded + self.errored + self.canceled + self.expired


@dataclass(frozen=True, slots=True)
class PendingItem:
    id: int
    attempts: int
    params_json: str


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    item_id: int
    attempt: int
    custom_id: str


@dataclass(frozen=True, slots=True)
class RequestRef:
    """A request of a batch, joined with its stored result when there is one."""

    item_id: int
    attempt: int
    custom_id: str
    result_id: int | None
    result_type: str | None
    error_type: str | None
    error_message: str | None


@dataclass(frozen=True, slots=True)
class Resolution:
    """What becomes of one item after its batch was ingested."""

    item_id: int
    status: ItemStatus
    result_id: int | None
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class JobReport:
    job: JobRecord
    items: dict[str, int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)
    results: dict[str, int] = field(default_factory=dict)
    retried_items: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    quarantined: int = 0

    @property
    def terminal(self) -> int:
        return sum(self.items.get(s, 0) for s in ("succeeded", "failed", "canceled"))
