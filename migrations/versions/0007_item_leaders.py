"""Identical requests within a job are sent once: ``items.leader_id`` names the item
whose outcome a duplicate shares. No index: leaders are found with one grouped pass
over the job's items, and followers are read through ``(job_id, status)``; every index
on ``items`` is paid on each of a job's inserts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both backends: SQLite needs no table rebuild for it, so the
    # views on ``items`` stay as they are.
    op.add_column(
        "items",
        sa.Column("leader_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    )


def downgrade() -> None:
    # SQLite (3.35+) drops a column in place when nothing but the table uses it.
    op.drop_column("items", "leader_id")
