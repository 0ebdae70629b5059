"""Auth, limits, retries and headers as the SDK sees them over real HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import cast

import anthropic
import httpx
import httpx2
import pytest

from orchestrator.simulator import SimulatorConfig, SimulatorServer

from .conftest import MODEL, request

VERSION = {"anthropic-version": "2023-06-01"}


def test_missing_key_is_401(sim: SimulatorServer) -> None:
    response = httpx.get(f"{sim.base_url}/v1/messages/batches", headers=VERSION)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.json()["request_id"] == response.headers["request-id"]


def test_sdk_without_usable_key_gets_authentication_error(sim: SimulatorServer) -> None:
    # The SDK's way to drop a default header; its annotation only admits strings.
    no_auth = cast(dict[str, str], {"Authorization": anthropic.Omit()})
    with (
        anthropic.Anthropic(
            api_key=None, base_url=sim.base_url, max_retries=0, default_headers=no_auth
        ) as client,
        pytest.raises(anthropic.AuthenticationError) as raised,
    ):
        client.messages.batches.list()
    assert raised.value.request_id is not None


@pytest.mark.parametrize("header", [{"x-api-key": "sk-a"}, {"Authorization": "Bearer sk-a"}])
def test_both_auth_headers_work(sim: SimulatorServer, header: dict[str, str]) -> None:
    response = httpx.get(f"{sim.base_url}/v1/messages/batches", headers=header | VERSION)
    assert response.status_code == 200
    assert re.fullmatch(r"req_\w{24}", response.headers["request-id"])
    assert response.headers["anthropic-organization-id"]


def test_sdk_2x_sends_bearer_and_new_version(
    client: anthropic.Anthropic, sim: SimulatorServer
) -> None:
    raw = client.messages.batches.with_raw_response.list()
    assert raw.headers["request-id"].startswith("req_")
    assert raw.http_request.headers["anthropic-version"] == "2026-10-21"
    assert raw.http_request.headers["authorization"] == "Bearer sk-test"


def test_oversized_body_is_413(make_sim: Callable[..., SimulatorServer]) -> None:
    assert SimulatorConfig().max_body_bytes == 256_000_000
    sim = make_sim(max_body_bytes=10_000)
    big = [request(f"b{n}", "x" * 500) for n in range(40)]
    with anthropic.Anthropic(api_key="k", base_url=sim.base_url, max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError) as raised:
            client.messages.batches.create(requests=big)
    assert raised.value.status_code == 413
    assert raised.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
    assert sim.state.ledger.batches == []


def test_429_retry_after_is_honoured(sim: SimulatorServer) -> None:
    sim.state.faults.inject(429)
    with anthropic.Anthropic(api_key="k", base_url=sim.base_url, max_retries=2) as client:
        started = time.monotonic()
        batch = client.messages.batches.create(requests=[request("once")])
        elapsed = time.monotonic() - started
    assert elapsed >= 0.9
    assert sim.state.ledger.calls["create"] == 2
    assert sim.state.ledger.responses["create 429"] == 1
    assert [b.id for b in sim.state.ledger.batches] == [batch.id]


def test_results_url_follows_the_request_host(sim: SimulatorServer) -> None:
    host_url = sim.base_url.replace("127.0.0.1", "localhost")
    with anthropic.Anthropic(api_key="k", base_url=host_url, max_retries=0) as client:
        batch = client.messages.batches.create(requests=[request("h")])
        sim.clock.advance(120)  # type: ignore[attr-defined]
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.results_url == f"{host_url}/v1/messages/batches/{batch.id}/results"
        assert [r.custom_id for r in client.messages.batches.results(batch.id)] == ["h"]


def test_lost_create_response_still_creates_the_batch(
    make_sim: Callable[..., SimulatorServer],
) -> None:
    sim = make_sim(lost_create_share=1.0)
    with anthropic.Anthropic(api_key="k", base_url=sim.base_url, max_retries=0) as client:
        with pytest.raises(anthropic.APIConnectionError):
            client.messages.batches.create(requests=[request("lost")])
        sim.state.configure(lost_create_share=0.0)
        listed = list(client.messages.batches.list())
    assert [b.id for b in listed] == [b.id for b in sim.state.ledger.batches]
    assert sim.state.ledger.to_json()["batches"][0]["response_lost"] is True


def test_cut_results_stream_breaks_the_download(make_sim: Callable[..., SimulatorServer]) -> None:
    sim = make_sim(processing_seconds=0.0, cut_results_share=1.0)
    with anthropic.Anthropic(api_key="k", base_url=sim.base_url, max_retries=0) as client:
        batch = client.messages.batches.create(requests=[request(f"u{n}") for n in range(300)])
        seen: list[str] = []
        with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
            seen.extend(r.custom_id for r in client.messages.batches.results(batch.id))
        sim.state.configure(cut_results_share=0.0)
        full = [r.custom_id for r in client.messages.batches.results(batch.id)]
    assert len(seen) < 300
    assert sorted(full) == sorted(f"u{n}" for n in range(300))


def test_messages_and_count_tokens(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=3, messages=[{"role": "user", "content": "Explain databases"}]
    )
    assert message.stop_reason == "max_tokens"
    assert message.usage.service_tier == "standard"
    count = client.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "x" * 40}]
    )
    assert count.input_tokens == 10
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(
            model="claude-nope", max_tokens=3, messages=[{"role": "user", "content": "x"}]
        )
