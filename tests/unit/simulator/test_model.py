"""The deterministic fake model (labels, truncation, stops, tools, thinking, usage)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.simulator.model import Prompt, generate, message, sketch
from orchestrator.simulator.schema import fake_value
from orchestrator.simulator.tokens import count_input_tokens

from .conftest import params


def _reply_text(text: str, seed: int = 0, **extra: Any) -> str:
    reply = generate(sketch(params(text, **extra), seed, None, {}), seed)
    return str(reply.content[-1].get("text"))


@pytest.mark.parametrize(
    ("prompt", "answer"),
    [
        ("Classify as positive, negative or neutral: I love it, excellent!", "positive"),
        (
            "Classify as positive, negative or neutral: it arrived broken, I want a refund",
            "negative",
        ),
        ("Classify as positive, negative or neutral: it is a lamp", "neutral"),
        ("Sentiment? Answer Positive or Negative. Terrible and awful.", "Negative"),
    ],
)
def test_sentiment_labels(prompt: str, answer: str) -> None:
    assert _reply_text(prompt) == answer


@pytest.mark.parametrize(
    ("prompt", "labels"),
    [
        ("Which is right? Answer A, B or C.", {"A", "B", "C"}),
        ("Pick one of: red, green, blue", {"red", "green", "blue"}),
        ("Is the sky blue? Answer yes or no.", {"yes", "no"}),
    ],
)
def test_other_labels_pick_exactly_one(prompt: str, labels: set[str]) -> None:
    answers = {_reply_text(f"{prompt} #{n}", seed=n) for n in range(30)}
    assert answers <= labels
    assert len(answers) > 1  # seeded hash, not always the first


def test_free_text_is_deterministic_and_plausible() -> None:
    first = _reply_text("Tell me about relational databases")
    assert first == _reply_text("Tell me about relational databases")
    assert first.endswith(".")
    assert len(first.split()) >= 8


def test_max_tokens_truncates_at_four_chars_per_token() -> None:
    reply = generate(sketch(params("Tell me about databases", max_tokens=3), 0, None, {}), 0)
    assert reply.stop_reason == "max_tokens"
    assert len(reply.content[0]["text"]) == 12
    assert reply.output_tokens == 3


def test_stop_sequence_wins_over_max_tokens() -> None:
    full = _reply_text("Tell me about databases")
    stop = full.split()[3]
    reply = generate(
        sketch(params("Tell me about databases", stop_sequences=[stop]), 0, None, {}), 0
    )
    assert reply.stop_reason == "stop_sequence"
    assert reply.stop_sequence == stop
    assert reply.content[0]["text"] == full[: full.index(stop)]


def _satisfies(value: object, schema: dict[str, Any]) -> bool:
    """A small JSON Schema checker for the shapes the generator supports."""
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema.get("type", "object")
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str) and len(v) >= schema.get("minLength", 0),
        "integer": lambda v: (
            isinstance(v, int) and schema.get("minimum", v) <= v <= schema.get("maximum", v)
        ),
        "number": lambda v: (
            isinstance(v, (int, float))
            and schema.get("minimum", v) <= v <= schema.get("maximum", v)
        ),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: (
            isinstance(v, list)
            and len(v) >= schema.get("minItems", 0)
            and all(_satisfies(i, schema.get("items", {})) for i in v)
        ),
        "object": lambda v: (
            isinstance(v, dict)
            and set(schema.get("required", [])) <= set(v)
            and all(_satisfies(v[k], s) for k, s in schema.get("properties", {}).items() if k in v)
        ),
    }
    return bool(checks[kind](value))


TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["spam", "ham"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "count": {"type": "integer", "minimum": 3, "maximum": 7},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "minLength": 12}, "minItems": 2},
        "nested": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
    },
    "required": ["label", "score", "count", "ok", "tags", "nested"],
}


@pytest.mark.parametrize("choice", [{"type": "tool", "name": "classify"}, {"type": "any"}])
def test_forced_tool_use_satisfies_schema(choice: dict[str, str]) -> None:
    tools = [
        {"name": "classify", "input_schema": TOOL_SCHEMA},
        {"name": "other", "input_schema": {}},
    ]
    prompt = sketch(params("Classify this", tools=tools, tool_choice=choice), 0, None, {})
    reply = generate(prompt, 0)
    block = reply.content[0]
    assert reply.stop_reason == "tool_use"
    assert block["type"] == "tool_use"
    assert block["name"] == "classify"
    assert block["id"].startswith("toolu_01")
    assert len(block["id"]) == 30
    assert _satisfies(block["input"], TOOL_SCHEMA)


def test_schema_generator_is_deterministic_per_seed() -> None:
    assert fake_value(TOOL_SCHEMA, 1) == fake_value(TOOL_SCHEMA, 1)
    assert all(_satisfies(fake_value(TOOL_SCHEMA, seed), TOOL_SCHEMA) for seed in range(50))


@pytest.mark.parametrize(
    "thinking", [{"type": "enabled", "budget_tokens": 1024}, {"type": "adaptive"}]
)
def test_thinking_block_comes_first_with_signature(thinking: dict[str, Any]) -> None:
    reply = generate(
        sketch(params("Explain queues", max_tokens=500, thinking=thinking), 0, None, {}), 0
    )
    assert [b["type"] for b in reply.content] == ["thinking", "text"]
    assert reply.content[0]["signature"]
    assert reply.content[0]["thinking"]


def test_usage_and_message_shape() -> None:
    body = params("x" * 400, system="y" * 100)
    assert count_input_tokens(body) == 125
    msg = message(sketch(body, 0, None, {}), 0, "msg_01abc", "batch")
    usage = msg["usage"]
    assert usage["input_tokens"] == 125
    assert usage["service_tier"] == "batch"
    assert usage["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 0,
    }
    assert usage["cache_read_input_tokens"] == 0
    assert msg["stop_reason"] == "end_turn"
    assert msg["role"] == "assistant"


def test_reply_is_a_pure_function_of_seed_and_params() -> None:
    def reply(seed: int, body: dict[str, Any]) -> Prompt:
        return sketch(body, seed, None, {})

    a = params("Answer A, B, C or D: which?")
    assert reply(3, a) == reply(3, dict(reversed(list(a.items()))))
    assert generate(reply(3, a), 3) == generate(reply(3, a), 3)
