"""Fixtures: a simulator on 127.0.0.1 (real HTTP) and the official SDK pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import anthropic
import pytest
from anthropic.types.messages.batch_create_params import Request

from orchestrator.simulator import ManualClock, SimulatorConfig, SimulatorServer

MODEL = "claude-haiku-4-5"


def request(custom_id: str, text: str = "Say hello", **params: Any) -> Request:
    """One batch request in the SDK's shape (its TypedDict, so mypy checks the keys)."""
    body = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    return cast(Request, {"custom_id": custom_id, "params": body | params})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_sim(clock: ManualClock) -> Iterator[Callable[..., SimulatorServer]]:
    """Start simulators with given knobs (ManualClock); all are stopped at teardown."""
    servers: list[SimulatorServer] = []

    def make(**knobs: Any) -> SimulatorServer:
        server = SimulatorServer(SimulatorConfig(**knobs), clock=clock)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def sim(make_sim: Callable[..., SimulatorServer]) -> SimulatorServer:
    return make_sim(processing_seconds=60.0, processing_jitter=0.0)


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as sdk:
        yield sdk
