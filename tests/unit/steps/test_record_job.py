"""Recording a job's items (``submit_loaded``): the rows are read, rendered and validated
on a thread of their own while the store writes the chunk before, yet what is recorded,
and every error, is what one pass over the rows in order gives: same items, same
ordinals, bad rows listed in file order, and nothing recorded when anything fails."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from orchestrator.domain import spec as spec_module
from orchestrator.domain.datasets import jsonl_rows
from orchestrator.domain.pricing import PriceTable
from orchestrator.domain.spec import BadRows, ItemDraft, iter_items, load_spec
from orchestrator.errors import SpecError
from orchestrator.estimate import EstimateTally
from orchestrator.steps import jobs as steps_jobs
from orchestrator.steps.jobs import submit_loaded
from orchestrator.store import jobs as store_jobs
from orchestrator.store.queries import Store
from orchestrator.store.records import ItemLike
from tests.unit.store.helpers import T0, count_rows

PRICES = PriceTable.load()
SPEC = """\
name = "rec"
input = "rows.{suffix}"
key = "id"
[request]
model = "claude-haiku-4-5"
max_tokens = 16
prompt = "Review: {{text}}"
"""


def write_job(root: Path, lines: list[str], suffix: str = "jsonl") -> Path:
    (root / f"rows.{suffix}").write_text("".join(f"{line}\n" for line in lines), "utf-8")
    spec = root / "spec.toml"
    spec.write_text(SPEC.format(suffix=suffix), encoding="utf-8")
    return spec


def rows(count: int, start: int = 0) -> list[str]:
    return [
        json.dumps({"id": f"k{n}", "text": f"review {n} " * (n % 7)}) for n in range(start, count)
    ]


def stored_items(store: Store) -> list[tuple[Any, ...]]:
    """Each item's values, its leader given as the ordinal of the item it follows."""
    with store.engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT i.ordinal, i.key, i.params, i.params_hash, i.input, i.status, "
                "i.attempts, i.cached, i.batch_id, l.ordinal FROM items i "
                "LEFT JOIN items l ON l.id = i.leader_id ORDER BY i.id"
            )
        )
        return [(*row[:7], bool(row[7]), *row[8:]) for row in found]


def expected_items(drafts: list[ItemDraft]) -> list[tuple[Any, ...]]:
    """What recording ``drafts`` stores: each pending, an item with the params of an
    earlier one following the first of them (``dedupe``)."""
    first: dict[str, int] = {}
    expected = []
    for d in drafts:
        leader = first.setdefault(d.params_hash, d.ordinal)
        stored_input = None if d.input_json is None else d.input_json.decode()
        values = (d.ordinal, d.key, d.params_json.decode(), d.params_hash, stored_input)
        follows = None if leader == d.ordinal else leader
        expected.append((*values, "pending", 0, False, None, follows))
    return expected


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "items-reader"]


def assert_nothing_recorded(store: Store) -> None:
    """No job, no item, and the reader thread gone: what a refused job leaves."""
    assert store.list_jobs() == []
    assert count_rows(store, "items") == 0
    assert readers() == []


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few rows, their ends apart (the reader's and the store's), so a
    small job crosses many of them."""
    monkeypatch.setattr(steps_jobs, "READ_AHEAD_ROWS", 7)
    monkeypatch.setattr(store_jobs, "ITEM_CHUNK_ROWS", 5)


@pytest.mark.parametrize("chunks", ["default", "small"])
def test_the_items_recorded_are_the_rows_in_order(
    store: Store, tmp_path: Path, request: pytest.FixtureRequest, chunks: str
) -> None:
    if chunks == "small":
        request.getfixturevalue("small_chunks")
    lines = [*rows(2500), json.dumps({"id": "k2500", "text": 'ü 😀 "quoted"'}), *rows(4100, 2501)]
    loaded = load_spec(write_job(tmp_path, lines))

    job, created = submit_loaded(store, loaded, T0, PRICES)

    assert created
    assert job.items_total == 4100
    assert list(job.input_columns) == ["id", "text"]
    assert stored_items(store) == expected_items(list(iter_items(loaded)))
    assert readers() == []


def test_the_estimate_is_gathered_from_the_same_pass(store: Store, tmp_path: Path) -> None:
    loaded = load_spec(write_job(tmp_path, rows(3000)))
    tally = EstimateTally(loaded)

    submit_loaded(store, loaded, T0, PRICES, tally=tally)

    alone = EstimateTally(loaded)
    for item in iter_items(loaded):
        alone.add(item, BadRows("rows.jsonl"))
    offline = alone.finish(prices=PRICES, count_tokens=None)
    assert tally.finish(prices=PRICES, count_tokens=None) == offline


def sequential_error(loaded: Any) -> SpecError:
    """The error one pass over the rows, in this thread, reports."""
    bad = BadRows(spec_module.display_path(loaded.spec.data_path), note="nothing was recorded")
    try:
        list(iter_items(loaded, models=PRICES, bad_rows=bad))
    except SpecError as exc:
        return exc
    return bad.error()


def test_bad_rows_across_chunks_are_listed_in_file_order_and_nothing_is_recorded(
    store: Store, tmp_path: Path, small_chunks: None
) -> None:
    lines = rows(40)
    for n in (3, 11, 12, 26, 39):
        lines[n] = "{not json" if n % 2 else json.dumps({"text": "no key"})
    loaded = load_spec(write_job(tmp_path, lines))

    with pytest.raises(SpecError) as caught:
        submit_loaded(store, loaded, T0, PRICES)

    assert str(caught.value) == str(sequential_error(loaded))
    assert str(caught.value).startswith("5 bad rows in ")
    assert "rows.jsonl (nothing was recorded):\n" in str(caught.value)
    assert_nothing_recorded(store)


def test_a_reading_problem_midway_is_reported_with_the_bad_rows_before_it(
    store: Store, tmp_path: Path, small_chunks: None
) -> None:
    lines = ["id,text", *(f"k{n},review {n}" for n in range(30))]
    lines[4] = "k3"  # a bad row: one field short
    lines[20] = 'k19,"never closed'  # quoting the reader can't get past
    loaded = load_spec(write_job(tmp_path, lines, suffix="csv"))

    with pytest.raises(SpecError) as caught:
        submit_loaded(store, loaded, T0, PRICES)

    assert str(caught.value) == str(sequential_error(loaded))
    assert_nothing_recorded(store)


def test_a_duplicate_key_in_a_later_chunk_names_its_line(
    store: Store, tmp_path: Path, small_chunks: None
) -> None:
    lines = rows(30)
    lines[23] = json.dumps({"id": "k2", "text": "again"})
    loaded = load_spec(write_job(tmp_path, lines))

    with pytest.raises(SpecError, match=r"duplicate key 'k2' \(already used by an earlier row\)"):
        submit_loaded(store, loaded, T0, PRICES)

    assert_nothing_recorded(store)


class DiskGone(Exception):
    pass


def test_what_the_reader_thread_raises_reaches_the_caller_and_nothing_is_recorded(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_chunks: None
) -> None:
    real = jsonl_rows
    raised_in: list[str] = []

    def failing(path: Path, label: str) -> Iterator[tuple[int, Any]]:
        for n, row in enumerate(real(path, label)):
            if n == 23:
                raised_in.append(threading.current_thread().name)
                raise DiskGone("the disk went away at row 23")
            yield row

    monkeypatch.setattr("orchestrator.domain.sources.jsonl_rows", failing)
    loaded = load_spec(write_job(tmp_path, rows(60)))

    with pytest.raises(DiskGone, match="the disk went away at row 23"):
        submit_loaded(store, loaded, T0, PRICES)

    assert raised_in == ["items-reader"]  # raised there, and handed over as it was
    assert_nothing_recorded(store)


def test_an_interrupt_while_recording_stops_the_reader_and_records_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_chunks: None
) -> None:
    closed = threading.Event()
    real = jsonl_rows

    def watched(path: Path, label: str) -> Iterator[tuple[int, Any]]:
        try:
            yield from real(path, label)
        finally:
            closed.set()

    monkeypatch.setattr("orchestrator.domain.sources.jsonl_rows", watched)
    loaded = load_spec(write_job(tmp_path, rows(500)))
    checked = store_jobs._check_duplicate_keys
    interrupted_in: list[str] = []

    def interrupted(s: Any, job_id: int, chunk: list[ItemLike], *a: Any, **k: Any) -> None:
        # Ctrl-C reaches the main thread, which stores the items: there, at row 40, with
        # the reader chunks ahead, waiting for room.
        if any(item.ordinal == 40 for item in chunk):
            interrupted_in.append(threading.current_thread().name)
            raise KeyboardInterrupt
        checked(s, job_id, chunk, *a, **k)

    monkeypatch.setattr(store_jobs, "_check_duplicate_keys", interrupted)

    with pytest.raises(KeyboardInterrupt):
        submit_loaded(store, loaded, T0, PRICES, tally=EstimateTally(loaded))

    assert interrupted_in == ["MainThread"]
    assert readers() == []  # stopped and joined before the interrupt went on
    assert closed.is_set()  # the data file closed
    assert store.list_jobs() == []
    assert count_rows(store, "items") == 0


def test_before_commit_refusing_records_nothing_and_leaves_no_thread(
    store: Store, tmp_path: Path
) -> None:
    loaded = load_spec(write_job(tmp_path, rows(2500)))

    def over_budget() -> None:
        raise SpecError("over budget")

    with pytest.raises(SpecError, match="over budget"):
        submit_loaded(store, loaded, T0, PRICES, before_commit=over_budget)

    assert_nothing_recorded(store)


def test_a_duplicate_key_holding_a_nul_is_refused_too(
    store: Store, tmp_path: Path, small_chunks: None
) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL text can't hold NUL")
    lines = rows(30)
    lines[2] = json.dumps({"id": "k\x00two", "text": "first"})
    lines[23] = json.dumps({"id": "k\x00two", "text": "again"})
    loaded = load_spec(write_job(tmp_path, lines))

    with pytest.raises(SpecError, match="already used by an earlier row") as caught:
        submit_loaded(store, loaded, T0, PRICES)

    assert caught.value.location is not None
    assert caught.value.location.endswith("input line 24")
    assert store.list_jobs() == []
