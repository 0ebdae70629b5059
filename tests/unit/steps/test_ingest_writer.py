"""The ingest's transactions that span several chunks (``ResultWriter``) and its reader
thread (``_ReadAhead``): fewer commits, the same guarantees as one transaction a chunk.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from orchestrator.api.jsonl import ReadAhead
from orchestrator.domain.states import BatchStatus, ItemStatus, ResultType
from orchestrator.store import result_writer
from orchestrator.store.queries import Store
from orchestrator.store.records import (
    QuarantineLine,
    RequestRef,
    ResultRow,
    ResultValues,
    Route,
)
from orchestrator.store.result_writer import _Resolver
from tests.unit.store.helpers import (
    TTL,
    at,
    count_rows,
    ended_batch,
    item_statuses,
    make_job,
    result_row,
)


def _row(batch_id: int, item_id: int, custom: str) -> ResultValues:
    return ResultValues(batch_id, item_id, custom, 1, ResultType.EXPIRED)


def test_rows_are_kept_once_committed_and_routes_come_from_the_open_transaction(
    store: Store,
) -> None:
    job = make_job(store, 3)
    ended = ended_batch(store, job.id)
    first, second, third = ended.refs
    with store.result_writer(ended.lease) as writer:
        routes = writer.route([first.custom_id, "zz9-1-1"])
        assert routes == {first.custom_id: Route(first.item_id, 1)}
        assert writer.store([_row(ended.batch_id, first.item_id, first.custom_id)], [])
        assert writer.pending == 1
        assert writer.commit(at(610), TTL)
        assert writer.pending == 0
        rows = [_row(ended.batch_id, r.item_id, r.custom_id) for r in (first, second)]
        assert writer.store(rows, [QuarantineLine(ended.batch_id, 9, None, "{", "bad")])
    # What the block left uncommitted is committed when it ends.
    assert store.count_results(ended.batch_id) == 2
    assert count_rows(store, "quarantine") == 1
    assert third.custom_id not in routes


def test_a_block_that_raises_keeps_only_what_was_committed(store: Store) -> None:
    job = make_job(store, 2)
    ended = ended_batch(store, job.id)
    first, second = ended.refs

    def broken_download() -> None:
        with store.result_writer(ended.lease) as writer:
            assert writer.store([_row(ended.batch_id, first.item_id, first.custom_id)], [])
            assert writer.commit(at(610), TTL)
            assert writer.store([_row(ended.batch_id, second.item_id, second.custom_id)], [])
            raise RuntimeError("download broke")

    with pytest.raises(RuntimeError, match="download broke"):
        broken_download()
    assert store.count_results(ended.batch_id) == 1


def test_commit_extends_the_lease_so_no_one_takes_the_batch_over(store: Store) -> None:
    job = make_job(store, 1)
    ended = ended_batch(store, job.id)  # leased at 600 for TTL seconds
    with store.result_writer(ended.lease) as writer:
        assert writer.store([], [QuarantineLine(ended.batch_id, 1, None, "{", "bad")])
        assert writer.commit(at(600 + TTL - 1), TTL)

    assert store.claim_batches([BatchStatus.ENDED], "worker-b", at(600 + TTL + 1), TTL) == []
    assert store.claim_batches([BatchStatus.ENDED], "worker-b", at(600 + 2 * TTL), TTL)


def test_a_lease_taken_over_between_transactions_stops_the_writer(store: Store) -> None:
    job = make_job(store, 2)
    ended = ended_batch(store, job.id)
    first, second = ended.refs
    with store.result_writer(ended.lease) as writer:
        assert writer.store([_row(ended.batch_id, first.item_id, first.custom_id)], [])
        assert writer.commit(at(610), TTL)
        # Between two transactions of the writer (on SQLite, the only time another
        # worker can write), the lease expires and is taken over.
        assert store.claim_batches([BatchStatus.ENDED], "worker-b", at(610 + 2 * TTL), TTL)
        row = _row(ended.batch_id, second.item_id, second.custom_id)
        assert writer.store([row], []) is False
        assert writer.commit(at(612), TTL) is False

    assert store.count_results(ended.batch_id) == 1


def test_a_lease_lost_before_a_commit_rolls_the_open_transaction_back(
    store: Store, store_url: str
) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("on SQLite the open transaction keeps every other writer out")
    job = make_job(store, 1)
    ended = ended_batch(store, job.id)
    [ref] = ended.refs
    with store.result_writer(ended.lease) as writer:
        assert writer.store([_row(ended.batch_id, ref.item_id, ref.custom_id)], [])
        # Claims skip a batch whose rows this transaction references; a fencing change
        # made some other way is still seen at the commit.
        other = create_engine(store_url)
        try:
            with other.begin() as conn:
                conn.execute(text("UPDATE batches SET lease_version = lease_version + 1"))
        finally:
            other.dispose()
        assert writer.commit(at(610), TTL) is False

    assert store.count_results(ended.batch_id) == 0


def test_a_writer_leaves_the_store_checkpointing_as_before(store: Store, store_url: str) -> None:
    """On SQLite the writer's connection copies no log into the database itself (a
    thread of the writer's does): once the block is over, the connection checkpoints
    again as SQLite does by default, and the thread is gone."""
    if not store_url.startswith("sqlite"):
        pytest.skip("SQLite's write-ahead log")
    job = make_job(store, 2)
    ended = ended_batch(store, job.id)
    first, second = ended.refs
    with store.result_writer(ended.lease) as writer:
        assert writer.store([_row(ended.batch_id, first.item_id, first.custom_id)], [])
        assert writer.commit(at(610), TTL)
        assert writer.store([_row(ended.batch_id, second.item_id, second.custom_id)], [])

    assert store.count_results(ended.batch_id) == 2
    assert not [t for t in threading.enumerate() if t.name == "wal-checkpoint"]
    pool = store.engine.pool
    idle = [store.engine.connect() for _ in range(pool.checkedin())]  # type: ignore[attr-defined]
    try:
        # Read on the driver's connections: through SQLAlchemy, each would begin a
        # transaction (BEGIN IMMEDIATE), and wait for the one before.
        drivers: list[Any] = [c.connection.driver_connection for c in idle]
        settings = {d.execute("PRAGMA wal_autocheckpoint").fetchone()[0] for d in drivers}
    finally:
        for conn in idle:
            conn.close()
    assert settings == {1000}  # SQLite's default, on every connection of the pool


def _answer(batch_id: int, ref: RequestRef, output_error: str | None = None) -> ResultRow:
    row = result_row(batch_id, ref, ResultType.SUCCEEDED)
    return dataclasses.replace(row, output_error=output_error)


def test_on_postgresql_committed_answers_are_resolved_while_the_download_goes_on(
    store: Store, store_url: str
) -> None:
    """On PostgreSQL a thread of the writer's resolves the items whose succeeded
    answers each commit stored, as ``resolve_succeeded`` would, and is gone once the
    writer is; on SQLite they wait for it. Either way ``resolve_succeeded`` leaves
    every item as it always did."""
    on_postgresql = store_url.startswith("postgresql")
    job = make_job(store, 4)
    ended = ended_batch(store, job.id)  # no line stored yet
    answered, invalid, expired, last = ended.refs
    with store.result_writer(ended.lease) as writer:
        rows: list[ResultRow | ResultValues] = [
            _answer(ended.batch_id, answered),
            _answer(ended.batch_id, invalid, output_error="not valid JSON"),
            _row(ended.batch_id, expired.item_id, expired.custom_id),
        ]
        assert writer.store(rows, [])
        assert writer.commit(at(610), TTL)
    # An answer stored otherwise (no writer): left to resolve_succeeded.
    assert store.upsert_results(ended.lease, [_answer(ended.batch_id, last)], [])

    assert not [t for t in threading.enumerate() if t.name == "resolve-answers"]
    statuses = item_statuses(store, job.id)
    queued, succeeded = ItemStatus.QUEUED, ItemStatus.SUCCEEDED
    assert statuses[answered.item_id] is (succeeded if on_postgresql else queued)
    assert [statuses[r.item_id] for r in (invalid, expired, last)] == [queued] * 3
    answers = {row["item_id"]: row["text"] for row in store.final_results(job.id)}
    text = f"answer to {answered.custom_id}"
    assert answers[answered.item_id] == (text if on_postgresql else None)

    assert store.resolve_succeeded(ended.lease, at(620))
    statuses = item_statuses(store, job.id)
    assert [statuses[r.item_id] for r in ended.refs] == [succeeded, queued, queued, succeeded]


def test_the_resolving_thread_touches_nothing_once_the_lease_is_lost(
    store: Store, store_url: str
) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("the thread resolves on PostgreSQL only")
    job = make_job(store, 1)
    ended = ended_batch(store, job.id)
    [ref] = ended.refs
    with store.result_writer(ended.lease) as writer:
        assert writer.store([_answer(ended.batch_id, ref)], [])
        writer.finish()  # committed, nothing asked of the thread
    taken_over = dataclasses.replace(ended.lease, version=ended.lease.version + 1)
    resolver = _Resolver(store, taken_over)
    resolver.request(0, at(610))
    resolver.close()

    assert item_statuses(store, job.id)[ref.item_id] is ItemStatus.QUEUED


def test_a_pass_that_runs_too_long_is_stopped_and_left_to_the_last_step(
    store: Store, store_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A pass whose plan went wrong holds the ingest up no longer than the timeout."""
    if not store_url.startswith("postgresql"):
        pytest.skip("the thread resolves on PostgreSQL only")
    monkeypatch.setattr(result_writer, "RESOLVE_PASS_TIMEOUT_MS", 200)
    monkeypatch.setattr(
        result_writer, "succeeded_answers_resolved", lambda *_args: text("SELECT pg_sleep(30)")
    )
    job = make_job(store, 1)
    ended = ended_batch(store, job.id)
    [ref] = ended.refs
    started = time.monotonic()
    with store.result_writer(ended.lease) as writer:
        assert writer.store([_answer(ended.batch_id, ref)], [])
        assert writer.commit(at(610), TTL)

    assert time.monotonic() - started < 10
    assert item_statuses(store, job.id)[ref.item_id] is ItemStatus.QUEUED
    assert "statement timeout" in caplog.text
    assert store.resolve_succeeded(ended.lease, at(620))
    assert item_statuses(store, job.id)[ref.item_id] is ItemStatus.SUCCEEDED


# -- the reader thread ------------------------------------------------------------------


def test_read_ahead_hands_over_every_item_in_order_and_then_what_was_raised() -> None:
    def source() -> Iterator[int]:
        yield from range(5)
        raise ConnectionError("cut")

    seen: list[int] = []
    with ReadAhead(source()) as ahead, pytest.raises(ConnectionError, match="cut"):
        seen.extend(ahead.items(lambda: None, 0.05))
    assert seen == [0, 1, 2, 3, 4]


def test_read_ahead_calls_on_idle_while_the_next_item_is_late() -> None:
    release = threading.Event()
    idle: list[int] = []

    def source() -> Iterator[str]:
        yield "first"
        release.wait(10)
        yield "second"

    def on_idle() -> None:
        idle.append(1)
        release.set()

    with ReadAhead(source()) as ahead:
        assert list(ahead.items(on_idle, 0.05)) == ["first", "second"]
    assert idle == [1]


def test_read_ahead_reads_at_most_one_item_ahead_and_stops_when_left() -> None:
    read: list[int] = []
    taken = threading.Event()

    def source() -> Iterator[int]:
        for n in range(100):
            read.append(n)
            yield n

    with ReadAhead(source()) as ahead:
        items = ahead.items(lambda: None, 0.05)
        assert next(items) == 0
        taken.wait(0.2)  # time for the thread to run ahead, if it would
        assert len(read) <= 2  # the one taken, and the next one ready
    thread = ahead._thread
    thread.join(5)
    assert not thread.is_alive()
    assert len(read) <= 3
