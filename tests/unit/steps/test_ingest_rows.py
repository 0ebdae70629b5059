"""The ingest's fast reading of a results line agrees with the models'.

``api.models.load_result_line`` hands over the parsed dict itself when it is exactly
what the models declare, and the ingest builds rows from it without them; anything
else goes through ``ResultLine``. Either way the row must be the one the models give
(``ingest.result_row``), and an unreadable line must fail with the models' message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import orjson
import pytest

from orchestrator.api.models import ResultLine, is_plain_result_line, load_result_line
from orchestrator.domain.output import Answers, Output, OutputMode
from orchestrator.domain.pricing import PriceTable
from orchestrator.domain.states import ResultType
from orchestrator.steps.ingest import _Tail, _tail, result_row
from orchestrator.store.records import ResultRow, ResultValues, Route

PRICES = PriceTable.load()
ROUTE = Route(item_id=5, attempt=2)
ANSWERS = Answers(
    Output(
        {
            "type": "object",
            "properties": {"label": {"type": "string"}},
            "required": ["label"],
        },
        OutputMode.JSON_SCHEMA,
    )
)


def message(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": '{"label": "ok"}'}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage(),
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


def usage(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "input_tokens": 120,
        "output_tokens": 30,
        "cache_creation_input_tokens": 50,
        "cache_read_input_tokens": 1024,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30},
        "service_tier": "batch",
        "server_tool_use": None,
        "inference_geo": "us",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def line(result: dict[str, Any], custom_id: Any = "abc-5-2", **extra: Any) -> bytes:
    return orjson.dumps({"custom_id": custom_id, "result": result, **extra})


def succeeded(**changes: Any) -> bytes:
    return line({"type": "succeeded", "message": message(**changes)})


ERROR = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

LINES = {
    # What the API writes: read without the models.
    "succeeded": succeeded(),
    "errored": line({"type": "errored", "error": {**ERROR, "request_id": None}}),
    "an error without request_id": line({"type": "errored", "error": ERROR}),
    "canceled": line({"type": "canceled"}),
    "expired": line({"type": "expired"}),
    "no optional usage fields": succeeded(usage={"input_tokens": 1, "output_tokens": 2}),
    "null optional usage fields": succeeded(
        usage=usage(
            cache_creation=None,
            cache_creation_input_tokens=None,
            cache_read_input_tokens=None,
            service_tier=None,
            inference_geo=None,
        )
    ),
    "empty cache split": succeeded(usage=usage(cache_creation={})),
    "fields this code does not know": line(
        {"type": "succeeded", "message": message(container={"id": "c"}), "extra": 1}, note="x"
    ),
    "no stop reason": succeeded(stop_reason=None),
    "tool use and thinking blocks": succeeded(
        content=[
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "a"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {"x": [1, 2]}},
            {"type": "text", "text": "b"},
        ]
    ),
    "a text block without text": succeeded(content=[{"type": "text", "text": 3}]),
    "no content": succeeded(content=[]),
    "an answer off the schema": succeeded(content=[{"type": "text", "text": "{"}]),
    "an unpriced model": succeeded(model="claude-unknown-9"),
    "a NUL and non-ASCII text": succeeded(content=[{"type": "text", "text": "a\u0000b é 東"}]),
    "defaults left out": succeeded(type=_DROP, role=_DROP, stop_sequence=_DROP),
    # Values the models coerce: read through them.
    "a token count as a string": succeeded(usage=usage(input_tokens="120")),
    "a token count as a float": succeeded(usage=usage(output_tokens=30.0)),
    "a token count as a bool": succeeded(usage=usage(output_tokens=True)),
}

UNREADABLE = {
    "not JSON": b'{"custom_id": "abc-5-2", "result": ',
    "not an object": b"[1, 2]",
    "no custom_id": orjson.dumps({"result": {"type": "expired"}}),
    "a numeric custom_id": line({"type": "expired"}, custom_id=7),
    "an unknown result type": line({"type": "paused"}),
    "a result type of the wrong type": line({"type": 1}),
    "no message": line({"type": "succeeded"}),
    "no usage": succeeded(usage=_DROP),
    "a null model": succeeded(model=None),
    "a null message type": succeeded(type=None),
    "content not a list": succeeded(content={"type": "text"}),
    "a content block not an object": succeeded(content=["text"]),
    "a token count not a number": succeeded(usage=usage(input_tokens="many")),
    "a cache split not an object": succeeded(usage=usage(cache_creation=[])),
    "server tool use not an object": succeeded(usage=usage(server_tool_use=3)),
    "an error without a message": line(
        {"type": "errored", "error": {"type": "error", "error": {"type": "api_error"}}}
    ),
}


def test_a_row_is_its_route_then_its_tail() -> None:
    assert ResultValues._fields == tuple(f.name for f in fields(ResultRow))
    assert ResultValues._fields[:4] == ("batch_id", "item_id", "custom_id", "attempt")
    assert ResultValues._fields[4:] == _Tail._fields


def test_the_lines_the_api_writes_are_plain() -> None:
    plain = {name for name, raw in LINES.items() if is_plain_result_line(orjson.loads(raw))}
    coerced = {name for name in LINES if name.startswith("a token count")}
    assert plain == set(LINES) - coerced


@pytest.mark.parametrize("answers", [None, ANSWERS], ids=["no output", "declared output"])
@pytest.mark.parametrize("name", list(LINES))
def test_a_readable_line_gives_the_row_the_models_give(name: str, answers: Answers | None) -> None:
    raw = LINES[name]
    expected = result_row(3, ROUTE, ResultLine.model_validate_json(raw), PRICES, answers)

    loaded = load_result_line(raw)
    got = ResultRow(
        3,
        ROUTE.item_id,
        loaded["custom_id"],
        ROUTE.attempt,
        *_tail(loaded["result"], PRICES, answers),
    )

    assert got == expected
    assert [type(v) for v in (got.input_tokens, got.output_tokens)] == [
        type(v) for v in (expected.input_tokens, expected.output_tokens)
    ]


@pytest.mark.parametrize("name", list(UNREADABLE))
def test_an_unreadable_line_fails_with_the_models_message(name: str) -> None:
    raw = UNREADABLE[name]

    by_models = _failure(lambda: ResultLine.model_validate(orjson.loads(raw)))
    fast = _failure(lambda: load_result_line(raw))

    assert (type(fast), str(fast)) == (type(by_models), str(by_models))


def _failure(call: Callable[[], object]) -> ValueError:
    try:
        call()
    except ValueError as exc:
        return exc
    raise AssertionError("no ValueError raised")


def test_a_succeeded_row_holds_each_field_of_its_message_under_its_name() -> None:
    """Each field a different value, read back by name: a row whose fields were
    shifted or swapped would store one field's value under another's column."""
    raw = succeeded(
        id="msg_7",
        model="claude-haiku-4-5",
        stop_reason="stop_sequence",
        stop_sequence="END",
        content=[{"type": "text", "text": '{"label": "ok"}'}],
        usage=usage(
            input_tokens=101,
            output_tokens=102,
            cache_creation_input_tokens=103,
            cache_read_input_tokens=104,
            cache_creation={"ephemeral_5m_input_tokens": 105, "ephemeral_1h_input_tokens": 106},
            service_tier="tier-a",
            inference_geo="geo-b",
        ),
    )
    loaded = load_result_line(raw)

    row = ResultRow(3, 5, "abc-5-2", 2, *_tail(loaded["result"], PRICES, ANSWERS))

    assert row.result_type is ResultType.SUCCEEDED
    assert (row.message_id, row.model) == ("msg_7", "claude-haiku-4-5")
    assert (row.stop_reason, row.stop_sequence) == ("stop_sequence", "END")
    assert row.text == '{"label": "ok"}'
    assert orjson.loads(row.content or "") == [{"type": "text", "text": '{"label": "ok"}'}]
    assert (row.output, row.output_error) == ('{"label":"ok"}', None)
    assert (row.input_tokens, row.output_tokens) == (101, 102)
    assert (row.cache_creation_input_tokens, row.cache_read_input_tokens) == (103, 104)
    assert (row.cache_creation_5m_input_tokens, row.cache_creation_1h_input_tokens) == (105, 106)
    assert (row.service_tier, row.inference_geo) == ("tier-a", "geo-b")
    assert (row.error_type, row.error_message) == (None, None)
    assert row.cost_usd is not None
    assert row.cost_usd > 0
