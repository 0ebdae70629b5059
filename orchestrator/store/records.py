"""Immutable values that cross the store's boundary, both ways.

Steps hand the store these records and get them back; ORM rows and column
names never leave ``store/``. Request params are ``bytes`` everywhere: the exact
JSON that is sent, from the spec to the create body.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from orchestrator.domain.output import Output
from orchestrator.domain.states import (
    TERMINAL_ITEM_STATUSES,
    BatchStatus,
    ItemStatus,
    JobStatus,
    ResultType,
)


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
    @property
    def input_json(self) -> bytes | None: ...
    @property
    def columns(self) -> Sequence[str]: ...


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
    output: Output | None = None
    betas: tuple[str, ...] = ()
    #: Identical requests are sent once, the others share the answer (``dedupe``).
    dedupe: bool = True


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
    output: Output | None = None
    input_columns: tuple[str, ...] = ()
    view_name: str | None = None
    betas: tuple[str, ...] = ()


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
    #: Matched by listing after a lost create; its first results prove it (or undo it).
    adopted: bool = False
    #: When an adopted batch's results proved it this batch's (None: still tentative).
    proven_at: datetime | None = None
    #: An unknown create not listed by then was never made (None: derive it).
    reconcile_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class RemoteState:
    """What the API said about a batch (list page, retrieve, create or cancel), and
    the local ``status`` the caller decided it means."""

    remote_id: str
    status: BatchStatus
    processing_status: str
    created_at: datetime
    expires_at: datetime | None
    ended_at: datetime | None
    results_url: str | None
    succeeded: int
    errored: int
    canceled: int
    expired: int


@dataclass(frozen=True, slots=True)
class Claim:
    """What this store knows of one remote batch (``Store.remote_claims``)."""

    #: The local batch holding or watching it; None: proven somebody else's.
    batch_id: int | None
    #: Since when (this store's clock): adopted, created or first watched.
    since: datetime | None
    #: Proven: created by this store, read, or foreign. An unsettled claim is a
    #: tentative adoption or a watched match, which the results may still move.
    settled: bool


@dataclass(frozen=True, slots=True)
class PendingItem:
    id: int
    attempts: int
    params_json: bytes


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    item_id: int
    attempt: int
    custom_id: str


@dataclass(frozen=True, slots=True)
class RequestLine:
    """One request of a batch as it goes into the create body."""

    custom_id: str
    params_json: bytes


@dataclass(frozen=True, slots=True)
class Route:
    """Where a result line belongs: the item and the attempt its custom_id was sent as."""

    item_id: int
    attempt: int


class RouteTable:
    """Every request of one batch, held compactly (an array of item ids and one of
    attempts, a dozen bytes a request): routes a line by its custom_id with no query.

    Only for a batch whose every custom_id is ``make_custom_id``'s, for this store's
    tag (``ResultOps.batch_routes`` checks each one): then a custom_id names its item
    and attempt, and the table only has to say whether the batch holds them.
    """

    def __init__(self, tag: str, items: array[int], attempts: array[int]) -> None:
        self._tag = tag
        self._items = items
        self._attempts = attempts

    def __len__(self) -> int:
        return len(self._items)

    def get(self, custom_id: str) -> Route | None:
        """The route of a request of this batch; None for any other custom_id.

        Called for every result line, so by string operations rather than through
        ``parse_custom_id``: the id must be exactly the one ``make_custom_id`` makes of
        the numbers it splits into (which rules out signs, spaces, leading zeros and
        digits other than ASCII ones, all of which ``int`` would take)."""
        tag, _, rest = custom_id.partition("-")
        if tag != self._tag:
            return None
        item_text, _, attempt_text = rest.partition("-")
        try:
            item, attempt = int(item_text), int(attempt_text)
        except ValueError:
            return None
        if item < 1 or attempt < 1 or custom_id != f"{tag}-{item}-{attempt}":
            return None
        items = self._items
        at = bisect_left(items, item)
        if at == len(items) or items[at] != item or self._attempts[at] != attempt:
            return None
        return Route(item, attempt)


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One result line, typed; the ``results`` table stores exactly these fields."""

    batch_id: int
    item_id: int
    custom_id: str
    attempt: int
    result_type: ResultType
    message_id: str | None = None
    model: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    text: str | None = None
    content: str | None = None  # the message's content blocks as JSON
    output: str | None = None  # the answer valid against the job's schema, as JSON
    output_error: str | None = None  # or why the answer is not valid
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_5m_input_tokens: int | None = None
    cache_creation_1h_input_tokens: int | None = None
    service_tier: str | None = None
    inference_geo: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    cost_usd: float | None = None


class ResultValues(NamedTuple):
    """A :class:`ResultRow` as a plain tuple, same fields in the same order: what the
    ingest builds for every line of a results file (a tuple costs a fraction of a
    frozen dataclass to build, and goes to the database driver as it is)."""

    batch_id: int
    item_id: int
    custom_id: str
    attempt: int
    result_type: ResultType
    message_id: str | None = None
    model: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    text: str | None = None
    content: str | None = None
    output: str | None = None
    output_error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_5m_input_tokens: int | None = None
    cache_creation_1h_input_tokens: int | None = None
    service_tier: str | None = None
    inference_geo: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class QuarantineLine:
    """A results line that could not be parsed or routed, kept verbatim."""

    batch_id: int
    line_no: int
    custom_id: str | None
    raw: str
    error: str


@dataclass(frozen=True, slots=True)
class RequestRef:
    """A request of a batch, joined with its stored result when there is one."""

    item_id: int
    attempt: int
    custom_id: str
    result_id: int | None
    result_type: ResultType | None
    error_type: str | None
    error_message: str | None
    #: Why a line with this custom_id was quarantined (the API did return a result).
    quarantined: str | None = None
    #: Why a succeeded answer does not match the job's output schema.
    output_error: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """What becomes of one item after its batch was ingested."""

    item_id: int
    status: ItemStatus
    result_id: int | None
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class FinishedItem:
    """An item in a final state, as the Python API's events report it."""

    item_id: int
    ordinal: int
    key: str
    status: ItemStatus
    attempts: int
    error_type: str | None


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Failed items of a job that share an error type, with one example message."""

    error_type: str
    items: int
    example: str


@dataclass(frozen=True, slots=True)
class BackoffState:
    """Every worker on the store waits until ``until`` before this kind of call."""

    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class JobReport:
    job: JobRecord
    items: dict[ItemStatus, int] = field(default_factory=dict)
    batches: dict[BatchStatus, int] = field(default_factory=dict)
    results: dict[ResultType, int] = field(default_factory=dict)
    retried_items: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    quarantined: int = 0
    #: Succeeded answers that did not match the job's output schema (paid, retried).
    invalid_answers: int = 0
    #: Requests answered twice: billed again in a duplicate batch of a lost create.
    duplicate_requests: int = 0
    #: Requests in batches the API accepted (every attempt counts once).
    sent_requests: int = 0
    #: Requests still to be accepted: items pending, or in a batch not yet created.
    unsent_requests: int = 0
    failures: tuple[FailureGroup, ...] = ()

    @property
    def terminal(self) -> int:
        """Items that have their final answer or failure."""
        return sum(self.items.get(s, 0) for s in TERMINAL_ITEM_STATUSES)

    def count_batches(self, statuses: frozenset[BatchStatus]) -> int:
        return sum(self.batches.get(s, 0) for s in statuses)
