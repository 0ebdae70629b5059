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

SQLite rebuilds both tables to drop a key, and no view may read them meanwhile:
``final_results`` and any job's view (``orchestrator db upgrade`` drops and remakes
those itself, a downgrade does not) are kept as they are defined, dropped, and made
again.

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
    views = _drop_views()
    for table, name in _KEYS:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_="foreignkey")
    _make_views(views)


def downgrade() -> None:
    views = _drop_views()
    for table, name in _KEYS:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(name, "items", ["item_id"], ["id"], ondelete="CASCADE")
    _make_views(views)


def _drop_views() -> list[str]:
    """SQLite: drop every view (the tables under them are rebuilt) and return their
    definitions. PostgreSQL alters the tables in place: nothing to do."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return []
    views = bind.execute(
        sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY rowid")
    ).all()
    for name, _ in views:
        op.execute(f'DROP VIEW IF EXISTS "{name}"')
    return [str(sql) for _, sql in views]


def _make_views(views: list[str]) -> None:
    for sql in views:
        op.execute(sql)
