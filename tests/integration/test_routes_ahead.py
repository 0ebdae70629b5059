"""A batch's route table is read while its create runs, and its download uses that
table; a create that made nothing, or may have, keeps none (``steps/routes.py``)."""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.domain.states import BatchStatus
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import StepContext, plan, submit
from orchestrator.steps.context import utcnow
from orchestrator.steps.routes import RouteTables
from orchestrator.store.queries import Store
from orchestrator.store.records import RouteTable
from tests.integration.conftest import (
    MakeCtx,
    assert_job_complete,
    new_job,
    run_job,
    write_job,
)


def _count_reads(ctx: StepContext, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Each ``batch_routes`` read of ``ctx.store``: (batch row id, the reading thread)."""
    reads: list[tuple[int, str]] = []
    read = ctx.store.batch_routes

    def counted(batch_id: int) -> RouteTable | None:
        reads.append((batch_id, threading.current_thread().name))
        return read(batch_id)

    monkeypatch.setattr(ctx.store, "batch_routes", counted)
    return reads


def test_the_download_uses_the_table_read_while_the_create_ran(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make_ctx() as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "ahead", 30, max_requests=10))
        reads = _count_reads(ctx, monkeypatch)
        plan(ctx, utcnow())
        assert submit(ctx, utcnow()).details == {"created": 3}
        # Three batches, three tables read, each on a thread of its own while its
        # create ran; the two latest are kept.
        batches = ctx.store.batches(list(BatchStatus), job_id)
        assert sorted(batch for batch, _ in reads) == [b.id for b in batches]
        assert {thread for _, thread in reads} == {"routes-ahead"}
        assert len(ctx.routes) == 2
        report = run_job(ctx, job_id)
        assert report.items == {"succeeded": 30}
        assert_job_complete(ctx, job_id)
        # The first batch's table had been dropped (only two are kept): its download
        # read it again; the other two used theirs.
        assert len(reads) == 4
        assert reads[-1][1] != "routes-ahead"
        assert len(ctx.routes) == 0


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (529, "deferred"),  # refused before processing: planned again
        (500, "unknown"),  # the body may have been processed
    ],
)
def test_a_create_not_known_made_keeps_no_table(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path, status: int, outcome: str
) -> None:
    with make_ctx(max_retries=0) as ctx:
        new_job(ctx, write_job(tmp_path, outcome, 5))
        plan(ctx, utcnow())
        sim.state.faults.inject(status)
        assert submit(ctx, utcnow()).details == {outcome: 1}
        assert len(ctx.routes) == 0


class _Reads:
    """A stand-in for the store's one method ``RouteTables`` calls, counting calls."""

    def __init__(self, answer: Callable[[int], RouteTable | None]) -> None:
        self.calls: list[int] = []
        self._answer = answer

    def batch_routes(self, batch_id: int) -> RouteTable | None:
        self.calls.append(batch_id)
        return self._answer(batch_id)


def _table(batch_id: int) -> RouteTable:
    return RouteTable("tag", array("q", [batch_id]), array("l", [1]))


def _tables(reads: _Reads) -> tuple[RouteTables, Store]:
    store: Store = reads  # type: ignore[assignment]
    return RouteTables(keep=2), store


def test_a_table_is_taken_only_for_the_remote_batch_it_was_kept_for() -> None:
    reads = _Reads(_table)
    tables, store = _tables(reads)
    tables.read_ahead(store, 7)
    tables.created(7, "msgbatch_a")
    # Another remote batch under the same row id (the row deleted, its id used again).
    assert tables.take(store, 7, "msgbatch_b") is not None
    assert reads.calls == [7, 7]
    tables.read_ahead(store, 8)
    tables.created(8, "msgbatch_c")
    taken = tables.take(store, 8, "msgbatch_c")
    assert taken is not None
    assert taken.get("tag-8-1") is not None
    assert reads.calls == [7, 7, 8]  # no second read
    assert len(tables) == 0


def test_a_table_whose_create_did_not_answer_is_not_used() -> None:
    reads = _Reads(_table)
    tables, store = _tables(reads)
    tables.read_ahead(store, 3)  # the create never recorded a batch
    tables.take(store, 3, "msgbatch_a")
    assert reads.calls == [3, 3]


def test_a_read_that_failed_is_made_again_by_the_download() -> None:
    failures = iter([True])

    def answer(batch_id: int) -> RouteTable | None:
        if next(failures, False):
            raise OSError("store gone")
        return _table(batch_id)

    reads = _Reads(answer)
    tables, store = _tables(reads)
    tables.read_ahead(store, 4)
    tables.created(4, "msgbatch_a")
    taken = tables.take(store, 4, "msgbatch_a")
    assert taken is not None
    assert taken.get("tag-4-1") is not None
    assert reads.calls == [4, 4]


def test_a_batch_whose_custom_ids_are_not_ours_keeps_its_none() -> None:
    reads = _Reads(lambda _batch: None)  # route by query
    tables, store = _tables(reads)
    tables.read_ahead(store, 5)
    tables.created(5, "msgbatch_a")
    assert tables.take(store, 5, "msgbatch_a") is None
    assert reads.calls == [5]


def test_only_the_latest_tables_are_kept() -> None:
    reads = _Reads(_table)
    tables, store = _tables(reads)
    for batch in (1, 2, 3):
        tables.read_ahead(store, batch)
        tables.created(batch, f"msgbatch_{batch}")
    assert len(tables) == 2
    tables.take(store, 1, "msgbatch_1")  # dropped: read again
    tables.take(store, 3, "msgbatch_3")
    assert reads.calls == [1, 2, 3, 1]
