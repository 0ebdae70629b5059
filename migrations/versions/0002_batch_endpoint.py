"""Batches remember the API endpoint that created them (the response cache keys on it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batches created before this revision keep NULL: their answers are never
    # served from the cache, since nobody can say which endpoint produced them.
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("endpoint", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("endpoint")
