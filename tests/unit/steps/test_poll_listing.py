"""poll's listing: how many calls a tick costs, and that no open batch is ever missed.

The API is a fake workspace listing (newest first, cursors by id, as §4.1 and the
simulator have it) that counts calls; the store is a fake that holds the open
batches and records what poll writes. Creation times are fixed, so every count
is exact.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from orchestrator.api.client import BatchesClient
from orchestrator.api.models import MessageBatch, MessageBatchPage, RequestCounts
from orchestrator.domain.states import BatchStatus
from orchestrator.errors import NotFoundError
from orchestrator.settings import load_settings
from orchestrator.steps.context import StepContext
from orchestrator.steps.poll import LIST_PAGE_SIZE, pages_to_reach, poll
from orchestrator.store.queries import Store
from orchestrator.store.records import BatchRecord, RemoteState

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)


class Workspace:
    """The API's batches of one workspace, some ours, and the calls made to it."""

    def __init__(self) -> None:
        self.batches: list[MessageBatch] = []  # oldest first; ids sort the same way
        self.deleted: set[str] = set()
        #: Retrievable but not listed yet (the listing lags behind creates).
        self.unlisted: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.clock = T0

    def create(self, count: int, every_s: float) -> list[MessageBatch]:
        made = []
        for _ in range(count):
            self.clock += timedelta(seconds=every_s)
            made.append(_batch(f"msgbatch_{len(self.batches):08d}", self.clock))
            self.batches.append(made[-1])
        return made

    def list_page(
        self, *, limit: int = 1000, after_id: str | None = None, before_id: str | None = None
    ) -> MessageBatchPage:
        assert before_id is None
        self.calls["list"] += 1
        listed = [
            b
            for b in reversed(self.batches)
            if b.id not in self.deleted | self.unlisted and (after_id is None or b.id < after_id)
        ]
        data = listed[:limit]
        return MessageBatchPage(
            data=data,
            has_more=len(listed) > limit,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
        )

    def retrieve(self, batch_id: str, *, betas: Sequence[str] = ()) -> MessageBatch:
        assert betas == ("beta-1",)  # the job's betas go along
        self.calls["retrieve"] += 1
        found = [b for b in self.batches if b.id == batch_id and b.id not in self.deleted]
        if not found:
            raise NotFoundError("not found", status_code=404, error_type="not_found_error")
        return found[0]


@dataclass
class FakeJob:
    betas: tuple[str, ...] = ("beta-1",)


@dataclass
class FakeStore:
    """The open batches, and what poll wrote for each (the last write wins)."""

    open: list[BatchRecord]
    written: dict[int, RemoteState] = field(default_factory=dict)

    def batches(
        self, statuses: Iterable[BatchStatus], job_id: int | None = None
    ) -> list[BatchRecord]:
        return list(self.open)

    def get_job(self, job_id: int) -> FakeJob:
        return FakeJob()

    def update_remote_state(self, batch_id: int, remote: RemoteState, now: datetime) -> bool:
        self.written[batch_id] = remote
        return True

    def update_remote_states(
        self, states: Sequence[tuple[int, RemoteState]], now: datetime
    ) -> set[int]:
        self.written.update(states)
        return {batch_id for batch_id, _ in states}


def _batch(batch_id: str, created_at: datetime) -> MessageBatch:
    return MessageBatch(
        id=batch_id,
        processing_status="in_progress",
        request_counts=RequestCounts(processing=1, succeeded=0, errored=0, canceled=0, expired=0),
        created_at=created_at,
        expires_at=created_at + timedelta(days=1),
        ended_at=None,
        cancel_initiated_at=None,
        results_url=None,
    )


def ours(batches: Iterable[MessageBatch]) -> list[BatchRecord]:
    """The store's rows of these batches, in progress as last polled."""
    return [
        BatchRecord(
            id=int(b.id.removeprefix("msgbatch_")),
            job_id=1,
            status=BatchStatus.IN_PROGRESS,
            remote_id=b.id,
            request_count=1,
            body_bytes=100,
            intent_at=None,
            remote_created_at=b.created_at,
            results_url=None,
            cancel_requested=False,
            ingest_attempts=0,
            last_error=None,
        )
        for b in batches
    ]


def tick(api: Workspace, open_batches: list[BatchRecord]) -> tuple[Counter[str], FakeStore]:
    """One poll tick; its calls and what it wrote. Every open batch must be written,
    with the state the API has (a gone one as ended)."""
    store = FakeStore(open_batches)
    ctx = StepContext(
        store=cast(Store, store),
        api=cast(BatchesClient, api),
        settings=load_settings(api_key="sk-test", reconcile_skew_s=30),
    )
    report = poll(ctx, NOW)
    assert report.details["polled"] == len(open_batches)
    assert set(store.written) == {b.id for b in open_batches}
    for record in open_batches:
        gone = record.remote_id in api.deleted
        expected = BatchStatus.ENDED if gone else BatchStatus.IN_PROGRESS
        assert store.written[record.id].status is expected, record
    return api.calls, store


def test_2000_newest_batches_take_two_pages() -> None:
    api = Workspace()
    api.create(5000, every_s=1)  # older batches, ours long done or another tool's
    calls, _ = tick(api, ours(api.create(2000, every_s=1)))
    assert calls == Counter(list=2)


def test_batches_far_down_the_listing_cost_a_jump() -> None:
    # 5,000 listed: paging through would take 5 calls, retrieving each old one 202.
    api = Workspace()
    old = api.create(200, every_s=1)
    api.create(3000, every_s=1)
    new = api.create(1800, every_s=1)
    calls, _ = tick(api, ours(old + new))
    assert calls == Counter(list=3, retrieve=1)


def test_a_guess_too_short_pages_through_as_without_jumps() -> None:
    # Another tool's burst: its 3,000 batches took 5 minutes, our 1,800 took 30,
    # so the first pages guess the old ones a page away; every page read guesses
    # afresh, and paging on is what reading every page costs anyway.
    api = Workspace()
    old = api.create(200, every_s=1)
    api.create(3000, every_s=0.1)
    new = api.create(1800, every_s=1)
    calls, _ = tick(api, ours(old + new))
    assert calls == Counter(list=5)


def test_a_lone_straggler_is_retrieved_not_paged_to() -> None:
    api = Workspace()
    old = api.create(1, every_s=1)
    api.create(5000, every_s=1)
    calls, _ = tick(api, ours(old + api.create(2000, every_s=1)))
    assert calls == Counter(list=2, retrieve=1)


def test_old_batches_a_page_down_are_paged_to() -> None:
    api = Workspace()
    old = api.create(200, every_s=1)
    api.create(500, every_s=1)
    calls, _ = tick(api, ours(old + api.create(1800, every_s=1)))
    assert calls == Counter(list=3)


def test_a_jump_to_a_deleted_batch_moves_on_to_the_next() -> None:
    api = Workspace()
    old = api.create(200, every_s=1)
    api.create(3000, every_s=1)
    new = api.create(1800, every_s=1)
    api.deleted.add(old[-1].id)  # the newest old one: the first target
    calls, store = tick(api, ours(old + new))
    assert calls == Counter(list=3, retrieve=2)
    assert store.written[int(old[-1].id.removeprefix("msgbatch_"))].results_url is None


def test_a_batch_the_listing_does_not_show_yet_is_retrieved() -> None:
    api = Workspace()
    new = api.create(10, every_s=1)
    api.unlisted.add(new[-1].id)
    calls, _ = tick(api, ours(new))
    assert calls == Counter(list=1, retrieve=1)


@pytest.mark.parametrize("seed", range(12))
def test_no_batch_is_missed_and_paging_through_is_never_cheaper_by_more_than_a_call(
    seed: int,
) -> None:
    rng = random.Random(seed)
    api = Workspace()
    open_batches: list[MessageBatch] = []
    for _ in range(rng.randint(1, 8)):
        run = api.create(rng.randint(1, 1500), every_s=rng.choice([0.01, 0.5, 1, 30]))
        if rng.random() < 0.6:
            open_batches += rng.sample(run, rng.randint(1, len(run)))
    if not open_batches:
        open_batches = api.create(1, every_s=1)
    for batch in rng.sample(open_batches, min(3, len(open_batches))):
        if rng.random() < 0.5:
            api.deleted.add(batch.id)
    records = ours(open_batches)
    calls, _ = tick(api, records)
    oldest = min(b.created_at for b in open_batches)
    page_through = -(-sum(b.created_at >= oldest for b in api.batches) // LIST_PAGE_SIZE)
    assert sum(calls.values()) <= page_through + 1 + len(api.deleted)


def test_the_guess_comes_from_the_rate_of_the_page_just_read() -> None:
    page = [_batch(f"b{i}", T0 - timedelta(seconds=i)) for i in range(1000)]  # 1 a second
    last = page[-1].created_at
    assert pages_to_reach(page, last) == 1
    assert pages_to_reach(page, last - timedelta(seconds=500)) == 1
    assert pages_to_reach(page, last - timedelta(seconds=2500)) == 3
    same_instant = [replace_created(b, T0) for b in page]
    assert pages_to_reach(same_instant, T0 - timedelta(seconds=1)) > 1_000_000


def replace_created(batch: MessageBatch, created_at: datetime) -> MessageBatch:
    return batch.model_copy(update={"created_at": created_at})
