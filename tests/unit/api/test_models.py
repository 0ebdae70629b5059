from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from orchestrator.api import (
    CanceledResult,
    ErroredResult,
    ExpiredResult,
    MessageBatch,
    MessageBatchPage,
    SucceededResult,
    parse_error_envelope,
    parse_result_line,
)
from tests.unit.api.fakes import batch_json

MESSAGE: dict[str, Any] = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-opus-5",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Hello, "},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
        {"type": "text", "text": "world", "citations": None},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 7,
        "cache_creation": {"ephemeral_5m_input_tokens": 2, "ephemeral_1h_input_tokens": 3},
        "service_tier": "batch",
        "server_tool_use": {"web_search_requests": 1},
        "inference_geo": "us",
        "output_tokens_details": {"thinking_tokens": 4},
    },
}


def line(result: dict[str, Any], custom_id: str = "row-1") -> bytes:
    return orjson.dumps({"custom_id": custom_id, "result": result})


def test_succeeded_line_gives_message_text_and_usage() -> None:
    parsed = parse_result_line(line({"type": "succeeded", "message": MESSAGE}))

    assert parsed.custom_id == "row-1"
    assert isinstance(parsed.result, SucceededResult)
    message = parsed.result.message
    assert message.text == "Hello, world"
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_1h_input_tokens == 3
    assert message.usage.service_tier == "batch"
    assert message.usage.model_extra == {"output_tokens_details": {"thinking_tokens": 4}}


def test_errored_line_exposes_the_wrapped_error_type() -> None:
    error = {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: too large"},
        "request_id": None,
    }

    parsed = parse_result_line(line({"type": "errored", "error": error}))

    assert isinstance(parsed.result, ErroredResult)
    assert parsed.result.error.error.type == "invalid_request_error"
    assert parsed.result.error.error.message == "max_tokens: too large"
    assert parsed.result.error.request_id is None


@pytest.mark.parametrize(
    ("result_type", "model"), [("canceled", CanceledResult), ("expired", ExpiredResult)]
)
def test_payload_free_results(result_type: str, model: type) -> None:
    parsed = parse_result_line(line({"type": result_type}))

    assert isinstance(parsed.result, model)


def test_unknown_fields_are_kept_everywhere() -> None:
    message = {**MESSAGE, "stop_details": None, "container": {"id": "c1"}}
    raw = orjson.dumps(
        {
            "custom_id": "row-1",
            "result": {"type": "succeeded", "message": message, "trace": 1},
            "shard": 3,
        }
    )

    parsed = parse_result_line(raw)

    dumped = parsed.model_dump()
    assert dumped["shard"] == 3
    assert dumped["result"]["trace"] == 1
    assert dumped["result"]["message"]["container"] == {"id": "c1"}


def test_minimal_message_from_the_docs_sample_parses() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "hi"}],
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }

    parsed = parse_result_line(line({"type": "succeeded", "message": message}))

    assert isinstance(parsed.result, SucceededResult)
    assert parsed.result.message.stop_reason is None
    assert parsed.result.message.usage.cache_read_input_tokens is None


@pytest.mark.parametrize(
    "raw",
    [
        line({"type": "paused"}),
        line({"type": "succeeded"}),
        line({"type": "errored", "error": {"type": "error"}}),
        b'{"result":{"type":"canceled"}}',
        b'{"custom_id":"x","result":{"type":"canceled"}',
        b"[1, 2]",
        b"",
        b"\xff\xfe",
    ],
)
def test_unparseable_lines_raise_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the contract is "any ValueError"
        parse_result_line(raw)


@pytest.mark.parametrize("batch_id", ["b", "msgbatch_" + "x" * 200])
def test_batch_accepts_ids_of_any_length_and_unknown_fields(batch_id: str) -> None:
    batch = MessageBatch.model_validate(batch_json(batch_id, priority="low"))

    assert batch.id == batch_id
    assert batch.model_extra == {"priority": "low"}


def test_batch_timestamps_are_utc_aware() -> None:
    raw = batch_json(created_at="2024-09-24T20:37:24.100435+02:00")

    batch = MessageBatch.model_validate(raw)

    assert batch.created_at == datetime(2024, 9, 24, 18, 37, 24, 100435, tzinfo=UTC)
    assert batch.created_at.tzinfo is UTC
    assert batch.expires_at is not None
    assert batch.expires_at.tzinfo is UTC


def test_batch_without_archived_at_parses_as_in_the_guide() -> None:
    raw = batch_json()
    del raw["archived_at"]

    assert MessageBatch.model_validate(raw).archived_at is None


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone"):
        MessageBatch.model_validate(batch_json(created_at="2024-09-24T18:37:24"))


def test_request_counts_total_sums_all_states() -> None:
    counts = {"processing": 0, "succeeded": 5, "errored": 2, "canceled": 1, "expired": 3}

    batch = MessageBatch.model_validate(batch_json(request_counts=counts))

    assert batch.request_counts.total == 11


def test_empty_page_has_null_cursors() -> None:
    page = MessageBatchPage.model_validate(
        {"data": [], "has_more": False, "first_id": None, "last_id": None}
    )

    assert page.data == []
    assert page.last_id is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"type":"error","error":{"type":"not_found_error","message":"No batch"},'
            b'"request_id":"req_1"}',
            ("not_found_error", "No batch", "req_1"),
        ),
        (
            b'{"type":"error","error":{"type":"api_error","message":"boom"}}',
            ("api_error", "boom", None),
        ),
        (
            b"<html><body>502 Bad Gateway</body></html>",
            (None, "<html><body>502 Bad Gateway</body></html>", None),
        ),
        (b"", (None, "", None)),
        (b"[1]", (None, "[1]", None)),
        (b'{"error":"nope"}', (None, '{"error":"nope"}', None)),
        (
            b'{"error":{"type":7,"message":null},"request_id":5}',
            (None, '{"error":{"type":7,"message":null},"request_id":5}', None),
        ),
    ],
)
def test_parse_error_envelope(body: bytes, expected: tuple[str | None, str, str | None]) -> None:
    assert parse_error_envelope(body) == expected


def test_parse_error_envelope_cuts_long_pages() -> None:
    error_type, message, request_id = parse_error_envelope(b"<p>" + b"x" * 5000 + b"</p>")

    assert (error_type, request_id) == (None, None)
    assert len(message) <= 201
    assert message.startswith("<p>xxx")
