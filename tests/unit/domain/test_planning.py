"""Batches stay under the API limits, measured on the real bytes; custom_ids are valid."""

from __future__ import annotations

import orjson
import pytest

from orchestrator.domain.contract import ENVELOPE_OVERHEAD, body_size
from orchestrator.domain.planning import (
    CUSTOM_ID_PATTERN,
    BatchPlanner,
    CustomIdParts,
    PlannedBatch,
    RequestTooLargeForBatch,
    create_body,
    make_custom_id,
    parse_custom_id,
    request_bytes,
    request_size,
)
from orchestrator.errors import SpecError

PARAMS = b'{"max_tokens":16,"messages":[{"content":"hi","role":"user"}],"model":"m"}'


def lines_for(count: int, params: bytes = PARAMS) -> list[bytes]:
    return [request_bytes(make_custom_id("t", n, 1), params) for n in range(1, count + 1)]


def plan(sizes: list[tuple[int, int]], max_requests: int, max_bytes: int) -> list[PlannedBatch]:
    """Every batch the planner closes for these (request id, line size) pairs, as the
    plan step feeds it."""
    planner = BatchPlanner(max_requests, max_bytes)
    batches = [b for rid, size in sizes if (b := planner.add(rid, size)) is not None]
    last = planner.finish()
    return batches if last is None else [*batches, last]


def planned(lines: list[bytes], max_requests: int, max_bytes: int) -> list[PlannedBatch]:
    return plan(list(enumerate(map(len, lines))), max_requests, max_bytes)


def bodies(lines: list[bytes], batches: list[PlannedBatch]) -> list[bytes]:
    return [create_body(lines[i] for i in batch.request_ids) for batch in batches]


# --- wire bytes --------------------------------------------------------------------------


def test_request_bytes_is_the_wire_line() -> None:
    line = request_bytes("t-1-1", PARAMS)
    assert line == b'{"custom_id":"t-1-1","params":' + PARAMS + b"}"
    assert orjson.loads(line) == {"custom_id": "t-1-1", "params": orjson.loads(PARAMS)}


@pytest.mark.parametrize(
    "params",
    [PARAMS, '{"messages":[{"content":"héllo 日本語 🙂 \\"q\\""}]}'.encode(), b"{}"],
    ids=["ascii", "utf8-and-escapes", "empty-object"],
)
@pytest.mark.parametrize(("item_id", "attempt"), [(1, 1), (10**12, 3), (10**21, 99)])
def test_request_size_is_the_length_of_the_wire_line(
    params: bytes, item_id: int, attempt: int
) -> None:
    custom_id = make_custom_id("k3f9", item_id, attempt)
    assert request_size(custom_id, len(params)) == len(request_bytes(custom_id, params))


def test_request_bytes_refuses_an_invalid_custom_id() -> None:
    with pytest.raises(ValueError, match="invalid custom_id"):
        request_bytes('a"b', PARAMS)


@pytest.mark.parametrize("count", [0, 1, 2, 7])
def test_body_size_matches_the_real_join(count: int) -> None:
    lines = lines_for(count)
    body = create_body(lines)
    assert body_size(len(line) for line in lines) == len(body)
    assert orjson.loads(body) == {"requests": [orjson.loads(line) for line in lines]}


def test_envelope_overhead_is_the_prefix_and_suffix() -> None:
    assert ENVELOPE_OVERHEAD == len(b'{"requests":[]}') == 15


# --- packing -----------------------------------------------------------------------------


def test_exactly_max_requests_fit_in_one_batch() -> None:
    lines = lines_for(5)
    batches = planned(lines, max_requests=5, max_bytes=10**6)
    assert [b.request_ids for b in batches] == [[0, 1, 2, 3, 4]]


def test_one_more_than_max_requests_makes_two_batches() -> None:
    lines = lines_for(6)
    batches = planned(lines, max_requests=5, max_bytes=10**6)
    assert [b.request_ids for b in batches] == [[0, 1, 2, 3, 4], [5]]
    assert [b.body_bytes for b in batches] == [len(body) for body in bodies(lines, batches)]


def test_a_body_of_exactly_max_bytes_is_allowed() -> None:
    lines = lines_for(4)
    limit = len(create_body(lines))
    batches = planned(lines, max_requests=100, max_bytes=limit)
    assert [b.request_ids for b in batches] == [[0, 1, 2, 3]]
    assert batches[0].body_bytes == limit == len(bodies(lines, batches)[0])


def test_one_byte_less_splits_the_batch() -> None:
    lines = lines_for(4)
    limit = len(create_body(lines)) - 1
    batches = planned(lines, max_requests=100, max_bytes=limit)
    assert [b.request_ids for b in batches] == [[0, 1, 2], [3]]
    assert all(len(body) <= limit for body in bodies(lines, batches))
    assert [b.body_bytes for b in batches] == [len(body) for body in bodies(lines, batches)]


def test_packing_keeps_order_and_every_request_once() -> None:
    lines = [
        request_bytes(make_custom_id("t", n, 1), b'{"p":"' + b"x" * (n * 37 % 500) + b'"}')
        for n in range(1, 301)
    ]
    batches = planned(lines, max_requests=40, max_bytes=9_000)
    assert [i for b in batches for i in b.request_ids] == list(range(300))
    for batch, body in zip(batches, bodies(lines, batches), strict=True):
        assert len(batch.request_ids) <= 40
        assert batch.body_bytes == len(body) <= 9_000


def test_a_request_alone_at_the_limit_fits_and_one_byte_over_raises() -> None:
    (line,) = lines_for(1)
    planner = BatchPlanner(max_requests=10, max_bytes=len(line) + ENVELOPE_OVERHEAD)
    assert planner.add(1, len(line)) is None
    assert planner.finish() == PlannedBatch([1], len(line) + ENVELOPE_OVERHEAD)
    with pytest.raises(RequestTooLargeForBatch) as caught:
        planner.add(2, len(line) + 1)
    assert (caught.value.request_id, caught.value.size) == (2, len(line) + 1)
    assert isinstance(caught.value, SpecError)
    assert "raise batching.max_bytes" in str(caught.value)


def test_planner_add_returns_the_closed_batch_and_finish_the_rest() -> None:
    planner = BatchPlanner(max_requests=2, max_bytes=10**6)
    assert planner.add(10, 100) is None
    assert planner.add(11, 100) is None
    assert planner.add(12, 100) == PlannedBatch([10, 11], ENVELOPE_OVERHEAD + 201)
    assert planner.finish() == PlannedBatch([12], ENVELOPE_OVERHEAD + 100)
    assert planner.finish() is None


def test_plan_of_nothing_is_no_batches() -> None:
    assert plan([], 10, 1000) == []


# --- custom_id ---------------------------------------------------------------------------

AWKWARD_KEYS = [
    "order:2024/17",
    "a.b.c",
    "with spaces and\ttabs",
    "café-☕-日本語",
    "x" * 200,
    "../../etc/passwd",
    "",
]


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_awkward_keys_get_valid_custom_ids_that_round_trip(key: str) -> None:
    # Keys never enter the custom_id: the store maps key -> item id -> custom_id.
    item_ids = {k: n for n, k in enumerate(AWKWARD_KEYS, start=1)}
    for attempt in (1, 2, 99):
        custom_id = make_custom_id("k3f9", item_ids[key], attempt)
        assert CUSTOM_ID_PATTERN.match(custom_id)
        assert parse_custom_id(custom_id) == CustomIdParts("k3f9", item_ids[key], attempt)


def test_the_widest_custom_id_is_within_64_characters() -> None:
    custom_id = make_custom_id("z" * 16, 2**63 - 1, 2**31 - 1)
    assert len(custom_id) <= 64
    assert CUSTOM_ID_PATTERN.match(custom_id)


@pytest.mark.parametrize(
    ("store_tag", "item_id", "attempt"),
    [("", 1, 1), ("UPPER", 1, 1), ("a-b", 1, 1), ("x" * 17, 1, 1), ("t", 0, 1), ("t", 1, 0)],
)
def test_make_custom_id_refuses_bad_parts(store_tag: str, item_id: int, attempt: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        make_custom_id(store_tag, item_id, attempt)


@pytest.mark.parametrize(
    "custom_id", ["my-first-request", "t-1", "t-0-1", "t-1-01", "T-1-1", "t-1-1-1", "t_1_1", ""]
)
def test_parse_custom_id_returns_none_for_foreign_ids(custom_id: str) -> None:
    assert parse_custom_id(custom_id) is None
