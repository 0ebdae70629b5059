"""Request params are checked as the API would, before any spend, with dotted paths."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.domain.params import ParamsError, validate_params

BASE: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "max_tokens": 2048,
    "messages": [{"role": "user", "content": "Hello"}],
}
TOOL: dict[str, Any] = {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
IMAGE: dict[str, Any] = {
    "type": "image",
    "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
}
PDF: dict[str, Any] = {
    "type": "document",
    "source": {"type": "base64", "media_type": "application/pdf", "data": "JV"},
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def user(*blocks: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(blocks)}]


VALID = [
    pytest.param(BASE, id="minimal"),
    pytest.param(with_(system="Be brief.", stop_sequences=["END"]), id="system+stop"),
    pytest.param(
        with_(
            system=[
                {"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ]
        ),
        id="system-blocks",
    ),
    pytest.param(with_(messages=user({"type": "text", "text": "Look:"}, IMAGE)), id="image"),
    pytest.param(with_(messages=user(PDF, {"type": "text", "text": "Summarise"})), id="pdf"),
    pytest.param(
        with_(
            messages=user(
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "t"},
                }
            )
        ),
        id="text-document",
    ),
    pytest.param(
        with_(
            tools=[TOOL, {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
            tool_choice={"type": "tool", "name": "web_search"},
        ),
        id="tools",
    ),
    pytest.param(with_(thinking={"type": "enabled", "budget_tokens": 1024}), id="thinking"),
    pytest.param(
        with_(thinking={"type": "adaptive"}, output_config={"effort": "low"}), id="adaptive"
    ),
    pytest.param(
        with_(metadata={"user_id": "u1"}, service_tier="auto", inference_geo="us"), id="optional"
    ),
    pytest.param(with_(stream=False), id="stream-false"),
    pytest.param(
        with_(
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}],
                },
            ],
            tools=[TOOL],
        ),
        id="tool-round-trip",
    ),
    pytest.param(
        with_(
            messages=[
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "s"},
                        {"type": "redacted_thinking", "data": "d"},
                    ],
                },
            ]
        ),
        id="thinking-blocks",
    ),
    pytest.param(
        with_(
            messages=user(
                {
                    "type": "search_result",
                    "source": "https://x",
                    "title": "X",
                    "content": [{"type": "text", "text": "x"}],
                }
            )
        ),
        id="search-result",
    ),
]


@pytest.mark.parametrize("params", VALID)
def test_valid_params_pass(params: dict[str, Any]) -> None:
    validate_params(params)


INVALID = [
    pytest.param(
        with_(temperature=0.5),
        "2026-10-21",
        "temperature",
        "Extra inputs are not permitted (temperature, top_p and top_k were removed in API "
        'version 2026-10-21; remove it or set api_version = "2023-06-01")',
        id="temperature-2026",
    ),
    pytest.param(with_(top_k=5), "2026-10-21", "top_k", None, id="top_k-2026"),
    pytest.param(
        with_(temperature=1.5),
        "2023-06-01",
        "temperature",
        "Input should be less than or equal to 1",
        id="temperature-range-2023",
    ),
    pytest.param(
        with_(stream=True),
        "2026-10-21",
        "stream",
        "streaming is not supported in Message Batches; remove stream",
        id="stream",
    ),
    pytest.param(
        with_(speed="fast"),
        "2026-10-21",
        "speed",
        "fast mode (speed) is not available in Message Batches; remove speed",
        id="speed",
    ),
    pytest.param(
        with_(betas=["x"]),
        "2026-10-21",
        "betas",
        "beta flags are sent as the anthropic-beta header: put them in the spec's "
        "`betas = [...]` field, not in params",
        id="betas",
    ),
    pytest.param(
        with_(foo=1), "2026-10-21", "foo", "Extra inputs are not permitted", id="unknown-param"
    ),
    pytest.param(
        {"max_tokens": 5, "messages": BASE["messages"]},
        "2026-10-21",
        "model",
        "Field required",
        id="no-model",
    ),
    pytest.param(
        with_(max_tokens=0),
        "2026-10-21",
        "max_tokens",
        "Input should be greater than or equal to 1",
        id="max_tokens-0",
    ),
    pytest.param(
        with_(max_tokens="16"),
        "2026-10-21",
        "max_tokens",
        "Input should be a valid integer",
        id="max_tokens-string",
    ),
    pytest.param(
        with_(messages=[]),
        "2026-10-21",
        "messages",
        "List should have at least 1 item after validation, not 0",
        id="no-messages",
    ),
    pytest.param(
        with_(messages=[{"role": "assistant", "content": "Hi"}]),
        "2026-10-21",
        "messages.0.role",
        'the first message must have role "user"',
        id="first-assistant",
    ),
    pytest.param(
        with_(messages=[{"role": "system", "content": "Hi"}]),
        "2026-10-21",
        "messages.0.role",
        "Input should be 'user' or 'assistant'",
        id="bad-role",
    ),
    pytest.param(
        with_(messages=[{"role": "user", "content": ""}]),
        "2026-10-21",
        "messages.0.content",
        "String should have at least 1 character",
        id="empty-content",
    ),
    pytest.param(
        with_(messages=[{"role": "user", "content": 7}]),
        "2026-10-21",
        "messages.0.content",
        "Input should be a string or a list of content blocks",
        id="content-int",
    ),
    pytest.param(
        with_(messages=user({"type": "text", "text": "a"}, {"type": "video", "url": "x"})),
        "2026-10-21",
        "messages.0.content.1",
        None,
        id="unknown-block",
    ),
    pytest.param(
        with_(messages=user({"text": "a"})),
        "2026-10-21",
        "messages.0.content.0",
        'Input should be an object with a "type" field',
        id="untyped-block",
    ),
    pytest.param(
        with_(
            messages=user(
                {"type": "text", "text": "a"},
                {**IMAGE, "source": {**IMAGE["source"], "media_type": "image/bmp"}},
            )
        ),
        "2026-10-21",
        "messages.0.content.1.source.media_type",
        "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
        id="image-media-type",
    ),
    pytest.param(
        with_(messages=user({"type": "image", "source": {"type": "ftp", "url": "x"}})),
        "2026-10-21",
        "messages.0.content.0.source",
        "unknown type 'ftp' (expected one of: 'base64', 'url', 'file')",
        id="image-source-type",
    ),
    pytest.param(
        with_(
            messages=user(
                {"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "2h"}}
            )
        ),
        "2026-10-21",
        "messages.0.content.0.cache_control.ttl",
        "Input should be '5m' or '1h'",
        id="cache-ttl",
    ),
    pytest.param(
        with_(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": [PDF]}]),
        "2026-10-21",
        "messages.1.content.0",
        "document blocks are not allowed in assistant messages in API version 2026-10-21",
        id="assistant-document-2026",
    ),
    pytest.param(
        with_(
            messages=user({"type": "text", "text": "a", "citations": [{"type": "char_location"}]})
        ),
        "2026-10-21",
        "messages.0.content.0.citations",
        "text blocks in user messages may not carry citations in API version 2026-10-21",
        id="user-citations-2026",
    ),
    pytest.param(
        with_(thinking={"type": "enabled", "budget_tokens": 2048}),
        "2026-10-21",
        "thinking.budget_tokens",
        "must be less than max_tokens (2048)",
        id="thinking-budget",
    ),
    pytest.param(
        with_(thinking={"type": "enabled", "budget_tokens": 512}),
        "2026-10-21",
        "thinking.budget_tokens",
        "Input should be greater than or equal to 1024",
        id="thinking-min",
    ),
    pytest.param(
        with_(thinking={"type": "sometimes"}),
        "2026-10-21",
        "thinking",
        "unknown type 'sometimes' (expected one of: 'enabled', 'disabled', 'adaptive')",
        id="thinking-type",
    ),
    pytest.param(
        with_(tools=[TOOL], tool_choice={"type": "tool", "name": "get_time"}),
        "2026-10-21",
        "tool_choice.name",
        "no tool named 'get_time' (tools: get_weather)",
        id="tool-choice-unknown",
    ),
    pytest.param(
        with_(tool_choice={"type": "tool", "name": "x"}),
        "2026-10-21",
        "tool_choice.name",
        "no tool named 'x' (tools: none)",
        id="tool-choice-no-tools",
    ),
    pytest.param(
        with_(tools=[{**TOOL, "name": "get weather"}]),
        "2026-10-21",
        "tools.0.name",
        "String should match pattern '^[a-zA-Z0-9_-]{1,128}$'",
        id="tool-name",
    ),
    pytest.param(
        with_(tools=[{**TOOL, "input_schema": {"type": "array"}}]),
        "2026-10-21",
        "tools.0.input_schema.type",
        "Input should be 'object'",
        id="tool-schema",
    ),
    pytest.param(
        with_(stop_sequences=["ok", ""]),
        "2026-10-21",
        "stop_sequences.1",
        "String should have at least 1 character",
        id="empty-stop",
    ),
    pytest.param(
        with_(metadata={"user_id": "u", "session": "s"}),
        "2026-10-21",
        "metadata.session",
        "Extra inputs are not permitted",
        id="metadata-extra",
    ),
    pytest.param(
        with_(system=[{"type": "text", "text": ""}]),
        "2026-10-21",
        "system.0.text",
        "String should have at least 1 character",
        id="system-empty-text",
    ),
    pytest.param(
        with_(
            messages=user(
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text"}]}
            )
        ),
        "2026-10-21",
        "messages.0.content.0.content.0.text",
        "Field required",
        id="tool-result-nested",
    ),
    pytest.param(
        ["not", "a", "dict"], "2026-10-21", "", "params must be a JSON object", id="not-an-object"
    ),
]


@pytest.mark.parametrize(("params", "api_version", "path", "message"), INVALID)
def test_invalid_params_report_the_first_problem(
    params: Any, api_version: str, path: str, message: str | None
) -> None:
    with pytest.raises(ParamsError) as caught:
        validate_params(params, api_version=api_version)
    assert caught.value.path == path
    if message is not None:
        assert caught.value.message == message
        assert str(caught.value) == (f"{path}: {message}" if path else message)


def test_unknown_block_type_lists_the_known_ones() -> None:
    params = with_(messages=user({"type": "video"}))
    with pytest.raises(
        ParamsError, match=r"unknown type 'video' \(expected one of: 'text', 'image'"
    ):
        validate_params(params)


@pytest.mark.parametrize("name", ["temperature", "top_p", "top_k"])
def test_sampling_params_are_allowed_under_2023_06_01(name: str) -> None:
    validate_params(with_(**{name: 1}), api_version="2023-06-01")


def test_assistant_document_is_allowed_under_2023_06_01() -> None:
    params = with_(
        messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": [PDF]}]
    )
    validate_params(params, api_version="2023-06-01")


def test_unknown_api_version_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown API version '2030-01-01'"):
        validate_params(BASE, api_version="2030-01-01")
