"""Outcome mix: deterministic, proportional, fresh per batch for server-side errors."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from orchestrator.simulator import ManualClock, SimulatorConfig
from orchestrator.simulator.ledger import Ledger
from orchestrator.simulator.model import sketch
from orchestrator.simulator.outcomes import INVALID, SUCCEEDED, result_type, scripted_outcome
from orchestrator.simulator.results import result_chunks, shuffled_order
from orchestrator.simulator.validation import check_create_body

from .conftest import make_state, pairs, params

MIX = {"invalid_request_error": 0.1, "api_error": 0.1, "overloaded_error": 0.05}


def _outcomes(config: SimulatorConfig, batch_id: str, count: int = 4000) -> list[int]:
    return [
        scripted_outcome(config, batch_id, f"id{n}", sketch(params(f"q{n}"), config.seed, None, {}))
        for n in range(count)
    ]


def test_proportions_follow_the_mix() -> None:
    config = SimulatorConfig(errored_share=MIX, expired_share=0.2)
    kinds = Counter(result_type(code) for code in _outcomes(config, "msgbatch_a"))
    assert kinds["errored"] / 4000 == pytest.approx(0.25, abs=0.03)
    assert kinds["expired"] / 4000 == pytest.approx(0.2, abs=0.03)
    assert kinds["succeeded"] / 4000 == pytest.approx(0.55, abs=0.03)


def test_same_inputs_same_outcomes() -> None:
    config = SimulatorConfig(errored_share=MIX, expired_share=0.2)
    assert _outcomes(config, "msgbatch_a", 500) == _outcomes(config, "msgbatch_a", 500)


def test_resubmission_redraws_server_errors_but_not_invalid() -> None:
    config = SimulatorConfig(errored_share=MIX, expired_share=0.2)
    first, second = _outcomes(config, "msgbatch_a", 1000), _outcomes(config, "msgbatch_b", 1000)
    assert [c == INVALID for c in first] == [c == INVALID for c in second]
    assert first != second
    assert SimulatorConfig(seed=1, errored_share=MIX) != config


def test_invalid_params_are_always_errored() -> None:
    config = SimulatorConfig()
    prompt = sketch(params(model="nope"), 0, "model: nope", {})
    assert scripted_outcome(config, "b", "x", prompt) == INVALID
    assert scripted_outcome(config, "b", "y", sketch(params(), 0, None, {})) == SUCCEEDED


def test_results_stream_is_shuffled_complete_and_chunked(clock: ManualClock) -> None:
    state = make_state(clock, errored_share={"api_error": 0.2}, results_chunk_lines=7)
    batch = state.create_batch(pairs(50), frozenset())
    clock.advance(100)
    state.get(batch.id)
    ledger = Ledger()
    chunks = list(result_chunks(batch, 0, ledger, 7))
    lines = b"".join(chunks).split(b"\n")
    assert lines[-1] == b""
    assert b"\r" not in b"".join(chunks)
    records = [orjson.loads(line) for line in lines[:-1]]
    custom_ids = [r["custom_id"] for r in records]
    assert sorted(custom_ids) == sorted(f"r{n}" for n in range(50))
    assert custom_ids != [f"r{n}" for n in range(50)]
    assert len(chunks) == 8
    assert shuffled_order(0, batch.id, 50) == shuffled_order(0, batch.id, 50)
    assert len(ledger.served) == 50
    errored = next(r["result"] for r in records if r["result"]["type"] == "errored")
    assert errored["error"] == {
        "type": "error",
        "error": {"type": "api_error", "message": "Internal server error"},
        "request_id": None,
    }


def test_redownload_gives_identical_bytes(clock: ManualClock) -> None:
    state = make_state(clock)
    batch = state.create_batch(pairs(20), frozenset())
    clock.advance(100)
    state.get(batch.id)
    assert b"".join(result_chunks(batch, 0, Ledger(), 5)) == b"".join(
        result_chunks(batch, 0, Ledger(), 5)
    )


@pytest.mark.slow
def test_a_100k_batch_is_accepted_and_streamed_lazily(clock: ManualClock) -> None:
    state = make_state(clock, processing_seconds=0.0)
    body = {
        "requests": [{"custom_id": f"r{n}", "params": params(f"Q {n}")} for n in range(100_000)]
    }
    batch = state.create_batch(check_create_body(body, "2026-10-21"), frozenset())
    state.get(batch.id)
    chunks = result_chunks(batch, 0, Ledger(), 1024)
    first = next(chunks)
    assert first.count(b"\n") == 1024  # generated a chunk at a time, not as one string
    assert sum(chunk.count(b"\n") for chunk in chunks) == 100_000 - 1024
