"""The job aggregate: recording a job with its items, finding, finishing and canceling it."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import StatementError
from sqlalchemy.pool import QueuePool

from orchestrator.domain.states import BatchStatus, ItemStatus, JobStatus, ResultType
from orchestrator.errors import JobNotFoundError, SpecError
from orchestrator.store import jobs as jobs_module
from orchestrator.store.queries import Store
from tests.unit.store.helpers import (
    ALL_BATCH_STATUSES,
    T0,
    at,
    count_rows,
    created_batch,
    creating_batch,
    draft,
    drafts,
    ended_batch,
    item_ids,
    item_statuses,
    make_job,
    new_job,
    plan_batch,
    reject_batch,
    resolve,
)

# -- create_job -------------------------------------------------------------------------


def test_create_job_records_every_item_as_pending(store: Store) -> None:
    job = store.create_job(new_job("qa"), drafts(3), now=T0)

    assert (job.name, job.status, job.items_total) == ("qa", JobStatus.ACTIVE, 3)
    assert store.get_job(job.id) == job
    rows = list(store.final_results(job.id))
    assert [(r["key"], r["ordinal"], r["status"]) for r in rows] == [
        ("k0", 0, ItemStatus.PENDING),
        ("k1", 1, ItemStatus.PENDING),
        ("k2", 2, ItemStatus.PENDING),
    ]
    pending = store.pending_items(job.id, 0, 10)
    assert [(p.attempts, p.params_json) for p in pending] == [(0, d.params_json) for d in drafts(3)]


class Refused(Exception):
    pass


def test_before_commit_raising_leaves_no_job_and_no_item(store: Store) -> None:
    counted: list[int] = []

    def over_budget(total: int) -> None:
        counted.append(total)
        raise Refused("the estimate is above budget_usd")

    with pytest.raises(Refused):
        store.create_job(new_job("big"), drafts(3), before_commit=over_budget, now=T0)

    assert counted == [3]
    assert store.find_job_by_name("big") is None
    assert store.list_jobs() == []
    assert count_rows(store, "items") == 0


@pytest.mark.parametrize(
    ("chunk_rows", "reason"),
    [
        pytest.param(1000, "(first seen on line 1)", id="within-one-chunk"),
        pytest.param(2, "(already used by an earlier row)", id="across-chunks"),
    ],
)
def test_a_duplicate_key_is_refused_naming_its_line(
    store: Store, monkeypatch: pytest.MonkeyPatch, chunk_rows: int, reason: str
) -> None:
    monkeypatch.setattr(jobs_module, "ITEM_CHUNK_ROWS", chunk_rows)
    rows = [draft(0, "a"), draft(1, "b"), draft(2, "a")]  # input lines 1, 2, 3

    with pytest.raises(SpecError, match="duplicate key 'a'") as caught:
        store.create_job(new_job(), rows, now=T0)

    assert caught.value.location == "jobs/test.toml: input line 3"
    assert reason in str(caught.value)
    assert store.list_jobs() == []
    assert count_rows(store, "items") == 0


def _key_lookups(store: Store) -> list[str]:
    """The statements that ask the store whether a chunk's keys are stored already."""
    asked: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("SELECT key FROM items"):
            asked.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    return asked


def test_distinct_keys_are_recorded_without_asking_the_store(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL checks each chunk's keys before its COPY; a key no earlier chunk can
    have had is not looked up (SQLite's insert refuses a stored key by itself)."""
    monkeypatch.setattr(jobs_module, "ITEM_CHUNK_ROWS", 50)
    asked = _key_lookups(store)

    job = store.create_job(new_job(), drafts(500), now=T0)

    assert job.items_total == 500
    assert asked == []


def test_keys_that_may_be_stored_are_looked_up_and_only_a_repeat_refused(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a table of 8 bits nearly every key may be an earlier chunk's: those are
    asked of the store, which refuses only the real repeat."""
    monkeypatch.setattr(jobs_module, "ITEM_CHUNK_ROWS", 50)
    monkeypatch.setattr(jobs_module.EarlierKeys, "BITS", 8)
    asked = _key_lookups(store)

    job = store.create_job(new_job("distinct"), drafts(500), now=T0)
    assert job.items_total == 500
    lookups = len(asked)
    rows = [*drafts(120), draft(120, "k7")]  # line 121 repeats line 8's key
    with pytest.raises(SpecError, match="duplicate key 'k7' \\(already used by an earlier row\\)"):
        store.create_job(new_job("repeat"), rows, now=T0)

    if store.engine.dialect.name == "postgresql":
        assert lookups == 9  # every chunk after the first
    assert store.find_job_by_name("repeat") is None


def test_earlier_keys_never_miss_a_key_added() -> None:
    earlier = jobs_module.EarlierKeys()
    first = [f"row-{n}" for n in range(10_000)]
    assert earlier.candidates(first) == []
    earlier.add(first)
    assert earlier.candidates(first) == first
    others = [f"other-{n}" for n in range(10_000)]
    assert len(earlier.candidates(others)) < 100  # 10,000 bits set of 2**25


def test_a_naive_datetime_is_refused_and_nothing_is_written(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        store.create_job(new_job("naive"), drafts(1), now=datetime(2026, 1, 1, 12))

    assert store.list_jobs() == []


# -- finding a job ----------------------------------------------------------------------


def test_a_missing_job_is_none_or_job_not_found(store: Store) -> None:
    make_job(store, 1, name="present")

    assert store.find_job_by_id(999) is None
    assert store.find_job_by_name("absent") is None
    with pytest.raises(JobNotFoundError, match="no job with id 999"):
        store.get_job(999)


def test_a_job_is_found_by_its_name_and_by_its_id(store: Store) -> None:
    job = make_job(store, 1, name="nightly")

    assert store.find_job_by_name("nightly") == job
    assert store.find_job_by_id(job.id) == job
    assert store.get_job(job.id) == job


def test_an_all_digit_name_is_a_name_not_an_id(store: Store) -> None:
    year = make_job(store, 1, name="2024")
    # A second job whose name spells the first job's id.
    other = make_job(store, 1, name=str(year.id))

    assert store.find_job_by_name("2024") == year
    assert store.find_job_by_id(2024) is None
    assert store.find_job_by_name(str(year.id)) == other
    assert store.get_job(year.id).name == "2024"


def test_list_jobs_filters_by_status_in_id_order(store: Store) -> None:
    first = make_job(store, 1, name="first")
    canceled = make_job(store, 1, name="canceled")
    store.cancel_job(canceled.id, at(1))
    last = make_job(store, 1, name="last")

    assert [j.id for j in store.list_jobs()] == [first.id, canceled.id, last.id]
    assert [j.id for j in store.list_jobs([JobStatus.ACTIVE])] == [first.id, last.id]
    assert [j.id for j in store.list_jobs([JobStatus.CANCELED])] == [canceled.id]


@pytest.mark.parametrize("scoped", [False, True])
def test_active_job_ids_lists_active_jobs_optionally_one(store: Store, scoped: bool) -> None:
    first = make_job(store, 1, name="first")
    second = make_job(store, 1, name="second")
    store.cancel_job(make_job(store, 1, name="canceled").id, at(1))

    got = store.active_job_ids(second.id if scoped else None)

    assert sorted(got) == ([second.id] if scoped else [first.id, second.id])


def test_job_of_batch_names_the_batch_job(store: Store) -> None:
    make_job(store, 1, name="other")
    job = make_job(store, 1, name="mine")

    assert store.job_of_batch(plan_batch(store, job.id)).name == "mine"


# -- finish_job_if_done -----------------------------------------------------------------

#: Brings a two-item job to some state: (store, job id, its item ids).
Scenario = Callable[[Store, int, list[int]], None]


def _nothing_sent(store: Store, job_id: int, ids: list[int]) -> None:
    pass


def _all_queued(store: Store, job_id: int, ids: list[int]) -> None:
    plan_batch(store, job_id)


def _one_failed_one_pending(store: Store, job_id: int, ids: list[int]) -> None:
    reject_batch(store, job_id, ids[:1])


def _one_succeeded_one_to_retry(store: Store, job_id: int, ids: list[int]) -> None:
    ended = ended_batch(store, job_id, [ResultType.SUCCEEDED, ResultType.ERRORED])
    resolve(store, ended, [ItemStatus.SUCCEEDED, ItemStatus.PENDING])


def _all_failed(store: Store, job_id: int, ids: list[int]) -> None:
    reject_batch(store, job_id)


def _succeeded_and_canceled(store: Store, job_id: int, ids: list[int]) -> None:
    ended = ended_batch(store, job_id, [ResultType.SUCCEEDED, ResultType.CANCELED])
    resolve(store, ended, [ItemStatus.SUCCEEDED, ItemStatus.CANCELED])


@pytest.mark.parametrize(
    ("scenario", "done"),
    [
        pytest.param(_nothing_sent, False, id="nothing-sent"),
        pytest.param(_all_queued, False, id="all-queued"),
        pytest.param(_one_failed_one_pending, False, id="one-failed-one-pending"),
        pytest.param(_one_succeeded_one_to_retry, False, id="one-succeeded-one-to-retry"),
        pytest.param(_all_failed, True, id="all-failed"),
        pytest.param(_succeeded_and_canceled, True, id="succeeded-and-canceled"),
    ],
)
def test_a_job_is_done_only_when_every_item_is_terminal(
    store: Store, scenario: Scenario, done: bool
) -> None:
    job = make_job(store, 2)
    scenario(store, job.id, item_ids(store, job.id))

    assert store.finish_job_if_done(job.id, at(900)) is done

    after = store.get_job(job.id)
    assert after.status is (JobStatus.DONE if done else JobStatus.ACTIVE)
    assert after.finished_at == (at(900) if done else None)


def test_finish_job_if_done_finishes_a_job_once(store: Store) -> None:
    job = make_job(store, 1)
    reject_batch(store, job.id)
    assert store.finish_job_if_done(job.id, at(1))

    assert store.finish_job_if_done(job.id, at(2)) is False
    assert store.get_job(job.id).finished_at == at(1)


def test_finish_job_if_done_leaves_a_canceled_job_canceled(store: Store) -> None:
    job = make_job(store, 1)
    store.cancel_job(job.id, at(1))  # its one item is canceled: every item is terminal

    assert store.finish_job_if_done(job.id, at(2)) is False
    after = store.get_job(job.id)
    assert (after.status, after.finished_at) == (JobStatus.CANCELED, None)


# -- cancel_job -------------------------------------------------------------------------


@pytest.mark.parametrize("create_status", [BatchStatus.CREATING, BatchStatus.UNKNOWN])
def test_cancel_job_drops_what_was_not_sent_and_flags_what_was(
    store: Store, create_status: BatchStatus
) -> None:
    job = make_job(store, 6)
    ids = item_ids(store, job.id)  # ids[0] stays pending
    planned = plan_batch(store, job.id, ids[1:2])
    running = created_batch(store, job.id, ids[2:3])
    canceling = created_batch(store, job.id, ids[3:4], status=BatchStatus.CANCELING)
    ended = created_batch(store, job.id, ids[4:5], status=BatchStatus.ENDED)
    create = creating_batch(store, job.id, ids[5:6])
    if create_status is BatchStatus.UNKNOWN:
        assert store.mark_unknown(create, "read timeout", T0, None)

    assert store.cancel_job(job.id, at(10)) == 3  # running, canceling and the create

    assert store.get_job(job.id).status is JobStatus.CANCELED
    assert item_statuses(store, job.id) == {
        ids[0]: ItemStatus.CANCELED,
        ids[1]: ItemStatus.CANCELED,
        ids[2]: ItemStatus.QUEUED,
        ids[3]: ItemStatus.QUEUED,
        ids[4]: ItemStatus.QUEUED,
        ids[5]: ItemStatus.QUEUED,
    }
    flags = {b.id: b.cancel_requested for b in store.batches(ALL_BATCH_STATUSES, job.id)}
    assert planned not in flags  # deleted: it will never be sent
    assert flags == {running: True, canceling: True, ended: False, create.row_id: True}
    assert store.jobs_with_pending_items() == []


# -- create_job's commit on SQLite: the write-ahead log copied by a thread -------------
# (That the commit itself no longer copies it is a matter of time: bench/RESULTS.md.)


@pytest.fixture
def sqlite_store(sqlite_template: Path, tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "store.db"
    shutil.copyfile(sqlite_template, path)
    opened = Store.open(f"sqlite:///{path}")
    try:
        yield opened
    finally:
        opened.close()


def _wal_frames(store: Store) -> tuple[int, int]:
    """(frames in the log, frames of it copied into the database file)."""
    with store.engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        _busy, log, copied = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(log), int(copied)


def _join_checkpoints() -> None:
    for thread in threading.enumerate():
        if thread.name == "wal-copy":
            thread.join(10)


def _autocheckpoints(store: Store) -> list[int]:
    """The automatic checkpoint setting of every connection the pool holds."""
    pool = store.engine.pool
    assert isinstance(pool, QueuePool)
    held = [store.engine.connect() for _ in range(pool.checkedin())]
    try:
        found = []
        for conn in held:
            driver = conn.connection.driver_connection
            assert driver is not None
            found.append(int(driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0]))
        return found
    finally:
        for conn in held:
            conn.close()


@pytest.mark.parametrize("outcome", ["committed", "rolled back"])
def test_a_job_s_commit_leaves_the_log_copy_to_a_thread_and_its_connection_as_it_was(
    sqlite_store: Store, outcome: str
) -> None:
    store = sqlite_store
    assert set(_autocheckpoints(store)) == {1000}  # SQLite's default, on each
    items = [draft(n, prompt="x" * 500) for n in range(3000)]  # a log of some 1,000 pages
    if outcome == "committed":
        store.create_job(new_job("big"), items, now=T0)
    else:
        with pytest.raises(SpecError):
            store.create_job(new_job("big"), [*items, draft(0)], now=T0)  # a repeated key
    _join_checkpoints()

    assert set(_autocheckpoints(store)) == {1000}  # the setting given back
    log, copied = _wal_frames(store)
    assert log == copied  # every frame of the log is in the database file
    assert count_rows(store, "items") == (3000 if outcome == "committed" else 0)
