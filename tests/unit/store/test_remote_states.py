"""``update_remote_states``: a whole poll tick written at once, exactly as one
``update_remote_state`` per batch would write it (both backends)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from orchestrator.domain.states import BatchStatus
from orchestrator.store import batches as batches_module
from orchestrator.store.queries import Store
from orchestrator.store.records import RemoteState
from orchestrator.store.tables import Batch
from tests.unit.store.helpers import at, batch_in, make_job, remote, remote_id_for

#: Everything a poll writes to a batch row.
WRITTEN = (
    Batch.status,
    Batch.processing_status,
    Batch.remote_created_at,
    Batch.expires_at,
    Batch.ended_at,
    Batch.results_url,
    Batch.succeeded_count,
    Batch.errored_count,
    Batch.canceled_count,
    Batch.expired_count,
    Batch.updated_at,
)


def rows(store: Store, batch_ids: list[int]) -> list[tuple[Any, ...]]:
    """The polled columns of these batches (no read operation returns them all)."""
    with store.engine.connect() as conn:
        query = select(*WRITTEN).where(Batch.id.in_(batch_ids)).order_by(Batch.id)
        return [tuple(row) for row in conn.execute(query)]


def reports(batch_ids: list[int]) -> list[tuple[int, RemoteState]]:
    """A different report for each batch: some ended with counts, some still running."""
    made = []
    for n, batch_id in enumerate(batch_ids):
        if n % 2:
            state = remote(remote_id_for(batch_id), BatchStatus.CANCELING)
        else:
            state = remote(
                remote_id_for(batch_id),
                BatchStatus.ENDED,
                results_url=f"https://r/{n}",
                counts=(n, 1, 2, 3),
            )
        made.append((batch_id, state))
    return made


def open_batches(store: Store, count: int, name: str) -> list[int]:
    return [
        batch_in(store, make_job(store, 1, name=f"{name}{i}").id, BatchStatus.IN_PROGRESS)
        for i in range(count)
    ]


def test_a_tick_writes_what_one_update_per_batch_writes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches_module, "UPDATE_ROWS", 2)  # several transactions
    one_by_one = open_batches(store, 5, "one")
    at_once = open_batches(store, 5, "all")
    for batch_id, state in reports(one_by_one):
        assert store.update_remote_state(batch_id, state, at(600))

    applied = store.update_remote_states(reports(at_once), at(600))

    assert applied == set(at_once)
    assert rows(store, at_once) == rows(store, one_by_one)


def test_a_batch_no_longer_open_is_left_alone(store: Store) -> None:
    job = make_job(store, 1, name="settled").id
    ended = batch_in(store, job, BatchStatus.ENDED)
    running = open_batches(store, 2, "running")
    before = rows(store, [ended])

    applied = store.update_remote_states(reports([ended, *running]), at(900))

    assert applied == set(running)
    assert rows(store, [ended]) == before
    assert store.update_remote_states([], at(900)) == set()
