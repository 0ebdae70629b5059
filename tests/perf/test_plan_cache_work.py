"""Guard: the response cache and duplicate detection stay linear in repeated params.

Counted in SQLite virtual-machine instructions (a progress handler), never in time:
the count is the same on a busy machine as on an idle one. Answering N never-sent
items with identical params from one cached result, and choosing leaders among N
identical items, must grow with N, not N²: the cache used to look each item up with a
correlated subquery that scanned every item with the same params (10,000 identical
items took 9 s, 100,000 more than 19 minutes).

Four times the items may cost at most six times the work (linear gives about 4, the
quadratic lookup gave 16), and the number of statements is the same for both sizes.

The cache lookup starts from whichever side is smaller (the store's results or the
job's never-sent items): each side is guarded, and with no result in the store the
lookup costs the same for any number of items. Recording a planned batch (its items
moved into it and its requests written) is guarded the same way: linear work in the
same number of statements for 2,000 requests as for 8,000.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from orchestrator.domain.states import ItemStatus, ResultType
from orchestrator.store import planning
from orchestrator.store.engine import make_engine, upgrade
from orchestrator.store.queries import Store
from orchestrator.store.records import PlannedRequest
from tests.unit.store.helpers import (
    ENDPOINT,
    TTL,
    at,
    custom_id,
    draft,
    drafts,
    ended_batch,
    make_job,
    resolve,
)

#: VM instructions per progress-handler call.
STEP = 1000
SMALL, LARGE = 2_000, 8_000
#: Linear work grows about 4x from SMALL to LARGE; quadratic 16x.
MAX_GROWTH = 6.0


class Work:
    """SQLite VM instructions and statements run through one engine."""

    def __init__(self) -> None:
        self.ticks = 0
        self.statements = 0

    def tick(self) -> int:
        self.ticks += 1
        return 0  # 0: go on

    def on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        assert isinstance(dbapi_connection, sqlite3.Connection)
        dbapi_connection.set_progress_handler(self.tick, STEP)

    def on_statement(self, *_args: Any) -> None:
        self.statements += 1


@pytest.fixture
def measured(tmp_path: Path) -> Iterator[tuple[Store, Work]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    store = Store.open(url)
    work = Work()
    event.listen(store.engine, "connect", work.on_connect)
    event.listen(store.engine, "before_cursor_execute", work.on_statement)
    store.engine.dispose()  # new connections get the progress handler
    try:
        yield store, work
    finally:
        store.close()


def _identical(n: int) -> list[Any]:
    return [draft(i, prompt="the same question") for i in range(n)]


def test_the_cache_answers_repeated_params_in_linear_work(
    measured: tuple[Store, Work],
) -> None:
    store, work = measured
    source = make_job(store, items=_identical(1), name="source")
    answered = ended_batch(store, source.id, [ResultType.SUCCEEDED])
    resolve(store, answered, [ItemStatus.SUCCEEDED])

    cost: dict[int, tuple[int, int]] = {}
    for n in (SMALL, LARGE):
        job = make_job(store, items=_identical(n), name=f"job{n}", dedupe=False)
        ticks, statements = work.ticks, work.statements
        hits, _ = store.apply_response_cache(job.id, at(700), ENDPOINT)
        assert hits == n
        cost[n] = (work.ticks - ticks, work.statements - statements)

    growth = cost[LARGE][0] / max(cost[SMALL][0], 1)
    assert growth <= MAX_GROWTH, f"cache work grew {growth:.1f}x for {LARGE // SMALL}x items"
    assert cost[LARGE][1] == cost[SMALL][1], "statements must not grow with the items"


def test_choosing_leaders_among_repeated_params_is_linear_work(
    measured: tuple[Store, Work],
) -> None:
    store, work = measured
    cost: dict[int, int] = {}
    for n in (SMALL, LARGE):
        ticks = work.ticks
        job = make_job(store, items=_identical(n), name=f"job{n}")
        cost[n] = work.ticks - ticks
        assert len(store.pending_items(job.id, 0, 10)) == 1  # one leader, n - 1 followers

    growth = cost[LARGE] / max(cost[SMALL], 1)
    assert growth <= MAX_GROWTH, f"recording grew {growth:.1f}x for {LARGE // SMALL}x items"


def test_the_cache_looked_up_from_the_items_side_is_linear_work(
    measured: tuple[Store, Work], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The side a store with more results than the job's never-sent items takes.
    monkeypatch.setattr(planning, "_cache_side", lambda _s, _job_id: "items")
    test_the_cache_answers_repeated_params_in_linear_work(measured)


def test_the_cache_work_does_not_grow_with_the_items_in_a_store_without_results(
    measured: tuple[Store, Work],
) -> None:
    store, work = measured
    cost: dict[int, int] = {}
    for n in (SMALL, LARGE):
        job = make_job(store, items=drafts(n), name=f"job{n}")
        ticks = work.ticks
        assert store.apply_response_cache(job.id, at(700), ENDPOINT) == (0, 0.0)
        cost[n] = work.ticks - ticks

    # Nothing to answer from: no lookup per item (4x the items would be 4x the work).
    assert cost[LARGE] <= 2 * max(cost[SMALL], 1), f"{cost}"


def test_recording_a_planned_batch_is_linear_work_in_a_fixed_number_of_statements(
    measured: tuple[Store, Work],
) -> None:
    store, work = measured
    cost: dict[int, tuple[int, int]] = {}
    for n in (SMALL, LARGE):
        job = make_job(store, items=drafts(n), name=f"job{n}")
        pending = store.pending_items(job.id, 0, n)
        requests = [PlannedRequest(p.id, 1, custom_id(store, p.id, 1)) for p in pending]
        lease = store.claim_job(job.id, "planner", at(0), TTL)
        assert lease is not None
        ticks, statements = work.ticks, work.statements
        assert store.add_planned_batch(lease, requests, 1000, at(1)) is not None
        cost[n] = (work.ticks - ticks, work.statements - statements)
        assert store.pending_items(job.id, 0, 10) == []

    growth = cost[LARGE][0] / max(cost[SMALL][0], 1)
    assert growth <= MAX_GROWTH, f"recording grew {growth:.1f}x for {LARGE // SMALL}x requests"
    assert cost[LARGE][1] == cost[SMALL][1], "statements must not grow with the requests"
