"""The HTTP surface in-process (Starlette TestClient): gate, headers, faults, ledger."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from orchestrator.simulator import ManualClock, SimulatorConfig, SimulatorServer, create_app

from .conftest import params

HEADERS = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
BATCHES = "/v1/messages/batches"


def _body(count: int = 2) -> dict[str, Any]:
    return {"requests": [{"custom_id": f"r{n}", "params": params(f"Q{n}")} for n in range(count)]}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def client(clock: ManualClock) -> Iterator[TestClient]:
    app = create_app(SimulatorConfig(processing_seconds=10, processing_jitter=0), clock)
    with TestClient(app, base_url="http://sim.test") as test_client:
        yield test_client


def _state(client: TestClient) -> Any:
    return client.app.state.simulator  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("headers", "status", "error_type"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        (
            {"authorization": "Basic abc", "anthropic-version": "2023-06-01"},
            401,
            "authentication_error",
        ),
        ({"x-api-key": "k"}, 400, "invalid_request_error"),
        ({"x-api-key": "k", "anthropic-version": "2024-01-01"}, 400, "invalid_request_error"),
    ],
)
def test_gate_errors_carry_request_id(
    client: TestClient, headers: dict[str, str], status: int, error_type: str
) -> None:
    response = client.get(BATCHES, headers=headers)
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"]
    assert re.fullmatch(r"req_011[1-9A-HJ-NP-Za-km-z]{21}", body["request_id"])


def test_api_keys_restrict(clock: ManualClock) -> None:
    app = create_app(SimulatorConfig(api_keys=frozenset({"good"})), clock)
    with TestClient(app) as client:
        assert client.get(BATCHES, headers=HEADERS).status_code == 401
        assert client.get(BATCHES, headers=HEADERS | {"x-api-key": "good"}).status_code == 200


def test_unknown_path_is_404_envelope(client: TestClient) -> None:
    response = client.get("/v1/nothing", headers=HEADERS)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert response.headers["request-id"].startswith("req_")


def test_beta_query_flag_is_a_no_op(client: TestClient) -> None:
    response = client.post(
        f"{BATCHES}?beta=true",
        json=_body(),
        headers=HEADERS | {"anthropic-beta": "message-batches-2024-09-24"},
    )
    assert response.status_code == 200
    assert response.headers["anthropic-workspace-id"].startswith("wrkspc_")


def test_results_lifecycle_over_http(client: TestClient, clock: ManualClock) -> None:
    batch = client.post(BATCHES, json=_body(5), headers=HEADERS).json()
    early = client.get(f"{BATCHES}/{batch['id']}/results", headers=HEADERS)
    assert early.status_code == 400
    clock.advance(10)
    ended = client.get(f"{BATCHES}/{batch['id']}", headers=HEADERS).json()
    assert ended["results_url"] == f"http://sim.test{BATCHES}/{batch['id']}/results"
    results = client.get(ended["results_url"], headers=HEADERS)
    assert results.headers["content-type"] == "application/x-jsonl"
    assert len(results.content.splitlines()) == 5
    clock.advance(29 * 86_400)
    archived = client.get(ended["results_url"], headers=HEADERS)
    assert archived.status_code == 404
    assert client.get(f"{BATCHES}/{batch['id']}", headers=HEADERS).json()["archived_at"]


def test_413_from_content_length_without_reading(clock: ManualClock) -> None:
    app = create_app(SimulatorConfig(max_body_bytes=100), clock)
    with TestClient(app) as client:
        response = client.post(BATCHES, content=orjson.dumps(_body(3)), headers=HEADERS)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


def test_injected_faults_and_ledger(client: TestClient) -> None:
    _state(client).faults.inject(429, 500, 529)
    statuses = [client.get(BATCHES, headers=HEADERS) for _ in range(4)]
    assert [r.status_code for r in statuses] == [429, 500, 529, 200]
    assert statuses[0].headers["retry-after"] == "1"
    assert statuses[0].headers["anthropic-ratelimit-requests-limit"]
    assert [r.json()["error"]["type"] for r in statuses[:3]] == [
        "rate_limit_error",
        "api_error",
        "overloaded_error",
    ]
    assert client.get("/_simulator/ledger").status_code == 401  # it shows what was sent
    ledger = client.get("/_simulator/ledger", headers=HEADERS).json()
    assert ledger["calls"] == {"list": 4}
    assert ledger["responses"] == {"list 429": 1, "list 500": 1, "list 529": 1, "list 200": 1}


def test_fault_shares_are_seeded(clock: ManualClock) -> None:
    def run() -> list[int]:
        app = create_app(SimulatorConfig(fault_500_share=0.3, seed=7), clock)
        with TestClient(app) as client:
            return [client.get(BATCHES, headers=HEADERS).status_code for _ in range(40)]

    first = run()
    assert first == run()
    assert 4 <= first.count(500) <= 20


def test_rpm_limit(clock: ManualClock) -> None:
    app = create_app(SimulatorConfig(rpm_limit=2), clock)
    with TestClient(app) as client:
        codes = [client.get(BATCHES, headers=HEADERS) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        assert codes[2].headers["retry-after"] == "60"
        assert codes[2].headers["anthropic-ratelimit-requests-remaining"] == "0"
        clock.advance(60)
        assert client.get(BATCHES, headers=HEADERS).status_code == 200


def test_clock_advance_endpoint(client: TestClient, clock: ManualClock) -> None:
    before = clock.now()
    advance = "/_simulator/clock/advance"
    assert client.post(advance, json={"seconds": 30}).status_code == 401
    assert client.post(advance, json={"seconds": 30}, headers=HEADERS).status_code == 200
    assert clock.now() == before + 30


def test_messages_endpoint_rules(client: TestClient) -> None:
    new = HEADERS | {"anthropic-version": "2026-10-21"}
    assert client.post("/v1/messages", json=params(stream=True), headers=HEADERS).status_code == 400
    assert client.post("/v1/messages", json=params(temperature=1), headers=new).status_code == 400
    assert (
        client.post("/v1/messages/count_tokens", json=params(top_p=1), headers=new).status_code
        == 400
    )
    ok = client.post("/v1/messages", json=params("Hello"), headers=new).json()
    assert ok["usage"]["service_tier"] == "standard"
    assert ok["id"].startswith("msg_01")


def test_list_query_validation(client: TestClient) -> None:
    assert client.get(f"{BATCHES}?limit=abc", headers=HEADERS).status_code == 400
    assert client.get(f"{BATCHES}?limit=1001", headers=HEADERS).status_code == 400
    assert client.get(f"{BATCHES}?before_id=a&after_id=b", headers=HEADERS).status_code == 400
    page = client.get(BATCHES, headers=HEADERS).json()
    assert page == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_other_calls_are_answered_while_a_large_create_is_checked() -> None:
    """Checking a large body takes the simulator seconds; like the real API it goes on
    answering other calls meanwhile (a worker downloads results while it creates)."""
    body = orjson.dumps(_body(30_000))
    finished: dict[str, float] = {}
    config = SimulatorConfig(processing_seconds=10, processing_jitter=0)
    with SimulatorServer(config) as server:
        url = server.base_url + BATCHES

        def create() -> None:
            headers = HEADERS | {"content-type": "application/json"}
            answer = httpx.post(url, content=body, headers=headers, timeout=60)
            assert answer.status_code == 200
            finished["create"] = time.monotonic()

        sender = threading.Thread(target=create)
        sender.start()
        try:
            while server.state.ledger.to_json()["calls"].get("create", 0) == 0:
                time.sleep(0.005)
            time.sleep(0.2)  # the body is in (4 MB over loopback): it is being checked
            assert httpx.get(url, headers=HEADERS, timeout=60).status_code == 200
            finished["list"] = time.monotonic()
        finally:
            sender.join()
    assert finished["list"] < finished["create"]
