"""``batch_requests.item_id`` and ``results.item_id`` are no longer foreign keys.

Every one of these rows is written by a bulk statement of the orchestrator's own (a
batch's requests copied from its items, a results file's lines routed through those
requests), with an item id it has just read from ``items``; and a job's items, its
batches' requests and its results are deleted together, through ``jobs`` -> ``batches``
(both keys on ``batch_id`` stay, with their ON DELETE CASCADE). The per-row check of the
key was paid on every such write: on PostgreSQL it locks each item row it checks (a
write to the item's page and to the log), on SQLite it looks the item up. Measured on
PostgreSQL, 100,000 items, the statements alone: the batch's requests 1.01 s -> 0.65 s,
its results 1.59 s -> 1.04 s.

SQLite rebuilds both tables to drop a key; ``final_results`` reads ``results`` and must
not exist meanwhile: its definition is kept, the view dropped and made again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYS = (
    ("batch_requests", "fk_batch_requests_item_id_items"),
    ("results", "fk_results_item_id_items"),
)


def upgrade() -> None:
    view = _drop_view()
    for table, name in _KEYS:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_="foreignkey")
    _make_view(view)


def downgrade() -> None:
    view = _drop_view()
    for table, name in _KEYS:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(name, "items", ["item_id"], ["id"], ondelete="CASCADE")
    _make_view(view)


def _drop_view() -> str | None:
    """SQLite: drop ``final_results`` (the tables under it are rebuilt) and return its
    definition. PostgreSQL alters the tables in place: nothing to do."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return None
    view = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'final_results'")
    ).scalar()
    op.execute("DROP VIEW IF EXISTS final_results")
    return str(view) if view else None


def _make_view(view: str | None) -> None:
    if view:
        op.execute(view)
