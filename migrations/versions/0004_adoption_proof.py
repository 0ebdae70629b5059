"""When an adopted batch was proven this batch's by its results.

``batches.proven_at`` is set when the first results of a batch matched by listing
route to its own requests (or when another batch read them and handed the remote
batch over). Until then the adoption is tentative: another lost create of this
store may still turn out to own it, so its reconciliation waits for the proof
instead of sending again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("proven_at", sa.DateTime(timezone=True), nullable=True))
    # Adopted batches already read were proven by that reading.
    op.execute(
        "UPDATE batches SET proven_at = ingested_at WHERE adopted AND ingested_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("proven_at")
