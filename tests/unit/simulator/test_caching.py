"""Prompt caching in usage: read vs creation tokens, the 5m/1h split, the bounded set."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from orchestrator.simulator import ManualClock, SimulatorConfig, SimulatorState, create_app
from orchestrator.simulator.caching import PromptCache, last_breakpoint
from orchestrator.simulator.model import message, sketch
from orchestrator.simulator.results import result_line
from orchestrator.simulator.tokens import count_input_tokens

from .conftest import make_state, params

SYSTEM_TEXT = "You label customer reviews. " * 40  # 1,120 characters = 280 tokens


def _cached_system(ttl: str | None = None) -> list[dict[str, Any]]:
    control = {"type": "ephemeral"} | ({"ttl": ttl} if ttl else {})
    return [{"type": "text", "text": SYSTEM_TEXT, "cache_control": control}]


def _usages(
    state: SimulatorState, clock: ManualClock, pairs: list[tuple[str, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """Create a batch, let it end, return each custom_id's usage."""
    batch = state.create_batch(pairs, frozenset())
    clock.advance(100)
    state.get(batch.id)
    lines = [orjson.loads(result_line(batch, n, batch.seed)[0]) for n in range(len(pairs))]
    return {
        line["custom_id"]: line["result"]["message"]["usage"]
        for line in lines
        if line["result"]["type"] == "succeeded"
    }


def _usage(body: dict[str, Any]) -> dict[str, Any]:
    usage: dict[str, Any] = message(sketch(body, 0, None, {}), 0, "msg_01x", "batch")["usage"]
    return usage


def _total(usage: dict[str, Any]) -> int:
    return int(
        usage["input_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["cache_read_input_tokens"]
    )


def test_first_request_writes_the_rest_read(clock: ManualClock) -> None:
    state = make_state(clock)
    bodies = {
        f"r{n}": params(f"Review {n}: great value", system=_cached_system()) for n in range(4)
    }
    usages = _usages(state, clock, list(bodies.items()))
    assert usages["r0"]["cache_creation_input_tokens"] == 280
    assert usages["r0"]["cache_read_input_tokens"] == 0
    assert usages["r0"]["cache_creation"] == {
        "ephemeral_5m_input_tokens": 280,
        "ephemeral_1h_input_tokens": 0,
    }
    for custom_id in ("r1", "r2", "r3"):
        assert usages[custom_id]["cache_read_input_tokens"] == 280
        assert usages[custom_id]["cache_creation_input_tokens"] == 0
        assert usages[custom_id]["cache_creation"]["ephemeral_5m_input_tokens"] == 0
    for custom_id, usage in usages.items():
        assert _total(usage) == count_input_tokens(bodies[custom_id])
        assert usage["input_tokens"] == count_input_tokens(bodies[custom_id]) - 280
    # A later batch (and /v1/messages) of this simulator reads what the first one wrote.
    again = _usages(state, clock, [("s0", params("Another", system=_cached_system()))])
    assert again["s0"]["cache_read_input_tokens"] == 280
    assert state.message_prompt(params("Third", system=_cached_system())).cache_hit


def test_request_order_decides_who_writes(clock: ManualClock) -> None:
    state = make_state(clock)
    pairs = [(name, params(name, system=_cached_system())) for name in ("zz", "aa", "mm")]
    usages = _usages(state, clock, pairs)
    assert [usages[c]["cache_creation_input_tokens"] for c, _ in pairs] == [280, 0, 0]


def test_one_hour_ttl_goes_to_its_bucket() -> None:
    usage = _usage(params("Hi", system=_cached_system("1h")))
    assert usage["cache_creation_input_tokens"] == 280
    assert usage["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 280,
    }


def test_no_breakpoint_no_cache_tokens() -> None:
    body = params("Hi", system=SYSTEM_TEXT)
    usage = _usage(body)
    assert usage["input_tokens"] == count_input_tokens(body)
    assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0
    assert last_breakpoint(body) is None


def test_top_level_cache_control_caches_the_whole_prompt() -> None:
    body = params("x" * 41, system="y" * 40, cache_control={"type": "ephemeral", "ttl": "1h"})
    usage = _usage(body)
    assert usage["cache_creation_input_tokens"] == 21  # ceil(81 / 4)
    assert usage["cache_creation"]["ephemeral_1h_input_tokens"] == 21
    assert usage["input_tokens"] == 0


def test_prefix_runs_tools_then_system_then_messages() -> None:
    tools: list[dict[str, Any]] = [
        {"name": "a", "input_schema": {"type": "object"}},
        {"name": "b", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
        {"name": "c", "input_schema": {"type": "object"}},
    ]
    only_tools = params("Hi", tools=tools, system=SYSTEM_TEXT)
    mark = last_breakpoint(only_tools)
    assert mark is not None
    assert mark.tokens == math.ceil(len(orjson.dumps(tools[:2])) / 4)
    turns = [
        {"role": "user", "content": [{"type": "text", "text": "a" * 100}]},
        {"role": "assistant", "content": "b" * 50},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "c" * 30, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "d" * 1000},
            ],
        },
    ]
    body = params("unused", tools=tools, system=SYSTEM_TEXT) | {"messages": turns}
    mark = last_breakpoint(body)
    assert mark is not None
    prefix = len(orjson.dumps(tools)) + len(SYSTEM_TEXT) + 100 + 50 + 30
    assert mark.tokens == math.ceil(prefix / 4)
    assert _usage(body)["input_tokens"] == count_input_tokens(body) - mark.tokens


def _digest(body: dict[str, Any]) -> int:
    mark = last_breakpoint(body)
    assert mark is not None
    return mark.digest


def test_prefix_identity_covers_model_and_content() -> None:
    base = _digest(params("Hi", system=_cached_system()))
    assert base == _digest(params("Other question", system=_cached_system()))
    other_model = _digest(params("Hi", system=_cached_system(), model="claude-sonnet-4-20250514"))
    other_text = _digest(params("Hi", system=[{**_cached_system()[0], "text": SYSTEM_TEXT + "!"}]))
    assert len({base, other_model, other_text}) == 3


def test_errored_requests_do_not_fill_the_cache(clock: ManualClock) -> None:
    state = make_state(clock)
    broken = params("x", system=_cached_system(), max_tokens=-1)
    usages = _usages(
        state, clock, [("bad", broken), ("good", params("y", system=_cached_system()))]
    )
    assert list(usages) == ["good"]
    assert usages["good"]["cache_creation_input_tokens"] == 280


def test_prompt_cache_is_bounded_and_least_recently_used() -> None:
    cache = PromptCache(limit=2)
    assert [cache.visit(d) for d in (1, 2, 1, 3)] == [False, False, True, False]
    assert len(cache) == 2
    assert cache.visit(1)  # kept: used more recently than 2
    assert not cache.visit(2)  # forgotten when 3 came in


def test_messages_endpoint_reports_cache_reads(clock: ManualClock) -> None:
    headers = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
    with TestClient(create_app(SimulatorConfig(), clock)) as client:
        body = params("Hi", system=_cached_system())
        first = client.post("/v1/messages", json=body, headers=headers).json()["usage"]
        second = client.post("/v1/messages", json=body, headers=headers).json()["usage"]
    assert (first["cache_creation_input_tokens"], first["cache_read_input_tokens"]) == (280, 0)
    assert (second["cache_creation_input_tokens"], second["cache_read_input_tokens"]) == (0, 280)


@pytest.mark.parametrize("control", [None, "ephemeral", ["x"]])
def test_non_object_cache_control_is_no_breakpoint(control: object) -> None:
    body = params("Hi", system=[{"type": "text", "text": SYSTEM_TEXT, "cache_control": control}])
    assert last_breakpoint(body) is None
