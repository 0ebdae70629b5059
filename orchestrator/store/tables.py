"""The SQL job store's schema: typed SQLAlchemy 2 models.

This module is the contract documented in the README's "SQL surface"; it changes
only together with a migration in ``migrations/versions/`` (a test compares the
two). Invariants live here as constraints, so a bug elsewhere fails loudly
instead of writing a bad row:

* one result per ``(batch_id, custom_id)``; one quarantine row per line;
* a status implies its columns (a submitted batch has a ``remote_id``, a
  succeeded item has a ``final_result_id``);
* at most one create in flight per job (partial unique index), so a lost create
  can be reconciled by listing without ambiguity between our own batches.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from orchestrator.domain.contract import MAX_BATCH_BYTES, MAX_REQUESTS_PER_BATCH
from orchestrator.domain.states import (
    CREATE_IN_FLIGHT,
    REMOTE_BATCH_STATUSES,
    BatchStatus,
    ItemStatus,
    JobStatus,
    ResultType,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no timezone type and hands back naive values; this stores UTC and
    returns aware datetimes so comparisons never mix naive and aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; use UTC-aware values")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002
    ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONText(TypeDecorator[bytes]):
    """Serialized JSON held as ``bytes`` in Python and as TEXT in SQL.

    A request's params travel as the exact bytes that are sent, from the spec to
    the create body; the column stays TEXT so users can query it with JSON functions.
    """

    impl = Text()
    cache_ok = True

    def process_bind_param(
        self,
        value: bytes | None,
        dialect: Dialect,  # noqa: ARG002
    ) -> str | None:
        return None if value is None else value.decode("utf-8")

    def process_result_value(
        self,
        value: str | None,
        dialect: Dialect,  # noqa: ARG002
    ) -> bytes | None:
        return None if value is None else value.encode("utf-8")


def _enum(cls: type[enum.StrEnum], name: str) -> SAEnum:
    # Stored as VARCHAR + CHECK (not a native PG enum) so adding a member is a
    # plain migration on both backends.
    return SAEnum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def _in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in sorted(values))})"


utc_now = Annotated[
    datetime, mapped_column(UTCDateTime(), server_default=text("CURRENT_TIMESTAMP"))
]
# 64-bit ids on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
_BIGINT = BigInteger().with_variant(Integer(), "sqlite")
bigid = Annotated[int, mapped_column(_BIGINT)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class LeaseMixin:
    """A claim on a row: who works on it, until when, and a fencing token.

    Every write made under a lease carries ``WHERE lease_owner = :me AND
    lease_version = :v``; a holder whose lease expired and was taken over writes
    zero rows and must stop.
    """

    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    lease_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Meta(Base):
    """Store-wide facts, e.g. the ``store_tag`` that prefixes every custom_id."""

    __tablename__ = "orchestrator_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Job(LeaseMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        CheckConstraint(
            f"max_requests BETWEEN 1 AND {MAX_REQUESTS_PER_BATCH}", name="max_requests_range"
        ),
        CheckConstraint(f"max_bytes BETWEEN 1 AND {MAX_BATCH_BYTES}", name="max_bytes_range"),
    )

    id: Mapped[bigid] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    spec_path: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]]
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"), index=True)
    max_attempts: Mapped[int] = mapped_column(Integer)
    max_requests: Mapped[int] = mapped_column(Integer)
    max_bytes: Mapped[int] = mapped_column(Integer)
    use_cache: Mapped[bool] = mapped_column(Boolean)
    budget_usd: Mapped[float | None] = mapped_column(Float)
    schedule: Mapped[str | None] = mapped_column(String(100))
    api_version: Mapped[str] = mapped_column(String(20))
    #: ``[output]``: how answers are asked for (json_schema/tool), their schema, the tool.
    output_mode: Mapped[str | None] = mapped_column(String(16))
    output_schema: Mapped[dict[str, Any] | None]
    output_tool: Mapped[str | None] = mapped_column(String(64))
    #: Beta flags: the ``anthropic-beta`` header of the job's creates and reads.
    betas: Mapped[list[str] | None] = mapped_column(JSON)
    #: The input rows' columns, in order of first appearance (the per-job view's).
    input_columns: Mapped[list[str] | None] = mapped_column(JSON)
    #: The job's own view: input columns and typed answers per item.
    view_name: Mapped[str | None] = mapped_column(String(80), unique=True)
    items_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cache_hits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cache_saved_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    created_at: Mapped[utc_now]
    updated_at: Mapped[utc_now]
    finished_at: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("job_id", "key"),
        Index("ix_items_job_id_status", "job_id", "status"),
        # Equality lookups only (the cache, the repeat check); on PostgreSQL a hash
        # index, a third of a B-tree's size for random 64-character keys (migration 0008).
        Index("ix_items_params_hash", "params_hash", postgresql_using="hash"),
        CheckConstraint(
            f"status <> '{ItemStatus.SUCCEEDED}' OR final_result_id IS NOT NULL",
            name="succeeded_has_result",
        ),
        CheckConstraint(
            f"status <> '{ItemStatus.QUEUED}' OR batch_id IS NOT NULL", name="queued_has_batch"
        ),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
    )

    id: Mapped[bigid] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(Text)
    params: Mapped[bytes] = mapped_column(JSONText())  # canonical JSON: exactly what is sent
    params_hash: Mapped[str] = mapped_column(String(64))
    #: The input row as a JSON object (template jobs; None for native requests).
    input: Mapped[str | None] = mapped_column(Text)
    status: Mapped[ItemStatus] = mapped_column(_enum(ItemStatus, "item_status"))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    custom_id: Mapped[str | None] = mapped_column(String(64))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), index=True)
    # Not a foreign key: items and results refer to each other, and a cycle of
    # FKs makes every insert order and delete awkward. Set only by the ingest step.
    final_result_id: Mapped[int | None] = mapped_column(_BIGINT, index=True)
    #: The item of this job with the same params that is sent in this one's place; this
    #: one takes its outcome (``dedupe``, migration 0007). NULL: sent itself.
    leader_id: Mapped[int | None] = mapped_column(_BIGINT)
    cached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    error_type: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[utc_now]


class Batch(LeaseMixin, Base):
    """One Message Batch: planned locally, then created, polled and ingested."""

    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint(
            f"NOT ({_in('status', REMOTE_BATCH_STATUSES)}) OR remote_id IS NOT NULL",
            name="remote_status_has_remote_id",
        ),
        CheckConstraint(
            f"NOT ({_in('status', CREATE_IN_FLIGHT)}) OR intent_at IS NOT NULL",
            name="creating_has_intent",
        ),
        CheckConstraint(
            f"request_count BETWEEN 1 AND {MAX_REQUESTS_PER_BATCH}", name="request_count_range"
        ),
        Index(
            "uq_batches_one_create_per_job",
            "job_id",
            unique=True,
            sqlite_where=text(_in("status", CREATE_IN_FLIGHT)),
            postgresql_where=text(_in("status", CREATE_IN_FLIGHT)),
        ),
        # A lost create is matched to a listed batch by its request count: no two
        # creates of this store in flight may share one, or a match could be wrong.
        Index(
            "uq_batches_one_count_in_flight",
            "request_count",
            unique=True,
            sqlite_where=text(_in("status", CREATE_IN_FLIGHT)),
            postgresql_where=text(_in("status", CREATE_IN_FLIGHT)),
        ),
        Index("ix_batches_status", "status"),
    )

    id: Mapped[bigid] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[BatchStatus] = mapped_column(_enum(BatchStatus, "batch_status"))
    # IDs "may change length over time" (SDK types): unbounded text.
    remote_id: Mapped[str | None] = mapped_column(Text, unique=True)
    request_count: Mapped[int] = mapped_column(Integer)
    body_bytes: Mapped[int] = mapped_column(BigInteger)
    intent_at: Mapped[datetime | None]
    submitted_at: Mapped[datetime | None]
    remote_created_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    ingested_at: Mapped[datetime | None]
    processing_status: Mapped[str | None] = mapped_column(String(32))
    succeeded_count: Mapped[int | None] = mapped_column(Integer)
    errored_count: Mapped[int | None] = mapped_column(Integer)
    canceled_count: Mapped[int | None] = mapped_column(Integer)
    expired_count: Mapped[int | None] = mapped_column(Integer)
    results_url: Mapped[str | None] = mapped_column(Text)
    #: The API base URL the create went to; answers are cached per endpoint.
    endpoint: Mapped[str | None] = mapped_column(Text)
    #: Matched by listing after a lost create; its first results prove it (or undo it).
    adopted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    #: When an adopted batch's results proved it this batch's (None: still tentative).
    proven_at: Mapped[datetime | None]
    #: An unknown create not found in the listing by then was never made.
    reconcile_until: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    ingest_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[utc_now]
    updated_at: Mapped[utc_now]


class BatchRequest(Base):
    """Which item (and which attempt of it) went into which batch, under which custom_id."""

    __tablename__ = "batch_requests"
    __table_args__ = (
        UniqueConstraint("batch_id", "item_id"),
        UniqueConstraint("batch_id", "custom_id"),
    )

    id: Mapped[bigid] = mapped_column(primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    # Not a foreign key (migration 0009), here and in ``results``: the orchestrator
    # writes these rows in bulk with item ids it has just read from ``items``, and they
    # go with their batch (the key above), which goes with its job, as the items do.
    # Checked row by row, the key took a third of PostgreSQL's time on these inserts.
    item_id: Mapped[int] = mapped_column(_BIGINT, index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    custom_id: Mapped[str] = mapped_column(String(64))


class Result(Base):
    """One typed row per result line ingested from a batch's results file."""

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("batch_id", "custom_id"),
        CheckConstraint(_in("result_type", ResultType), name="result_type_known"),
        CheckConstraint(
            f"result_type <> '{ResultType.SUCCEEDED}' OR message_id IS NOT NULL",
            name="succeeded_has_message",
        ),
        CheckConstraint(
            f"result_type <> '{ResultType.ERRORED}' OR error_type IS NOT NULL",
            name="errored_has_error",
        ),
    )

    id: Mapped[bigid] = mapped_column(primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(_BIGINT, index=True)  # see ``BatchRequest``
    custom_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    result_type: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(100))
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    stop_sequence: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str | None] = mapped_column(Text)  # the message's content blocks as JSON
    #: A job with ``[output]``: the answer, valid against the schema, as JSON ...
    output: Mapped[str | None] = mapped_column(Text)
    #: ... or why the answer is invalid (the result stays, paid; the item is retried).
    output_error: Mapped[str | None] = mapped_column(Text)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_creation_input_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_read_input_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_creation_5m_input_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_creation_1h_input_tokens: Mapped[int | None] = mapped_column(Integer)
    service_tier: Mapped[str | None] = mapped_column(String(32))
    inference_geo: Mapped[str | None] = mapped_column(String(32))
    error_type: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    ingested_at: Mapped[utc_now]


class Quarantine(Base):
    """A results line that could not be parsed or routed; kept verbatim for inspection."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("batch_id", "line_no"),)

    id: Mapped[bigid] = mapped_column(primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    custom_id: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[utc_now]


class ForeignBatch(Base):
    """A remote batch proven (by its results' custom_ids) to be somebody else's."""

    __tablename__ = "foreign_batches"

    remote_id: Mapped[str] = mapped_column(Text, primary_key=True)
    batch_id: Mapped[int | None] = mapped_column(_BIGINT)
    reason: Mapped[str] = mapped_column(Text)
    found_at: Mapped[utc_now]


class DuplicateBatch(Base):
    """Another listed batch that matched the same lost create as an adopted one.

    ``status`` is ``watching`` until it ends, then ``ours`` (its results carry this
    store's custom_ids: a billed duplicate, stored and reported) or ``foreign``.
    """

    __tablename__ = "duplicate_batches"

    remote_id: Mapped[str] = mapped_column(Text, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    paid_requests: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    found_at: Mapped[utc_now]


class ApiBackoff(Base):
    """Shared back-off: when the API says 429/529, every daemon on this store waits."""

    __tablename__ = "api_backoff"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    backoff_until: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(Text)
