"""The create body's source, ``request_lines``: exactly one batch's requests, in planned
order, page by page, and (on SQLite) pages the database reads without sorting the
whole batch for each of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from orchestrator.store import batches as batches_module
from orchestrator.store.queries import Store
from orchestrator.store.records import RequestLine
from tests.unit.store.helpers import custom_id, make_job, plan_batch


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


def planned(store: Store, name: str, items: int) -> tuple[int, list[RequestLine]]:
    """A planned batch of a new job's items, and the lines it must stream."""
    job = make_job(store, items, name=name)
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
