"""The API key never shows up in an error message or repr (design guarantee 6)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson
import pytest

from orchestrator.api import BatchesClient
from tests.unit.api.fakes import (
    API_KEY,
    BASE_URL,
    BATCH_ID,
    ClientFactory,
    Script,
    TrackingStream,
    error_response,
    json_response,
)

RESULTS_URL = f"{BASE_URL}/v1/messages/batches/{BATCH_ID}/results"
ECHO = f"invalid x-api-key: {API_KEY}"


def read_results(client: BatchesClient, url: str = RESULTS_URL) -> None:
    with client.results_lines(url) as lines:
        list(lines)


def cut_stream(request: httpx.Request) -> httpx.Response:
    stream = TrackingStream([b'{"a":1}\n'], fail_with=httpx.ReadError(ECHO))
    return httpx.Response(200, stream=stream)


PATHS: list[
    tuple[
        str,
        httpx.Response | Exception | Callable[..., httpx.Response],
        Callable[[BatchesClient], object],
    ]
] = [
    (
        "401 echoing the key",
        error_response(401, "authentication_error", ECHO),
        lambda c: c.retrieve(BATCH_ID),
    ),
    (
        "502 html echoing the key",
        httpx.Response(502, content=ECHO.encode()),
        lambda c: c.retrieve(BATCH_ID),
    ),
    ("connect error", httpx.ConnectError(ECHO), lambda c: c.retrieve(BATCH_ID)),
    ("read timeout", httpx.ReadTimeout(ECHO), lambda c: c.list_page()),
    ("ambiguous create, transport", httpx.ReadTimeout(ECHO), lambda c: c.create([b"{}"])),
    ("ambiguous create, 500", error_response(500, "api_error", ECHO), lambda c: c.create([b"{}"])),
    ("create 400", error_response(400, "invalid_request_error", ECHO), lambda c: c.create([b"{}"])),
    ("bad 2xx body", json_response(200, {"key": API_KEY}), lambda c: c.retrieve(BATCH_ID)),
    (
        "foreign results url",
        error_response(500, "api_error"),
        lambda c: read_results(c, f"https://x.test/{API_KEY}"),
    ),
    ("results cut mid-stream", cut_stream, read_results),
    ("results 403", error_response(403, "permission_error", ECHO), read_results),
]


@pytest.mark.parametrize(("name", "answer", "call"), PATHS, ids=[p[0] for p in PATHS])
def test_key_is_in_no_error_message(
    make_client: ClientFactory,
    name: str,
    answer: httpx.Response | Exception | Callable[..., httpx.Response],
    call: Callable[[BatchesClient], object],
) -> None:
    client = make_client(Script(answer), max_retries=1)

    with pytest.raises(Exception) as caught:  # noqa: PT011 - every error path
        call(client)

    for error in (caught.value, caught.value.__cause__):
        if error is not None and not isinstance(error, httpx.HTTPError):
            assert API_KEY not in str(error)
            assert API_KEY not in repr(error)


def test_key_is_not_in_the_client_repr(make_client: ClientFactory) -> None:
    client = make_client(Script(json_response(200, {})))

    assert API_KEY not in repr(client)
    assert "api.test" in repr(client)


def test_echoed_key_is_replaced_not_dropped(make_client: ClientFactory) -> None:
    client = make_client(Script(error_response(401, "authentication_error", ECHO)))

    with pytest.raises(Exception, match=r"invalid x-api-key: \[redacted\]"):
        client.retrieve(BATCH_ID)


def test_key_is_not_in_a_request_body_we_build(make_client: ClientFactory) -> None:
    script = Script(json_response(200, {"input_tokens": 3}))

    make_client(script).count_tokens({"model": "m", "messages": []})

    assert API_KEY.encode() not in script.requests[0].content
    assert orjson.loads(script.requests[0].content) == {"model": "m", "messages": []}
