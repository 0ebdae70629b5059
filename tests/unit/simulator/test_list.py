"""List pagination edges (§4)."""

from __future__ import annotations

import pytest

from orchestrator.simulator import ManualClock, SimulatorState
from orchestrator.simulator.validation import InvalidRequest

from .conftest import make_state, pairs


@pytest.fixture
def five(clock: ManualClock) -> tuple[SimulatorState, list[str]]:
    state = make_state(clock)
    ids = [state.create_batch(pairs(1), frozenset()).id for _ in range(5)]  # same timestamp
    return state, ids


def _ids(page: tuple[list, bool]) -> tuple[list[str], bool]:  # type: ignore[type-arg]
    return [b.id for b in page[0]], page[1]


def test_newest_first_even_with_equal_timestamps(five: tuple[SimulatorState, list[str]]) -> None:
    state, ids = five
    assert ids == sorted(ids)
    assert _ids(state.list_page(None, None, 20)) == (ids[::-1], False)


def test_after_id_walks_older(five: tuple[SimulatorState, list[str]]) -> None:
    state, ids = five
    assert _ids(state.list_page(None, None, 2)) == ([ids[4], ids[3]], True)
    assert _ids(state.list_page(None, ids[3], 2)) == ([ids[2], ids[1]], True)
    assert _ids(state.list_page(None, ids[1], 2)) == ([ids[0]], False)


def test_before_id_walks_newer(five: tuple[SimulatorState, list[str]]) -> None:
    state, ids = five
    assert _ids(state.list_page(ids[0], None, 2)) == ([ids[2], ids[1]], True)
    assert _ids(state.list_page(ids[2], None, 2)) == ([ids[4], ids[3]], False)


def test_unknown_cursor_positions_by_id(five: tuple[SimulatorState, list[str]]) -> None:
    state, ids = five
    assert _ids(state.list_page(None, "msgbatch_00", 2)) == ([], False)
    assert _ids(state.list_page(None, "msgbatch_02", 1)) == ([ids[4]], True)


@pytest.mark.parametrize("limit", [0, 1001, -1])
def test_limit_out_of_range(five: tuple[SimulatorState, list[str]], limit: int) -> None:
    with pytest.raises(InvalidRequest, match="limit"):
        five[0].list_page(None, None, limit)


def test_both_cursors_rejected(five: tuple[SimulatorState, list[str]]) -> None:
    state, ids = five
    with pytest.raises(InvalidRequest, match="together"):
        state.list_page(ids[0], ids[1], 2)


def test_limit_bounds_accepted(five: tuple[SimulatorState, list[str]]) -> None:
    assert len(five[0].list_page(None, None, 1)[0]) == 1
    assert len(five[0].list_page(None, None, 1000)[0]) == 5


def test_a_new_batch_shows_in_the_list_only_after_the_lag(clock: ManualClock) -> None:
    state = make_state(clock, list_lag_seconds=5.0)
    old = state.create_batch(pairs(1), frozenset()).id
    clock.advance(5.0)
    new = state.create_batch(pairs(1), frozenset()).id

    assert _ids(state.list_page(None, None, 20)) == ([old], False)
    assert state.get(new).id == new  # retrieve sees it at once
    clock.advance(5.0)
    assert _ids(state.list_page(None, None, 20)) == ([new, old], False)
