"""Retrieve, list and pagination, cancel, delete, count_tokens; headers; lifecycle."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson
import pytest

from orchestrator import errors
from orchestrator.api import BatchesClient, ClientState, DeletedMessageBatch
from tests.unit.api.fakes import (
    API_KEY,
    BASE_URL,
    BATCH_ID,
    ClientFactory,
    Script,
    batch_json,
    json_response,
    page_json,
)


def query(request: httpx.Request) -> dict[str, str]:
    return dict(request.url.params)


# -- list and pagination -----------------------------------------------------------------


def test_iter_batches_follows_last_id_until_has_more_is_false(make_client: ClientFactory) -> None:
    script = Script(
        json_response(200, page_json(["b9", "b8"], has_more=True)),
        json_response(200, page_json(["b7", "b6"], has_more=True)),
        json_response(200, page_json(["b5"], has_more=False)),
        json_response(500, {"must": "not be reached"}),
    )

    ids = [batch.id for batch in make_client(script).iter_batches(limit=2)]

    assert ids == ["b9", "b8", "b7", "b6", "b5"]
    assert [query(r) for r in script.requests] == [
        {"limit": "2"},
        {"limit": "2", "after_id": "b8"},
        {"limit": "2", "after_id": "b6"},
    ]


def test_iter_batches_stops_on_an_empty_page(make_client: ClientFactory) -> None:
    script = Script(
        json_response(200, page_json(["b2"], has_more=True)),
        json_response(200, page_json([], has_more=True)),
        json_response(500, {"must": "not be reached"}),
    )

    ids = [batch.id for batch in make_client(script).iter_batches()]

    assert ids == ["b2"]
    assert len(script.requests) == 2


def test_iter_batches_starts_after_a_given_id(make_client: ClientFactory) -> None:
    script = Script(json_response(200, page_json(["b3"], has_more=False)))

    list(make_client(script).iter_batches(after_id="b4"))

    assert query(script.requests[0]) == {"limit": "1000", "after_id": "b4"}


def test_iter_batches_is_lazy(make_client: ClientFactory) -> None:
    script = Script(
        json_response(200, page_json(["b2"], has_more=True)),
        json_response(200, page_json(["b1"], has_more=False)),
    )

    first = next(make_client(script).iter_batches())

    assert first.id == "b2"
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {"limit": "1000"}),
        ({"limit": 20}, {"limit": "20"}),
        ({"limit": 5, "after_id": "a"}, {"limit": "5", "after_id": "a"}),
        ({"limit": 5, "before_id": "b"}, {"limit": "5", "before_id": "b"}),
    ],
)
def test_list_page_passes_its_query(
    make_client: ClientFactory, kwargs: dict[str, object], expected: dict[str, str]
) -> None:
    script = Script(json_response(200, page_json(["b1"], has_more=False)))

    page = make_client(script).list_page(**kwargs)  # type: ignore[arg-type]

    assert page.last_id == "b1"
    assert script.requests[0].url.path == "/v1/messages/batches"
    assert query(script.requests[0]) == expected


# -- the other endpoints -----------------------------------------------------------------


def test_retrieve_gets_the_batch_by_id(make_client: ClientFactory) -> None:
    ended = batch_json(
        processing_status="ended",
        ended_at="2024-09-24T19:00:00Z",
        results_url=f"{BASE_URL}/v1/messages/batches/{BATCH_ID}/results",
    )
    script = Script(json_response(200, ended))

    batch = make_client(script).retrieve(BATCH_ID)

    assert script.requests[0].method == "GET"
    assert script.requests[0].url == f"{BASE_URL}/v1/messages/batches/{BATCH_ID}"
    assert batch.processing_status == "ended"
    assert batch.results_url == f"{BASE_URL}/v1/messages/batches/{BATCH_ID}/results"


def test_batch_ids_are_path_escaped(make_client: ClientFactory) -> None:
    script = Script(json_response(200, batch_json("odd/id?x")))

    make_client(script).retrieve("odd/id?x")

    assert script.requests[0].url.raw_path == b"/v1/messages/batches/odd%2Fid%3Fx"


def test_empty_batch_id_is_refused(make_client: ClientFactory) -> None:
    script = Script(json_response(200, page_json([], has_more=False)))

    with pytest.raises(ValueError, match="batch_id"):
        make_client(script).retrieve("")

    assert script.requests == []


def test_cancel_posts_without_a_body(make_client: ClientFactory) -> None:
    script = Script(json_response(200, batch_json(processing_status="canceling")))

    batch = make_client(script).cancel(BATCH_ID)

    request = script.requests[0]
    assert (request.method, request.url.path) == (
        "POST",
        f"/v1/messages/batches/{BATCH_ID}/cancel",
    )
    assert request.content == b""
    assert request.headers["content-length"] == "0"
    assert batch.processing_status == "canceling"


def test_delete_returns_the_deleted_marker(make_client: ClientFactory) -> None:
    script = Script(json_response(200, {"id": BATCH_ID, "type": "message_batch_deleted"}))

    deleted = make_client(script).delete(BATCH_ID)

    assert script.requests[0].method == "DELETE"
    assert deleted == DeletedMessageBatch(id=BATCH_ID, type="message_batch_deleted")


def test_count_tokens_sends_only_fields_the_endpoint_takes(make_client: ClientFactory) -> None:
    script = Script(json_response(200, {"input_tokens": 42}))
    params = {
        "model": "claude-opus-5",
        "max_tokens": 1024,
        "metadata": {"user_id": "u"},
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    }

    assert make_client(script).count_tokens(params) == 42

    request = script.requests[0]
    assert (request.method, request.url.path) == ("POST", "/v1/messages/count_tokens")
    assert orjson.loads(request.content) == {
        "model": "claude-opus-5",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    }


# -- headers -----------------------------------------------------------------------------

CALLS: list[tuple[str, Callable[[BatchesClient], object], httpx.Response]] = [
    (
        "create",
        lambda c: c.create([b'{"custom_id":"a","params":{}}']),
        json_response(200, batch_json()),
    ),
    ("retrieve", lambda c: c.retrieve(BATCH_ID), json_response(200, batch_json())),
    ("list_page", lambda c: c.list_page(), json_response(200, page_json([], has_more=False))),
    ("cancel", lambda c: c.cancel(BATCH_ID), json_response(200, batch_json())),
    ("delete", lambda c: c.delete(BATCH_ID), json_response(200, {"id": BATCH_ID})),
    (
        "count_tokens",
        lambda c: c.count_tokens({"model": "m"}),
        json_response(200, {"input_tokens": 1}),
    ),
]


@pytest.mark.parametrize(("name", "call", "answer"), CALLS, ids=[c[0] for c in CALLS])
def test_every_call_carries_auth_and_version_headers(
    make_client: ClientFactory,
    name: str,
    call: Callable[[BatchesClient], object],
    answer: httpx.Response,
) -> None:
    script = Script(answer)

    call(make_client(script, api_version="2023-06-01", user_agent="ua-test/1"))

    headers = script.requests[0].headers
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["x-api-key"] == API_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["user-agent"] == "ua-test/1"


def test_default_version_is_the_sdk_2_one(make_client: ClientFactory) -> None:
    script = Script(json_response(200, batch_json()))

    make_client(script).retrieve(BATCH_ID)

    assert script.requests[0].headers["anthropic-version"] == "2026-10-21"


def test_base_url_path_prefix_is_kept(make_client: ClientFactory) -> None:
    script = Script(json_response(200, batch_json()))

    make_client(script, base_url="http://127.0.0.1:8765/proxy").retrieve(BATCH_ID)

    assert script.requests[0].url == f"http://127.0.0.1:8765/proxy/v1/messages/batches/{BATCH_ID}"


def test_redirects_are_not_followed(make_client: ClientFactory) -> None:
    moved = httpx.Response(302, headers={"location": "https://elsewhere.test/steal"})
    script = Script(moved)

    with pytest.raises(errors.APIStatusError) as caught:
        make_client(script).retrieve(BATCH_ID)

    assert caught.value.status_code == 302
    assert [r.url.host for r in script.requests] == ["api.test"]


# -- lifecycle ---------------------------------------------------------------------------


def test_lifecycle_states(make_client: ClientFactory) -> None:
    client = make_client(Script(json_response(200, batch_json())))
    states = [client.state]

    with client:
        states.append(client.state)
        client.retrieve(BATCH_ID)
    states.append(client.state)

    assert states == [ClientState.UNOPENED, ClientState.OPEN, ClientState.CLOSED]


def test_first_call_opens_an_unentered_client(make_client: ClientFactory) -> None:
    client = make_client(Script(json_response(200, batch_json())))

    client.retrieve(BATCH_ID)

    assert client.state is ClientState.OPEN


def test_closed_client_refuses_calls_clearly(make_client: ClientFactory) -> None:
    script = Script(json_response(200, batch_json()))
    client = make_client(script)
    client.close()
    client.close()  # idempotent

    with pytest.raises(RuntimeError, match="closed; create a new one"):
        client.retrieve(BATCH_ID)
    with pytest.raises(RuntimeError, match="closed"):
        client.results_lines(f"{BASE_URL}/v1/messages/batches/{BATCH_ID}/results")
    with pytest.raises(RuntimeError, match="closed"):
        next(client.iter_batches())
    assert script.requests == []


def test_a_client_is_entered_once(make_client: ClientFactory) -> None:
    client = make_client(Script(json_response(200, batch_json())))

    with client, pytest.raises(RuntimeError, match="entered once"):
        client.__enter__()
    with pytest.raises(RuntimeError, match="closed"):
        client.__enter__()


@pytest.mark.parametrize("base_url", ["ftp://api.test", "api.test", "", "http://"])
def test_bad_base_url_is_a_config_error(base_url: str) -> None:
    with pytest.raises(errors.ConfigError, match="base URL"):
        BatchesClient(api_key=API_KEY, base_url=base_url)


def test_empty_key_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="ANTHROPIC_API_KEY"):
        BatchesClient(api_key="")


# -- a job's own version and betas -------------------------------------------------------

BETAS = ("output-128k-2025-02-19", "files-api-2025-04-14")


def test_a_create_carries_the_jobs_version_and_betas(make_client: ClientFactory) -> None:
    script = Script(json_response(200, batch_json()))
    client = make_client(script)

    client.create([b'{"custom_id":"a","params":{}}'], betas=BETAS, api_version="2023-06-01")

    sent = script.requests[0].headers
    assert sent["anthropic-version"] == "2023-06-01"
    assert sent["anthropic-beta"] == ",".join(BETAS)


def test_without_a_version_the_clients_own_is_sent(make_client: ClientFactory) -> None:
    script = Script(json_response(200, batch_json()))

    make_client(script).create([b'{"custom_id":"a","params":{}}'])

    assert script.requests[0].headers["anthropic-version"] == "2026-10-21"


def test_the_calls_that_read_a_batch_carry_its_betas(make_client: ClientFactory) -> None:
    script = Script(
        json_response(200, batch_json()),
        json_response(200, batch_json(processing_status="canceling")),
        json_response(200, {"input_tokens": 12}),
    )
    client = make_client(script)

    client.retrieve(BATCH_ID, betas=BETAS)
    client.cancel(BATCH_ID, betas=BETAS)
    client.count_tokens({"model": "m", "messages": []}, betas=BETAS, api_version="2023-06-01")

    assert [r.headers.get("anthropic-beta") for r in script.requests] == [",".join(BETAS)] * 3
    assert script.requests[2].headers["anthropic-version"] == "2023-06-01"
