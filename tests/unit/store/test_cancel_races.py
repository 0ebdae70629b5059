"""``cancel_job`` racing a worker that is writing to the same job.

The user's cancel (``orchestrator cancel``) runs while a daemon plans or submits
the same job. Each test holds one side's transaction open right after its write
(so its locks are held), starts the other side from a second ``Store``, waits
until it is blocked behind the first, then lets the first commit. The outcome
must be the serial one for that order: nothing of a canceled job is left to be
sent, no create in flight is deleted, and neither side fails.

SQLite serializes writers (``BEGIN IMMEDIATE``). On PostgreSQL (READ COMMITTED)
every change a cancel must not cross locks the job's row first, so the two sides
run one after the other there too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event, text

from orchestrator.domain.states import BatchStatus, ItemStatus, JobStatus
from orchestrator.store.queries import Store
from orchestrator.store.records import PlannedRequest
from tests.unit.store.helpers import (
    ALL_BATCH_STATUSES,
    ENDPOINT,
    T0,
    TTL,
    at,
    creating_batch,
    custom_id,
    item_ids,
    item_statuses,
    lease_batch,
    make_job,
    plan_batch,
)

WAIT_S = 20.0
#: Sessions on this database waiting for a lock (a row lock is a wait on a transaction).
LOCK_WAITERS = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


class Pause:
    """Holds a store's transaction open right after a statement containing ``fragment``."""

    def __init__(self, store: Store, fragment: str) -> None:
        self.store = store
        self.fragment = fragment
        self.reached = threading.Event()
        self.go = threading.Event()
        event.listen(store.engine, "after_cursor_execute", self._hook)

    def _hook(self, *args: Any) -> None:
        statement: str = args[2]
        if self.fragment in statement and not self.reached.is_set():
            self.reached.set()
            if not self.go.wait(WAIT_S):
                raise TimeoutError("the paused transaction was never let go")

    def remove(self) -> None:
        event.remove(self.store.engine, "after_cursor_execute", self._hook)


@dataclass
class Outcome:
    values: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, Outcome]:
    outcome = Outcome()

    def run() -> None:
        try:
            outcome.values.append(call())
        except Exception as exc:  # the test reports it; pytest would only warn
            outcome.errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_until_blocked(store: Store) -> None:
    """Until some transaction waits for a row lock (PostgreSQL); SQLite's writers
    queue at BEGIN IMMEDIATE, which can't be observed without queueing too."""
    if store.dialect != "postgresql":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:
            if conn.execute(LOCK_WAITERS).scalar():
                return
        time.sleep(0.02)
    raise AssertionError("the second side never waited for the first one's locks")


@pytest.fixture
def canceler(store_url: str) -> Iterator[Store]:
    """A second store on the same database, as the ``orchestrator cancel`` process."""
    other = Store.open(store_url)  # opened first: SQLite would queue it behind the pause
    try:
        yield other
    finally:
        other.close()


def race(
    first: Store, first_call: Callable[[], Any], second_call: Callable[[], Any], fragment: str
) -> tuple[Outcome, Outcome]:
    """Run ``first_call`` on ``first`` until its statement containing ``fragment``,
    hold its transaction open, run ``second_call`` until it waits for the first's
    locks, then let both finish."""
    pause = Pause(first, fragment)
    threads: list[threading.Thread] = []
    try:
        first_thread, first_outcome = in_thread(first_call)
        threads.append(first_thread)
        try:
            assert pause.reached.wait(WAIT_S), "the first side never reached its paused statement"
            second_thread, second_outcome = in_thread(second_call)
            threads.append(second_thread)
            wait_until_blocked(first)
        finally:
            pause.go.set()
        for thread in threads:
            thread.join(WAIT_S)
    finally:
        pause.remove()
    assert not any(thread.is_alive() for thread in threads), "a side never finished"
    return first_outcome, second_outcome


#: A worker's write to the job: (the main store, the job id) -> the call to race.
WorkerWrite = Callable[[Store, int], Callable[[], Any]]


def _plan(store: Store, job_id: int) -> Callable[[], Any]:
    lease = store.claim_job(job_id, "planner", T0, TTL)
    assert lease is not None
    requests = [PlannedRequest(i, 1, custom_id(store, i)) for i in item_ids(store, job_id)]
    return lambda: store.add_planned_batch(lease, requests, 100, at(1))


def _return_to_planned(store: Store, job_id: int) -> Callable[[], Any]:
    lease = creating_batch(store, job_id)
    return lambda: store.return_to_planned(lease, "overloaded", at(60), at(1))


def _mark_creating(store: Store, job_id: int) -> Callable[[], Any]:
    lease = lease_batch(store, plan_batch(store, job_id))
    return lambda: store.mark_creating(lease, at(1), ENDPOINT)


#: The statement after which the worker's transaction is held open.
WORKER_PAUSE: dict[WorkerWrite, str] = {
    _plan: "UPDATE items SET status",  # the items move to queued
    _return_to_planned: "UPDATE batches SET status",
    _mark_creating: "UPDATE batches SET status",
}
#: The cancel's last statement: every change it makes is done and locked.
CANCEL_PAUSE = "UPDATE batches SET cancel_requested"
PLANNED_ID = "planned-batch-id"
CANCELED = ItemStatus.CANCELED
QUEUED = ItemStatus.QUEUED
FLAGGED_CREATE = (BatchStatus.CREATING, True)


@pytest.mark.parametrize(
    ("write", "worker_first", "worker_returns", "cancel_returns", "batches_left", "items"),
    [
        # Planned, then canceled: the new planned batch is dropped with its items.
        pytest.param(_plan, True, PLANNED_ID, 0, [], CANCELED, id="planner-first"),
        # Canceled, then the planner finds the job no longer active and writes nothing.
        pytest.param(_plan, False, None, 0, [], CANCELED, id="cancel-before-planner"),
        # Back to planned, then canceled: dropped, never sent.
        pytest.param(_return_to_planned, True, True, 0, [], CANCELED, id="return-first"),
        # Canceled (the create flagged), then refused to go back to planned.
        pytest.param(
            _return_to_planned,
            False,
            False,
            1,
            [FLAGGED_CREATE],
            QUEUED,
            id="cancel-before-return",
        ),
        # Creating, then canceled: the create in flight is flagged, never deleted.
        pytest.param(
            _mark_creating, True, True, 1, [FLAGGED_CREATE], QUEUED, id="mark-creating-first"
        ),
        # Canceled (the planned batch dropped), then nothing to create.
        pytest.param(_mark_creating, False, False, 0, [], CANCELED, id="cancel-before-creating"),
    ],
)
def test_cancel_job_racing_a_worker_ends_as_if_one_ran_after_the_other(
    store: Store,
    canceler: Store,
    write: WorkerWrite,
    worker_first: bool,
    worker_returns: object,
    cancel_returns: int,
    batches_left: list[tuple[BatchStatus, bool]],
    items: ItemStatus,
) -> None:
    job = make_job(store, 2)
    work = write(store, job.id)

    def cancel() -> int:
        return canceler.cancel_job(job.id, at(5))

    if worker_first:
        worked, canceled = race(store, work, cancel, WORKER_PAUSE[write])
    else:
        canceled, worked = race(canceler, cancel, work, CANCEL_PAUSE)

    assert (worked.errors, canceled.errors) == ([], [])
    [worker_result] = worked.values
    if worker_returns == PLANNED_ID:
        assert isinstance(worker_result, int)
    else:
        assert worker_result is worker_returns
    assert canceled.values == [cancel_returns]
    assert store.get_job(job.id).status is JobStatus.CANCELED
    left = [(b.status, b.cancel_requested) for b in store.batches(ALL_BATCH_STATUSES, job.id)]
    assert left == batches_left
    # Nothing of the canceled job is left to be sent.
    assert store.claim_batches([BatchStatus.PLANNED], "submitter", at(3600), TTL) == []
    assert store.jobs_with_pending_items() == []
    assert set(item_statuses(store, job.id).values()) == {items}
