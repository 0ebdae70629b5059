"""Sync envelope checks vs async per-request checks (§3.2)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.simulator.validation import InvalidRequest, check_create_body, params_problem

from .conftest import params

OLD, NEW = "2023-06-01", "2026-10-21"


def _item(custom_id: object = "a", **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "params": params(**extra)}


@pytest.mark.parametrize(
    ("body", "version", "message"),
    [
        ([], OLD, "valid dictionary"),
        ({}, OLD, "requests: Field required"),
        ({"requests": []}, OLD, "at least 1 item"),
        ({"requests": [{"custom_id": "a"}]}, OLD, "requests.0.params: Field required"),
        ({"requests": [{"params": {}}]}, OLD, "requests.0.custom_id: Field required"),
        ({"requests": [_item("a.b")]}, OLD, "requests.0.custom_id: String should match pattern"),
        ({"requests": [_item("")]}, OLD, "String should match pattern"),
        ({"requests": [_item("x" * 65)]}, OLD, "String should match pattern"),
        ({"requests": [_item(7)]}, OLD, "valid string"),
        (
            {"requests": [_item("a"), _item("b"), _item("a")]},
            OLD,
            "requests.2.custom_id: duplicate",
        ),
        ({"requests": [_item(stream=True)]}, OLD, "requests.0.params.stream"),
        ({"requests": [_item(speed="fast")]}, OLD, "requests.0.params.speed"),
        ({"requests": [_item(max_tokens=0)]}, OLD, "requests.0.params.max_tokens"),
        ({"requests": [_item(betas=["x"])]}, OLD, "Extra inputs are not permitted"),
        (
            {"requests": [_item(temperature=1.0)]},
            NEW,
            "requests.0.params.temperature: Extra inputs",
        ),
        ({"requests": [_item(top_p=0.9)]}, NEW, "top_p"),
        ({"requests": [_item(top_k=5)]}, NEW, "top_k"),
    ],
)
def test_sync_envelope_errors(body: object, version: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as raised:
        check_create_body(body, version)
    assert raised.value.status == 400


def test_too_many_requests() -> None:
    with pytest.raises(InvalidRequest, match="at most 100000"):
        check_create_body({"requests": [_item(f"r{n}") for n in range(100_001)]}, OLD)


def test_sampling_allowed_under_old_version() -> None:
    assert check_create_body({"requests": [_item(temperature=0.2)]}, OLD)[0][0] == "a"


def test_valid_custom_id_charset() -> None:
    pairs = check_create_body({"requests": [_item("A-z_09" + "x" * 58)]}, NEW)
    assert len(pairs[0][0]) == 64


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"model": "claude-nope"}, "model: claude-nope"),
        ({"model": None}, "model: Field required"),
        ({"max_tokens": 64_001}, "64001 > 64000"),
        ({"max_tokens": -1}, "greater than or equal to 1"),
        ({"messages": None}, "messages: Field required"),
        ({"messages": []}, "at least one message"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "first message must use"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages.0.content.0"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "content.0.text: Field"),
        ({"messages": [{"role": "user", "content": [{"type": "image"}]}]}, "image.source"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/bmp",
                                    "data": "x",
                                },
                            }
                        ],
                    }
                ]
            },
            "media_type",
        ),
        ({"tool_choice": {"type": "tool", "name": "f"}}, "tool_choice.name"),
        ({"system": 5}, "system"),
    ],
)
def test_async_params_problems(extra: dict[str, Any], message: str) -> None:
    problem = params_problem(params(**extra))
    assert problem is not None
    assert message in problem


def test_valid_params_have_no_problem() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
    }
    content = [{"type": "text", "text": "look"}, image]
    assert params_problem(params(messages=[{"role": "user", "content": content}])) is None
    assert params_problem(params(model="claude-sonnet-4-20250514", max_tokens=64_000)) is None


def test_output_300k_beta_lifts_the_limit() -> None:
    big = params(model="claude-opus-4-6", max_tokens=300_000)
    assert params_problem(big) is not None
    assert params_problem(big, frozenset({"output-300k-2026-03-24"})) is None
