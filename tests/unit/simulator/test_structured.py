"""Structured output (output_config json_schema), the schema faker, invalid_output_share."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Literal

import jsonschema
import orjson
import pytest
from pydantic import BaseModel, Field

from orchestrator.simulator import ManualClock, SimulatorState
from orchestrator.simulator.model import cut_json, generate, sketch
from orchestrator.simulator.results import result_line
from orchestrator.simulator.schema import fake_value
from orchestrator.simulator.validation import params_problem

from .conftest import make_state, params

LABELS = ["positive", "negative", "neutral", "mixed"]
LABEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": LABELS},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "urgent": {"type": "boolean"},
        "topics": {
            "type": "array",
            "items": {"type": "string", "enum": ["price", "quality", "delivery", "support"]},
            "minItems": 1,
            "maxItems": 3,
            "uniqueItems": True,
        },
        "quotes": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "detail": {
            "type": "object",
            "properties": {
                "reason": {"type": "string", "minLength": 3},
                "weight": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
            },
            "required": ["reason", "weight"],
            "additionalProperties": False,
        },
    },
    "required": ["label", "confidence", "stars", "urgent", "topics", "quotes", "detail"],
    "additionalProperties": False,
}
TOOL = {"name": "record_label", "input_schema": LABEL_SCHEMA}


def _format(schema: dict[str, Any] = LABEL_SCHEMA) -> dict[str, Any]:
    return {"format": {"type": "json_schema", "schema": schema}}


def _structured(text: str, **extra: Any) -> dict[str, Any]:
    return params(text, output_config=_format(), max_tokens=1024, **extra)


def _forced(text: str, schema: dict[str, Any] = LABEL_SCHEMA) -> dict[str, Any]:
    tool = {"name": "record_label", "input_schema": schema}
    return params(text, tools=[tool], tool_choice={"type": "tool", "name": "record_label"})


def _valid(value: object, schema: dict[str, Any] = LABEL_SCHEMA) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def _results(
    state: SimulatorState, clock: ManualClock, pairs: list[tuple[str, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """Create a batch, let it end, return each custom_id's result."""
    batch = state.create_batch(pairs, frozenset())
    clock.advance(100)
    state.get(batch.id)
    lines = (result_line(batch, n, batch.seed)[0] for n in range(len(pairs)))
    return {line["custom_id"]: line["result"] for line in map(orjson.loads, lines)}


# -- json_schema answers ------------------------------------------------------------


def test_json_answer_is_one_text_block_that_validates() -> None:
    for n in range(200):
        reply = generate(sketch(_structured(f"Review {n}: fine"), 0, None, {}), 0)
        assert reply.stop_reason == "end_turn"
        assert reply.stop_sequence is None
        assert [block["type"] for block in reply.content] == ["text"]
        text = reply.content[0]["text"]
        assert text == orjson.dumps(orjson.loads(text)).decode()  # compact
        assert _valid(orjson.loads(text))
        assert reply.output_tokens == math.ceil(len(text) / 4)


def test_json_answers_vary_between_prompts_within_bounds() -> None:
    answers = [
        orjson.loads(
            generate(sketch(_structured(f"Review {n}"), 0, None, {}), 0).content[0]["text"]
        )
        for n in range(200)
    ]
    assert {a["label"] for a in answers} == set(LABELS)
    confidences = {a["confidence"] for a in answers}
    assert len(confidences) > 100
    assert all(0 <= c <= 1 for c in confidences)
    assert {a["stars"] for a in answers} == {1, 2, 3, 4, 5}
    assert {a["urgent"] for a in answers} == {True, False}
    assert {len(a["topics"]) for a in answers} == {1, 2, 3}


def test_json_answer_is_deterministic() -> None:
    body = _structured("Classify this review")
    reordered = dict(reversed(list(body.items())))
    first = generate(sketch(body, 5, None, {}), 5)
    assert first == generate(sketch(reordered, 5, None, {}), 5)
    assert first != generate(sketch(body, 6, None, {}), 6)


def test_json_answer_is_cut_at_max_tokens() -> None:
    prompt = sketch(_structured("Classify") | {"max_tokens": 5}, 0, None, {})
    full = orjson.dumps(fake_value(LABEL_SCHEMA, 0 ^ prompt.digest)).decode()
    reply = generate(prompt, 0)
    assert len(full) > 20
    assert reply.stop_reason == "max_tokens"
    assert reply.content[0]["text"] == full[:20]
    assert reply.output_tokens == 5


def test_forced_tool_wins_over_output_format() -> None:
    body = _forced("Classify") | {"output_config": _format()}
    reply = generate(sketch(body, 0, None, {}), 0)
    assert reply.stop_reason == "tool_use"
    assert reply.content[0]["type"] == "tool_use"
    assert _valid(reply.content[0]["input"])


# -- the schema faker ---------------------------------------------------------------


class Sentiment(BaseModel):
    label: Literal["positive", "negative", "neutral"]
    confidence: float = Field(ge=0, le=1)


class Review(BaseModel):
    sentiment: Sentiment
    aspects: list[Sentiment] = Field(min_length=1, max_length=4)
    language: str | None = None
    score: int = Field(gt=0, lt=11)


SCHEMAS: list[dict[str, Any]] = [
    Review.model_json_schema(),  # $defs / $ref / anyOf null, as pydantic emits them
    {"type": "number", "maximum": -5},
    {"type": "integer", "maximum": -5},
    {"type": "number", "exclusiveMinimum": 0.1, "exclusiveMaximum": 0.1001},
    {"type": "integer", "minimum": 0.5, "exclusiveMaximum": 3},
    {"type": "integer", "minimum": 3, "maximum": 40, "multipleOf": 7},
    {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2, "uniqueItems": True},
    {"type": "array", "items": {"type": "boolean"}, "maxItems": 2, "uniqueItems": True},
    {"type": "array", "items": {"type": "integer"}, "minItems": 0, "maxItems": 0},
    {"type": ["string", "null"], "minLength": 12, "maxLength": 12},
    {"type": "object", "additionalProperties": False},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_fake_value_validates_over_many_seeds(schema: dict[str, Any]) -> None:
    values = [fake_value(schema, seed) for seed in range(300)]
    assert all(_valid(value, schema) for value in values)
    assert values == [fake_value(schema, seed) for seed in range(300)]


def test_fake_value_honours_draft4_boolean_exclusive_bounds() -> None:
    schema = {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMaximum": True}
    validator = jsonschema.Draft4Validator(schema)
    assert all(validator.is_valid(fake_value(schema, seed)) for seed in range(300))


def test_recursive_required_ref_terminates() -> None:
    schema = {
        "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
        "$ref": "#/$defs/node",
        "required": ["next"],
    }
    assert isinstance(fake_value(schema, 1), dict)


# -- malformed output_config (async: errored invalid_request_error) ------------------


@pytest.mark.parametrize(
    ("output_config", "message"),
    [
        ("json", "output_config: Input should be a valid dictionary"),
        ({"format": "json"}, "output_config.format: Input should be a valid dictionary"),
        ({"format": {"type": "text"}}, "output_config.format.type: Input should be 'json_schema'"),
        ({"format": {"type": "json_schema"}}, "output_config.format.schema: Field required"),
        (
            {"format": {"type": "json_schema", "schema": []}},
            "output_config.format.schema: Input should be a valid dictionary",
        ),
    ],
)
def test_malformed_output_config_is_a_params_problem(output_config: object, message: str) -> None:
    assert params_problem(params(output_config=output_config)) == message


def test_output_config_without_format_is_fine() -> None:
    assert params_problem(params(output_config={"effort": "low"})) is None
    assert params_problem(params(output_config=_format())) is None


def test_malformed_output_config_ends_errored(clock: ManualClock) -> None:
    state = make_state(clock)
    bad = params("x", output_config={"format": {"type": "json_schema", "schema": "no"}})
    results = _results(state, clock, [("bad", bad), ("good", _structured("x"))])
    assert results["bad"]["type"] == "errored"
    assert results["bad"]["error"]["error"]["type"] == "invalid_request_error"
    assert results["bad"]["error"]["error"]["message"].startswith("output_config.format.schema")
    assert results["good"]["type"] == "succeeded"


# -- invalid_output_share -----------------------------------------------------------


def _json_verdicts(
    state: SimulatorState, clock: ManualClock, custom_ids: list[str]
) -> dict[str, bool]:
    """custom_id -> answer is valid; checks that each invalid answer really is invalid."""
    pairs = [(c, _structured(f"Review of item {c.split('-')[1]}")) for c in custom_ids]
    verdicts = {}
    for custom_id, result in _results(state, clock, pairs).items():
        message = result["message"]
        text = message["content"][0]["text"]
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            assert message["stop_reason"] == "max_tokens"
            assert message["usage"]["output_tokens"] == max(1, math.ceil(len(text) / 4))
            verdicts[custom_id] = False
        else:
            assert message["stop_reason"] == "end_turn"
            verdicts[custom_id] = _valid(value)
            assert verdicts[custom_id]
    return verdicts


def test_invalid_share_cuts_json_per_custom_id(clock: ManualClock) -> None:
    state = make_state(clock, invalid_output_share=0.3)
    first_try = [f"job7-{n}-1" for n in range(400)]
    verdicts = _json_verdicts(state, clock, first_try)
    assert Counter(verdicts.values())[False] / 400 == pytest.approx(0.3, abs=0.07)
    # The same custom_ids (any order, another batch) give the same verdicts ...
    assert _json_verdicts(state, clock, first_try[::-1]) == verdicts
    # ... while a retry under the next attempt's custom_id draws afresh.
    retry = _json_verdicts(state, clock, [c[:-1] + "2" for c in first_try])
    flipped = [c for c in first_try if not verdicts[c] and retry[c[:-1] + "2"]]
    assert len(flipped) > 50


def test_invalid_json_is_the_first_half_of_the_valid_answer(clock: ManualClock) -> None:
    body = _structured("Classify")
    valid = generate(sketch(body, 0, None, {}), 0).content[0]["text"]
    cut = generate(sketch(body, 0, None, {}, invalid=True), 0)
    assert cut.content[0]["text"] == valid[: len(valid) // 2]
    assert cut.stop_reason == "max_tokens"
    assert cut_json("12345") == ""  # a half that still parses is dropped altogether
    assert cut_json("7") == ""


def test_invalid_tool_input_misses_one_required_property(clock: ManualClock) -> None:
    state = make_state(clock, invalid_output_share=1.0)
    results = _results(state, clock, [(f"t-{n}-1", _forced(f"Item {n}")) for n in range(40)])
    dropped = Counter[str]()
    for result in results.values():
        block = result["message"]["content"][0]
        assert result["message"]["stop_reason"] == "tool_use"
        assert block["type"] == "tool_use"
        missing = set(LABEL_SCHEMA["required"]) - set(block["input"])
        assert len(missing) == 1
        assert len(block["input"]) == len(LABEL_SCHEMA["required"]) - 1
        errors = list(jsonschema.Draft202012Validator(LABEL_SCHEMA).iter_errors(block["input"]))
        assert [error.validator for error in errors] == ["required"]
        dropped.update(missing)
    assert len(dropped) > 3  # not always the same property


@pytest.mark.parametrize(
    "schema",
    [{"type": "object"}, {"type": "object", "properties": {"note": {"type": "string"}}}],
)
def test_invalid_tool_input_without_required_is_a_string(schema: dict[str, Any]) -> None:
    reply = generate(sketch(_forced("Item", schema), 0, None, {}, invalid=True), 0)
    tool_input = reply.content[0]["input"]
    assert isinstance(tool_input, str)
    assert not _valid(tool_input, schema)


def test_share_zero_and_plain_text_stay_valid(clock: ManualClock) -> None:
    plain = [(f"p-{n}-1", params(f"Answer yes or no: {n}?")) for n in range(50)]
    none = _results(make_state(clock), clock, plain)
    every = _results(make_state(clock, invalid_output_share=1.0), clock, plain)
    # only structured answers are ever made invalid
    assert [r["message"]["content"] for r in none.values()] == [
        r["message"]["content"] for r in every.values()
    ]
    zero = make_state(clock, invalid_output_share=0.0)
    assert all(_json_verdicts(zero, clock, [f"z-{n}-1" for n in range(100)]).values())


def test_messages_endpoint_answers_are_always_valid(clock: ManualClock) -> None:
    state = make_state(clock, invalid_output_share=1.0)
    for n in range(20):
        message = generate(state.message_prompt(_structured(f"Item {n}")), 0)
        assert _valid(orjson.loads(message.content[0]["text"]))
        tool = generate(state.message_prompt(_forced(f"Item {n}")), 0)
        assert _valid(tool.content[0]["input"])
