"""Identical requests within a job are sent once: ``items.leader_id`` names the item
whose answer a duplicate shares, and ``(job_id, params_hash)`` finds duplicates and
cached answers with one grouped pass instead of one lookup per item.

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
    op.create_index("ix_items_leader_id", "items", ["leader_id"])
    op.create_index("ix_items_job_id_params_hash", "items", ["job_id", "params_hash"])


def downgrade() -> None:
    op.drop_index("ix_items_job_id_params_hash", table_name="items")
    op.drop_index("ix_items_leader_id", table_name="items")
    # SQLite (3.35+) drops a column in place when nothing but the table uses it.
    op.drop_column("items", "leader_id")
