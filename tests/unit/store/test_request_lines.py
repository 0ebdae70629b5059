"""The create body's source, ``request_lines``: exactly one batch's requests, in planned
order, page by page, and (on SQLite) pages the database reads without sorting the
whole batch for each of them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from orchestrator.store import batches as batches_module
from orchestrator.store.engine import make_engine, upgrade
from orchestrator.store.queries import Store
from orchestrator.store.records import RequestLine
from tests.unit.store.helpers import AWKWARD_PROMPTS, custom_id, make_job, plan_batch, utf8_draft


def planned(
    store: Store, name: str, items: int, prompts: list[str] | None = None
) -> tuple[int, list[RequestLine]]:
    """A planned batch of a new job's items (with these prompts), and the lines it must
    stream."""
    drafts = None if prompts is None else [utf8_draft(i, p) for i, p in enumerate(prompts)]
    job = make_job(store, items, name=name, items=drafts)
    pending = store.pending_items(job.id, 0, 100)
    batch = plan_batch(store, job.id)
    return batch, [RequestLine(custom_id(store, p.id), p.params_json) for p in pending]


@pytest.mark.parametrize("requests", [1, 4, 5])
def test_a_batch_streams_its_own_requests_between_other_batches(
    store: Store, monkeypatch: pytest.MonkeyPatch, requests: int
) -> None:
    monkeypatch.setattr(batches_module, "REQUEST_PAGE_ROWS", 2)
    before, _ = planned(store, "before", 3)
    batch, lines = planned(store, "this", requests)
    after, _ = planned(store, "after", 3)

    assert list(store.request_lines(batch)) == lines
    assert len(list(store.request_lines(before))) == 3
    assert len(list(store.request_lines(after))) == 3


def test_pages_walk_the_primary_key_without_sorting_the_batch(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    if store.dialect != "sqlite":
        pytest.skip("the plan is SQLite's; PostgreSQL's depends on its statistics")
    monkeypatch.setattr(batches_module, "REQUEST_PAGE_ROWS", 2)
    batch, lines = planned(store, "job", 5)
    pages: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "JOIN items" in statement:
            pages.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        assert list(store.request_lines(batch)) == lines
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)

    assert len(pages) == 3  # 2 + 2 + 1: a short page ends it, with no empty one after
    statement, params = pages[0]
    with store.engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
    details = " | ".join(str(row[-1]) for row in plan)
    assert "INTEGER PRIMARY KEY" in details, details
    assert "TEMP B-TREE" not in details, details


def test_lines_carry_the_stored_params_byte_for_byte(store: Store) -> None:
    batch, lines = planned(store, "job", 0, AWKWARD_PROMPTS)

    streamed = list(store.request_lines(batch))

    assert streamed == lines
    assert "日本語".encode() in streamed[1].params_json
    assert b'\\"hi\\"' in streamed[2].params_json  # the JSON escapes, not what they stand for


def test_a_batch_interleaved_with_another_streams_only_its_own_requests_in_order(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two planners writing at once on PostgreSQL may interleave their batches' request
    # ids; here the ids are spread apart by hand, wider than a page.
    monkeypatch.setattr(batches_module, "REQUEST_PAGE_ROWS", 2)
    batch, lines = planned(store, "this", 5)
    other, other_lines = planned(store, "other", 5)
    with store.engine.begin() as conn:
        for which, offset in ((batch, 1000), (other, 1005)):
            conn.execute(
                text("UPDATE batch_requests SET id = id * 10 + :offset WHERE batch_id = :b"),
                {"offset": offset, "b": which},
            )

    assert list(store.request_lines(batch)) == lines
    assert list(store.request_lines(other)) == other_lines


def test_a_sqlite_store_in_utf16_plans_and_streams_the_same_bytes(tmp_path: Path) -> None:
    # SQLite keeps text in the encoding the file was created with; the sizes and lines
    # are then made here from the text instead of by the database.
    path = tmp_path / "utf16.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA encoding = 'UTF-16le'")
        conn.execute("CREATE TABLE fix_the_encoding (x)")
        conn.execute("DROP TABLE fix_the_encoding")
    conn.close()
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    store = Store.open(f"sqlite:///{path}")
    try:
        with store.engine.connect() as check:
            assert check.execute(text("PRAGMA encoding")).scalar() == "UTF-16le"
        items = [utf8_draft(i, p) for i, p in enumerate(AWKWARD_PROMPTS)]
        job = make_job(store, items=items)
        pending = store.pending_items(job.id, 0, 100)
        sizes = store.pending_sizes(job.id, 0, 100)
        batch, lines = planned(store, "streamed", 0, AWKWARD_PROMPTS)

        assert sizes == [(p.id, p.attempts, len(p.params_json)) for p in pending]
        assert list(store.request_lines(batch)) == lines
    finally:
        store.close()
