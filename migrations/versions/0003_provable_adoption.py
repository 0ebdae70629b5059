"""Provable adoption and bounded recovery of creates whose outcome is unknown.

* one create in flight per request count across the store, so a listed batch can
  be told apart from every other create this store has in flight;
* ``adopted``: the batch was matched by listing, and stays tentative until its
  results' custom_ids prove it ours;
* ``reconcile_until``: when an unknown create may be declared never made;
* ``foreign_batches``: remote batches proven to belong to somebody else;
* ``duplicate_batches``: other listed batches that matched the same lost create,
  watched until their results prove them ours (billed duplicates, reported) or not.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IN_FLIGHT = sa.text("status IN ('creating', 'unknown')")


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(
            sa.Column("adopted", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch.add_column(sa.Column("reconcile_until", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(
            "uq_batches_one_count_in_flight",
            ["request_count"],
            unique=True,
            sqlite_where=_IN_FLIGHT,
            postgresql_where=_IN_FLIGHT,
        )
    op.create_table(
        "foreign_batches",
        sa.Column("remote_id", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "found_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("remote_id", name=op.f("pk_foreign_batches")),
    )

    op.create_table(
        "duplicate_batches",
        sa.Column("remote_id", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("paid_requests", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "found_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name=op.f("fk_duplicate_batches_batch_id_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("remote_id", name=op.f("pk_duplicate_batches")),
    )


def downgrade() -> None:
    op.drop_table("duplicate_batches")
    op.drop_table("foreign_batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_index(
            "uq_batches_one_count_in_flight",
            sqlite_where=_IN_FLIGHT,
            postgresql_where=_IN_FLIGHT,
        )
        batch.drop_column("reconcile_until")
        batch.drop_column("adopted")
