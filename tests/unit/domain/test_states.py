"""The state names and their groupings: one home, and sets that partition what they group."""

from __future__ import annotations

import pytest

from orchestrator.domain.states import (
    CREATE_IN_FLIGHT,
    FINAL_BATCH_STATUSES,
    IN_FLIGHT_BATCH_STATUSES,
    OPEN_ITEM_STATUSES,
    OPEN_REMOTE_BATCH_STATUSES,
    REMOTE_BATCH_STATUSES,
    SENT_BATCH_STATUSES,
    TERMINAL_ITEM_STATUSES,
    BatchStatus,
    ItemStatus,
    Outcome,
    local_batch_status,
)


@pytest.mark.parametrize(
    ("processing_status", "local"),
    [
        ("in_progress", BatchStatus.IN_PROGRESS),
        ("canceling", BatchStatus.CANCELING),
        ("ended", BatchStatus.ENDED),
        # A status the API may add later keeps the batch polled, never ingested early.
        ("paused", BatchStatus.IN_PROGRESS),
    ],
)
def test_local_status_of_an_api_processing_status(
    processing_status: str, local: BatchStatus
) -> None:
    assert local_batch_status(processing_status) is local


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Outcome.SUCCEEDED, ItemStatus.SUCCEEDED),
        (Outcome.RETRY, ItemStatus.PENDING),
        (Outcome.FAILED, ItemStatus.FAILED),
        (Outcome.CANCELED, ItemStatus.CANCELED),
    ],
)
def test_each_outcome_gives_an_item_status(outcome: Outcome, status: ItemStatus) -> None:
    assert outcome.item_status is status


def test_item_statuses_are_terminal_or_open() -> None:
    assert TERMINAL_ITEM_STATUSES | OPEN_ITEM_STATUSES == set(ItemStatus)
    assert not TERMINAL_ITEM_STATUSES & OPEN_ITEM_STATUSES


def test_batch_statuses_are_in_flight_or_final() -> None:
    assert IN_FLIGHT_BATCH_STATUSES | FINAL_BATCH_STATUSES == set(BatchStatus)
    assert not IN_FLIGHT_BATCH_STATUSES & FINAL_BATCH_STATUSES
    assert FINAL_BATCH_STATUSES == {
        BatchStatus.INGESTED,
        BatchStatus.UNAVAILABLE,
        BatchStatus.REJECTED,
    }


def test_batch_groupings_nest() -> None:
    assert CREATE_IN_FLIGHT <= IN_FLIGHT_BATCH_STATUSES
    assert OPEN_REMOTE_BATCH_STATUSES <= REMOTE_BATCH_STATUSES
    assert SENT_BATCH_STATUSES <= IN_FLIGHT_BATCH_STATUSES
    assert not CREATE_IN_FLIGHT & REMOTE_BATCH_STATUSES
