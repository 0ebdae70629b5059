"""Guard: the response cache and duplicate detection stay linear in repeated params.

Counted in SQLite virtual-machine instructions (a progress handler), never in time:
the count is the same on a busy machine as on an idle one. Answering N never-sent
items with identical params from one cached result, and choosing leaders among N
identical items, must grow with N, not N²: the cache used to look each item up with a
correlated subquery that scanned every item with the same params (10,000 identical
items took 9 s, 100,000 more than 19 minutes).

Four times the items may cost at most six times the work (linear gives about 4, the
quadratic lookup gave 16), and the number of statements is the same for both sizes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from orchestrator.domain.states import ItemStatus, ResultType
from orchestrator.store.engine import make_engine, upgrade
from orchestrator.store.queries import Store
from tests.unit.store.helpers import ENDPOINT, at, draft, ended_batch, make_job, resolve

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
