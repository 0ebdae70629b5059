"""Helpers for simulator unit tests: in-memory state on a ManualClock."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.simulator import ManualClock, SimulatorConfig, SimulatorState


def params(text: str = "Say hello", **extra: Any) -> dict[str, Any]:
    base = {
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": text}],
    }
    return base | extra


def pairs(count: int, prefix: str = "r", **extra: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{prefix}{n}", params(f"Question {n}", **extra)) for n in range(count)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make_state(clock: ManualClock, **knobs: Any) -> SimulatorState:
    knobs = {"processing_seconds": 100.0, "processing_jitter": 0.0} | knobs
    return SimulatorState(SimulatorConfig(**knobs), clock)
