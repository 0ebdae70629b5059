"""Identical requests within one job are sent once (``dedupe``, on by default): the
first item with given params leads, the others wait and take its outcome."""

from __future__ import annotations

import pytest

from orchestrator.domain.states import BatchStatus, ItemStatus, ResultType
from orchestrator.store.queries import Store
from orchestrator.store.records import Resolution
from tests.unit.store.helpers import (
    COST,
    at,
    draft,
    ended_batch,
    item_statuses,
    make_job,
    resolve,
)


def _repeating_job(store: Store, *, dedupe: bool = True) -> int:
    """Items 0 and 2 repeat one prompt, 1 and 3 another, 4 is alone."""
    prompts = ["same", "other", "same", "other", "alone"]
    items = [draft(n, prompt=p) for n, p in enumerate(prompts)]
    return make_job(store, items=items, dedupe=dedupe).id


def test_only_the_first_of_identical_requests_waits_to_be_sent(store: Store) -> None:
    job_id = _repeating_job(store)

    pending = store.pending_items(job_id, 0, 100)

    keys = {row["item_id"]: row["key"] for row in store.final_results(job_id)}
    assert [keys[p.id] for p in pending] == ["k0", "k1", "k4"]


def test_with_dedupe_off_every_item_is_sent(store: Store) -> None:
    job_id = _repeating_job(store, dedupe=False)

    assert len(store.pending_items(job_id, 0, 100)) == 5


def test_followers_take_their_leaders_answer_as_a_cache_hit(store: Store) -> None:
    job_id = _repeating_job(store)
    ended = ended_batch(store, job_id, [ResultType.SUCCEEDED] * 3)
    resolve(store, ended, [ItemStatus.SUCCEEDED] * 3)

    assert store.share_leaders_outcomes(job_id, at(700)) == 2

    rows = {row["key"]: row for row in store.final_results(job_id)}
    assert {k: r["status"] for k, r in rows.items()} == dict.fromkeys(
        ["k0", "k1", "k2", "k3", "k4"], ItemStatus.SUCCEEDED
    )
    assert rows["k2"]["text"] == rows["k0"]["text"]
    assert rows["k3"]["text"] == rows["k1"]["text"]
    assert bool(rows["k2"]["cached"])
    assert not bool(rows["k0"]["cached"])
    assert rows["k2"]["cost_usd"] == 0.0  # paid once, by its leader
    job = store.get_job(job_id)
    assert job.cache_hits == 2
    assert job.cache_saved_usd == pytest.approx(2 * COST)
    assert store.share_leaders_outcomes(job_id, at(701)) == 0  # nothing is taken twice
    assert store.finish_job_if_done(job_id, at(702))


def test_followers_wait_while_their_leader_is_retried_and_fail_with_it(store: Store) -> None:
    job_id = _repeating_job(store)
    ended = ended_batch(store, job_id, [ResultType.ERRORED, ResultType.SUCCEEDED, None])
    leader, other, alone = (ref.item_id for ref in ended.refs)
    assert store.resolve_items(
        ended.lease,
        [
            Resolution(leader, ItemStatus.PENDING, None, "api_error", "overloaded"),
            Resolution(other, ItemStatus.SUCCEEDED, ended.refs[1].result_id),
            Resolution(alone, ItemStatus.FAILED, None, "invalid_request_error", "bad"),
        ],
        at(601),
    )
    assert store.finish_batch(ended.lease, BatchStatus.INGESTED, at(601))

    assert store.share_leaders_outcomes(job_id, at(700)) == 1  # k3 follows k1 only
    statuses = item_statuses(store, job_id)
    follower_of_leader = max(i for i, s in statuses.items() if s is ItemStatus.PENDING)
    assert [p.id for p in store.pending_items(job_id, 0, 100)] == [leader]

    second = ended_batch(store, job_id, [ResultType.ERRORED], items=[leader])
    assert store.resolve_items(
        second.lease,
        [Resolution(leader, ItemStatus.FAILED, None, "invalid_request_error", "too long")],
        at(801),
    )
    assert store.share_leaders_outcomes(job_id, at(900)) == 1

    rows = {int(r["item_id"]): r for r in store.final_results(job_id)}
    assert rows[follower_of_leader]["status"] == ItemStatus.FAILED
    assert rows[follower_of_leader]["error_type"] == "invalid_request_error"
    assert rows[follower_of_leader]["error_message"] == "too long"
    assert not bool(rows[follower_of_leader]["cached"])
