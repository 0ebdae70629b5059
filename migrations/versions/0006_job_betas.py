"""A job's beta flags: sent as ``anthropic-beta`` on its batches' create and reads.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("betas", sa.JSON(), nullable=True))


def downgrade() -> None:
    # SQLite rebuilds the table to drop a column, and a view on it (final_results)
    # must not exist meanwhile: keep its definition, drop it, make it again.
    bind = op.get_bind()
    view = None
    if bind.dialect.name == "sqlite":
        view = bind.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'final_results'")
        ).scalar()
        op.execute("DROP VIEW IF EXISTS final_results")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("betas")
    if view:
        op.execute(view)
