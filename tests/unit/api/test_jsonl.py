from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Iterator

import orjson
import pytest

from orchestrator.api import jsonl
from orchestrator.api.jsonl import iter_lines

LINES = [
    orjson.dumps({"custom_id": "a", "text": "café 日本 🎉"}),
    # An escaped newline inside a JSON string is two bytes, "\\" and "n": not a terminator.
    b'{"custom_id":"b","text":"line one\\nline two\\r\\n"}',
    orjson.dumps({"custom_id": "c", "text": "🎉" * 5}),
    b'{"custom_id":"d"}',
]
# LF, CRLF, a blank line and a blank CRLF line in between, no terminator at the end.
BODY = LINES[0] + b"\n" + LINES[1] + b"\r\n\n" + LINES[2] + b"\r\n\r\n" + LINES[3]


def test_whole_body_gives_each_line_without_terminators() -> None:
    assert list(iter_lines([BODY])) == LINES


@pytest.mark.parametrize("offset", range(len(BODY) + 1))
def test_split_at_any_offset_gives_the_same_lines(offset: int) -> None:
    assert list(iter_lines([BODY[:offset], BODY[offset:]])) == LINES


def test_one_byte_chunks_give_the_same_lines() -> None:
    chunks = [BODY[i : i + 1] for i in range(len(BODY))]

    assert list(iter_lines(chunks)) == LINES


def test_every_line_decodes_as_json_after_byte_splitting() -> None:
    chunks = [BODY[i : i + 1] for i in range(len(BODY))]

    customs = [orjson.loads(line)["custom_id"] for line in iter_lines(chunks)]

    assert customs == ["a", "b", "c", "d"]


def test_cr_and_lf_in_different_chunks_leave_no_stray_empty_line() -> None:
    assert list(iter_lines([b'{"a":1}\r', b'\n{"b":2}\r', b"\n"])) == [b'{"a":1}', b'{"b":2}']


@pytest.mark.parametrize(
    "chunks",
    [[], [b""], [b"\n"], [b"\r\n\r\n"], [b"\n", b"", b"\n"]],
)
def test_streams_without_content_yield_nothing(chunks: list[bytes]) -> None:
    assert list(iter_lines(chunks)) == []


def test_final_unterminated_fragment_is_yielded_when_the_stream_ends() -> None:
    assert list(iter_lines([b'{"a":1}\n{"b"', b":2}"])) == [b'{"a":1}', b'{"b":2}']


def test_a_line_is_yielded_only_once_its_terminator_arrived() -> None:
    served: list[int] = []

    def source() -> Iterator[bytes]:
        for number, chunk in enumerate([b"ab", b"c\nd", b"e"], start=1):
            served.append(number)
            yield chunk

    seen = [(line, len(served)) for line in iter_lines(source())]

    # "abc" needs chunk 2 (its "\n"); "de" is only complete once the stream has ended.
    assert seen == [(b"abc", 2), (b"de", 3)]


def test_a_long_line_in_tiny_chunks_is_rejoined() -> None:
    line = b'{"text":"' + "é".encode() * 50_000 + b'"}'
    chunks = [line[i : i + 1] for i in range(len(line))] + [b"\n"]

    assert list(iter_lines(chunks)) == [line]


def test_an_oversized_line_is_cut_to_a_prefix_and_the_next_line_survives() -> None:
    long_line = b'{"custom_id":"t-1-1","result":"' + b"x" * 3_000_000 + b'"}'
    chunks = [long_line[i : i + 65536] for i in range(0, len(long_line), 65536)]
    lines = list(jsonl.iter_lines([*chunks, b"\n", b'{"next":1}\n'], max_line_bytes=1_000_000))
    assert lines == [long_line[: jsonl.OVERSIZED_PREFIX_BYTES], b'{"next":1}']


def test_memory_per_line_is_bounded_by_the_limit() -> None:
    def stream() -> Iterator[bytes]:
        piece = b"y" * 65536
        for _ in range(400):  # a 26 MB line with no newline
            yield piece

    tracemalloc.start()
    try:
        lines = list(jsonl.iter_lines(stream(), max_line_bytes=2_000_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [len(line) for line in lines] == [jsonl.OVERSIZED_PREFIX_BYTES]
    assert peak < 5_000_000


# -- ReadAhead: several items ahead, joined on leaving --------------------------------


def test_read_ahead_reads_at_most_ahead_items_ahead_and_keeps_their_order() -> None:
    read: list[int] = []

    def source() -> Iterator[int]:
        for n in range(50):
            read.append(n)
            yield n

    with jsonl.ReadAhead(source(), ahead=3, join=True) as ahead:
        items = ahead.items()
        assert next(items) == 0
        deadline = time.monotonic() + 5
        while len(read) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)  # time for the thread to fill what it may
        time.sleep(0.05)
        assert len(read) == 4  # the one taken, and three waiting
        assert list(items) == list(range(1, 50))


def test_read_ahead_joined_stops_its_thread_and_closes_the_source_there() -> None:
    closed_in: list[str] = []

    def source() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed_in.append(threading.current_thread().name)

    with jsonl.ReadAhead(source(), name="reader", ahead=2, join=True) as ahead:
        assert next(ahead.items()) == 0
    assert closed_in == ["reader"]
    assert not any(t.name == "reader" for t in threading.enumerate())


def test_read_ahead_raises_what_the_source_raised_after_the_items_before_it() -> None:
    failure = LookupError("row 3 is gone")

    def source() -> Iterator[int]:
        yield from range(3)
        raise failure

    seen: list[int] = []
    with jsonl.ReadAhead(source(), ahead=2, join=True) as ahead:
        with pytest.raises(LookupError) as caught:
            seen.extend(ahead.items())
    assert seen == [0, 1, 2]
    assert caught.value is failure
