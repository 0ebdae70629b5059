"""Labels as data: a job's declared output, the input rows, and validated answers.

* ``jobs.output_mode`` / ``output_schema`` / ``output_tool``: the spec's ``[output]``;
* ``jobs.input_columns``: the input rows' columns, in order of first appearance;
* ``jobs.view_name``: the job's own view (``job_<name>``), made when it is recorded;
* ``items.input``: the input row as a JSON object (template jobs);
* ``results.output`` / ``output_error``: the answer valid against the schema (JSON),
  or why it is not;
* ``final_results`` gains ``input``, ``output``, ``output_error`` and ``content``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SELECT = """
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
    i.updated_at AS updated_at{extra}
FROM items AS i
JOIN jobs AS j ON j.id = i.job_id
LEFT JOIN results AS r ON r.id = i.final_result_id
"""
# Frozen here, like 0001's: a later change to the view is a new migration.
FINAL_RESULTS_VIEW = "CREATE VIEW final_results AS" + _SELECT.format(
    extra=""",
    i.input AS input,
    r.output AS output,
    r.output_error AS output_error,
    r.content AS content"""
)
PREVIOUS_VIEW = "CREATE VIEW final_results AS" + _SELECT.format(extra="")


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS final_results")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("output_mode", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("output_schema", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("output_tool", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("input_columns", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("view_name", sa.String(length=80), nullable=True))
        batch.create_unique_constraint(batch.f("uq_jobs_view_name"), ["view_name"])
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("input", sa.Text(), nullable=True))
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("output", sa.Text(), nullable=True))
        batch.add_column(sa.Column("output_error", sa.Text(), nullable=True))
    op.execute(FINAL_RESULTS_VIEW)


def downgrade() -> None:
    bind = op.get_bind()
    for (view,) in bind.execute(sa.text("SELECT view_name FROM jobs WHERE view_name IS NOT NULL")):
        op.execute(f'DROP VIEW IF EXISTS "{view}"')
    op.execute("DROP VIEW IF EXISTS final_results")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("output_error")
        batch.drop_column("output")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("input")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(batch.f("uq_jobs_view_name"), type_="unique")
        for column in ("view_name", "input_columns", "output_tool", "output_schema", "output_mode"):
            batch.drop_column(column)
    op.execute(PREVIOUS_VIEW)
