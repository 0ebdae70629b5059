"""Initial schema: jobs, items, batches, batch_requests, results, quarantine, final_results.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One row per item with its final answer (design §4). Frozen here on purpose: a
# later change to the view is a new migration, never an edit of this one.
FINAL_RESULTS_VIEW = """
CREATE VIEW final_results AS
SELECT
    j.id AS job_id,
    j.name AS job_name,
    i.id AS item_id,
    i.key AS key,
    i.ordinal AS ordinal,
    i.custom_id AS custom_id,
    i.attempts AS attempts,
    i.status AS status,
    r.result_type AS result_type,
    r.text AS text,
    r.stop_reason AS stop_reason,
    r.model AS model,
    r.message_id AS message_id,
    r.input_tokens AS input_tokens,
    r.output_tokens AS output_tokens,
    r.cache_creation_input_tokens AS cache_creation_input_tokens,
    r.cache_read_input_tokens AS cache_read_input_tokens,
    CASE WHEN i.cached THEN 0.0 ELSE r.cost_usd END AS cost_usd,
    i.cached AS cached,
    COALESCE(r.error_type, i.error_type) AS error_type,
    COALESCE(r.error_message, i.error_message) AS error_message,
    i.updated_at AS updated_at
FROM items AS i
JOIN jobs AS j ON j.id = i.job_id
LEFT JOIN results AS r ON r.id = i.final_result_id
"""


def upgrade() -> None:
    op.create_table(
        "api_backoff",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("backoff_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_api_backoff")),
    )
    op.create_table(
        "jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("spec_path", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "done",
                "canceled",
                name="job_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("max_requests", sa.Integer(), nullable=False),
        sa.Column("max_bytes", sa.Integer(), nullable=False),
        sa.Column("use_cache", sa.Boolean(), nullable=False),
        sa.Column("budget_usd", sa.Float(), nullable=True),
        sa.Column("schedule", sa.String(length=100), nullable=True),
        sa.Column("api_version", sa.String(length=20), nullable=False),
        sa.Column("items_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cache_hits", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cache_saved_usd", sa.Float(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_version", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("max_attempts >= 1", name=op.f("ck_jobs_max_attempts_positive")),
        sa.CheckConstraint(
            "max_bytes BETWEEN 1 AND 256000000", name=op.f("ck_jobs_max_bytes_range")
        ),
        sa.CheckConstraint(
            "max_requests BETWEEN 1 AND 100000", name=op.f("ck_jobs_max_requests_range")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("name", name=op.f("uq_jobs_name")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_status"), ["status"], unique=False)

    op.create_table(
        "orchestrator_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_orchestrator_meta")),
    )
    op.create_table(
        "batches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "planned",
                "creating",
                "unknown",
                "in_progress",
                "canceling",
                "ended",
                "ingested",
                "unavailable",
                "rejected",
                name="batch_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("remote_id", sa.Text(), nullable=True),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("body_bytes", sa.BigInteger(), nullable=False),
        sa.Column("intent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("remote_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processing_status", sa.String(length=32), nullable=True),
        sa.Column("succeeded_count", sa.Integer(), nullable=True),
        sa.Column("errored_count", sa.Integer(), nullable=True),
        sa.Column("canceled_count", sa.Integer(), nullable=True),
        sa.Column("expired_count", sa.Integer(), nullable=True),
        sa.Column("results_url", sa.Text(), nullable=True),
        sa.Column(
            "cancel_requested", sa.Boolean(), server_default=sa.text("(false)"), nullable=False
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("ingest_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_version", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "NOT (status IN ('in_progress', 'canceling', 'ended', 'ingested', 'unavailable'))"
            " OR remote_id IS NOT NULL",
            name=op.f("ck_batches_remote_status_has_remote_id"),
        ),
        sa.CheckConstraint(
            "status NOT IN ('creating', 'unknown') OR intent_at IS NOT NULL",
            name=op.f("ck_batches_creating_has_intent"),
        ),
        sa.CheckConstraint(
            "request_count BETWEEN 1 AND 100000", name=op.f("ck_batches_request_count_range")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_batches_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("remote_id", name=op.f("uq_batches_remote_id")),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batches_job_id"), ["job_id"], unique=False)
        batch_op.create_index("ix_batches_status", ["status"], unique=False)
        batch_op.create_index(
            "uq_batches_one_create_per_job",
            ["job_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('creating', 'unknown')"),
            postgresql_where=sa.text("status IN ('creating', 'unknown')"),
        )

    op.create_table(
        "items",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "queued",
                "succeeded",
                "failed",
                "canceled",
                name="item_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("custom_id", sa.String(length=64), nullable=True),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "final_result_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("cached", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column("error_type", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status <> 'queued' OR batch_id IS NOT NULL", name=op.f("ck_items_queued_has_batch")
        ),
        sa.CheckConstraint(
            "status <> 'succeeded' OR final_result_id IS NOT NULL",
            name=op.f("ck_items_succeeded_has_result"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_items_attempts_nonnegative")),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_items_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_items_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
        sa.UniqueConstraint("job_id", "key", name=op.f("uq_items_job_id_key")),
    )
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_items_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_items_final_result_id"), ["final_result_id"], unique=False
        )
        batch_op.create_index("ix_items_job_id_status", ["job_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_items_params_hash"), ["params_hash"], unique=False)

    op.create_table(
        "quarantine",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("custom_id", sa.Text(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name=op.f("fk_quarantine_batch_id_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
        sa.UniqueConstraint("batch_id", "line_no", name=op.f("uq_quarantine_batch_id_line_no")),
    )
    op.create_table(
        "batch_requests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("custom_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name=op.f("fk_batch_requests_batch_id_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_batch_requests_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_requests")),
        sa.UniqueConstraint(
            "batch_id", "custom_id", name=op.f("uq_batch_requests_batch_id_custom_id")
        ),
        sa.UniqueConstraint("batch_id", "item_id", name=op.f("uq_batch_requests_batch_id_item_id")),
    )
    with op.batch_alter_table("batch_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batch_requests_item_id"), ["item_id"], unique=False)

    op.create_table(
        "results",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("custom_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("result_type", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("stop_reason", sa.String(length=64), nullable=True),
        sa.Column("stop_sequence", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_creation_input_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_read_input_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_creation_5m_input_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_creation_1h_input_tokens", sa.Integer(), nullable=True),
        sa.Column("service_tier", sa.String(length=32), nullable=True),
        sa.Column("inference_geo", sa.String(length=32), nullable=True),
        sa.Column("error_type", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column(
            "ingested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "result_type <> 'errored' OR error_type IS NOT NULL",
            name=op.f("ck_results_errored_has_error"),
        ),
        sa.CheckConstraint(
            "result_type <> 'succeeded' OR message_id IS NOT NULL",
            name=op.f("ck_results_succeeded_has_message"),
        ),
        sa.CheckConstraint(
            "result_type IN ('succeeded', 'errored', 'canceled', 'expired')",
            name=op.f("ck_results_result_type_known"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name=op.f("fk_results_batch_id_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_results_item_id_items"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
        sa.UniqueConstraint("batch_id", "custom_id", name=op.f("uq_results_batch_id_custom_id")),
    )
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_results_item_id"), ["item_id"], unique=False)

    op.execute(FINAL_RESULTS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS final_results")
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_results_item_id"))

    op.drop_table("results")
    with op.batch_alter_table("batch_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batch_requests_item_id"))

    op.drop_table("batch_requests")
    op.drop_table("quarantine")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_items_params_hash"))
        batch_op.drop_index("ix_items_job_id_status")
        batch_op.drop_index(batch_op.f("ix_items_final_result_id"))
        batch_op.drop_index(batch_op.f("ix_items_batch_id"))

    op.drop_table("items")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_batches_one_create_per_job",
            sqlite_where=sa.text("status IN ('creating', 'unknown')"),
            postgresql_where=sa.text("status IN ('creating', 'unknown')"),
        )
        batch_op.drop_index("ix_batches_status")
        batch_op.drop_index(batch_op.f("ix_batches_job_id"))

    op.drop_table("batches")
    op.drop_table("orchestrator_meta")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_status"))

    op.drop_table("jobs")
    op.drop_table("api_backoff")
