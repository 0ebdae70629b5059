"""Create: the streamed body, and the never-resend-an-ambiguous-create rule."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import httpx
import orjson
import pytest

from orchestrator import errors
from orchestrator.api import BatchesClient
from orchestrator.api.body import BODY_CHUNK_BYTES
from tests.unit.api.fakes import (
    API_KEY,
    BASE_URL,
    BATCH_ID,
    ClientFactory,
    Script,
    batch_json,
    error_response,
    json_response,
)


def serialized(count: int, text: str = "Hello, world") -> list[bytes]:
    return [
        orjson.dumps(
            {
                "custom_id": f"req-{n}",
                "params": {
                    "model": "claude-opus-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"{text} {n} café 🎉"}],
                },
            }
        )
        for n in range(count)
    ]


def expected_body(requests: list[bytes]) -> bytes:
    return b'{"requests":[' + b",".join(requests) + b"]}"


CREATED = json_response(200, batch_json())


# -- the body ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 3, 250])
def test_sequence_body_is_exact_with_content_length(make_client: ClientFactory, count: int) -> None:
    requests = serialized(count)
    script = Script(CREATED)

    batch = make_client(script).create(requests)

    request = script.requests[0]
    assert batch.id == BATCH_ID
    assert (request.method, request.url.path) == ("POST", "/v1/messages/batches")
    assert request.content == expected_body(requests)
    assert request.headers["content-length"] == str(len(expected_body(requests)))
    assert "transfer-encoding" not in request.headers
    assert request.headers["content-type"] == "application/json"
    assert len(orjson.loads(request.content)["requests"]) == count


class StreamRecorder(httpx.BaseTransport):
    """Reads the request body chunk by chunk as a server would, keeping each chunk."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.headers: httpx.Headers | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        self.chunks = list(request.stream)
        self.headers = request.headers
        return json_response(200, batch_json())


def test_body_is_streamed_in_bounded_pieces_not_joined() -> None:
    requests = serialized(40, text="x" * 8000)  # ~320 KB in all
    recorder = StreamRecorder()
    client = BatchesClient(api_key=API_KEY, base_url=BASE_URL, transport=recorder)

    with client:
        client.create(requests)

    body = b"".join(recorder.chunks)
    assert body == expected_body(requests)
    assert len(recorder.chunks) > 1
    assert max(map(len, recorder.chunks)) < BODY_CHUNK_BYTES + 9000
    assert orjson.loads(body)["requests"][39]["custom_id"] == "req-39"


def test_generator_body_is_sent_chunked(make_client: ClientFactory) -> None:
    requests = serialized(5)
    script = Script(CREATED)

    make_client(script).create(r for r in requests)

    request = script.requests[0]
    assert request.content == expected_body(requests)
    assert request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in request.headers


def test_betas_go_in_one_header(make_client: ClientFactory) -> None:
    script = Script(CREATED)

    make_client(script).create(serialized(1), betas=["output-300k-2026-03-24", "other-1"])

    assert script.requests[0].headers["anthropic-beta"] == "output-300k-2026-03-24,other-1"


def test_no_beta_header_without_betas(make_client: ClientFactory) -> None:
    script = Script(CREATED)

    make_client(script).create(serialized(1))

    assert "anthropic-beta" not in script.requests[0].headers


def test_bytes_instead_of_requests_is_refused(make_client: ClientFactory) -> None:
    script = Script(CREATED)

    with pytest.raises(TypeError, match="iterable of serialized requests"):
        make_client(script).create(b'{"custom_id":"a"}')  # type: ignore[arg-type]

    assert script.requests == []


def test_str_request_is_refused_before_sending(make_client: ClientFactory) -> None:
    script = Script(CREATED)

    with pytest.raises(TypeError, match="must be bytes"):
        make_client(script).create(['{"custom_id":"a"}'])  # type: ignore[list-item]

    assert script.requests == []


# -- never resend an ambiguous create ----------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.WriteTimeout("write timed out"),
        httpx.ReadError("connection reset by peer"),
        httpx.WriteError("broken pipe"),
        httpx.RemoteProtocolError("server disconnected without sending a response"),
        error_response(500, "api_error"),
        error_response(500, "api_error", headers={"x-should-retry": "true"}),
        httpx.Response(502, content=b"<html>bad gateway</html>"),
        error_response(503, "api_error"),
        error_response(504, "timeout_error"),
        json_response(200, {"not": "a batch"}),
    ],
)
def test_ambiguous_create_is_never_resent(
    make_client: ClientFactory, failure: httpx.Response | Exception
) -> None:
    script = Script(failure, CREATED)
    client = make_client(script)

    with pytest.raises(errors.AmbiguousCreateError, match="reconcile by listing") as caught:
        client.create(serialized(2))

    assert len(script.requests) == 1
    assert make_client.sleeps == []
    assert caught.value.__cause__ is not None
    if isinstance(failure, Exception):
        assert caught.value.__cause__ is failure


def test_ambiguous_5xx_keeps_the_status_error_as_cause(make_client: ClientFactory) -> None:
    script = Script(error_response(503, "api_error", request_id="req_503"))

    with pytest.raises(errors.AmbiguousCreateError) as caught:
        make_client(script).create(serialized(1))

    cause = caught.value.__cause__
    assert isinstance(cause, errors.InternalServerError)
    assert (cause.status_code, cause.request_id) == (503, "req_503")


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        error_response(408, "timeout_error"),
        error_response(409, "conflict_error"),
        error_response(429, "rate_limit_error"),
        error_response(529, "overloaded_error"),
    ],
)
def test_refused_create_is_resent_with_the_same_body(
    make_client: ClientFactory, failure: httpx.Response | Exception
) -> None:
    requests = serialized(3)
    script = Script(failure, CREATED)

    batch = make_client(script).create(requests)

    assert batch.id == BATCH_ID
    assert script.bodies == [expected_body(requests)] * 2
    assert len(make_client.sleeps) == 1


def test_create_honours_retry_after_on_429(make_client: ClientFactory) -> None:
    limited = error_response(429, "rate_limit_error", headers={"retry-after": "7"})
    script = Script(limited, limited, CREATED)

    make_client(script).create(serialized(1))

    assert make_client.sleeps == [7.0, 7.0]


def test_429_with_should_retry_false_is_not_resent(make_client: ClientFactory) -> None:
    script = Script(error_response(429, "rate_limit_error", headers={"x-should-retry": "false"}))

    with pytest.raises(errors.RateLimitError):
        make_client(script).create(serialized(1))

    assert len(script.requests) == 1


def test_create_gives_up_after_max_retries(make_client: ClientFactory) -> None:
    script = Script(error_response(529, "overloaded_error"))

    with pytest.raises(errors.OverloadedError):
        make_client(script, max_retries=2).create(serialized(1))

    assert len(script.requests) == 3


@pytest.mark.parametrize(
    ("failure", "error_class"),
    [
        (error_response(400, "invalid_request_error"), errors.BadRequestError),
        (error_response(413, "request_too_large"), errors.RequestTooLargeError),
        (error_response(402, "billing_error"), errors.BillingError),
        (error_response(401, "authentication_error"), errors.AuthenticationError),
    ],
)
def test_create_client_errors_are_raised_unretried(
    make_client: ClientFactory, failure: httpx.Response, error_class: type
) -> None:
    script = Script(failure, CREATED)

    with pytest.raises(error_class):
        make_client(script).create(serialized(1))

    assert len(script.requests) == 1


def test_callable_body_is_rebuilt_for_each_attempt(make_client: ClientFactory) -> None:
    requests = serialized(4)
    calls: list[int] = []

    def fresh() -> Iterator[bytes]:
        calls.append(1)
        return iter(requests)

    script = Script(error_response(529, "overloaded_error"), CREATED)

    make_client(script).create(fresh)

    assert len(calls) == 2
    assert script.bodies == [expected_body(requests)] * 2
    assert script.requests[0].headers["transfer-encoding"] == "chunked"


@pytest.mark.parametrize(
    ("failure", "error_class"),
    [
        (error_response(429, "rate_limit_error"), errors.RateLimitError),
        (httpx.ConnectError("refused"), errors.APIConnectionError),
    ],
)
def test_one_shot_iterable_cannot_be_resent(
    make_client: ClientFactory, failure: httpx.Response | Exception, error_class: type
) -> None:
    requests: Iterable[bytes] = iter(serialized(2))
    script = Script(failure, CREATED)

    with pytest.raises(error_class):
        make_client(script).create(requests)

    assert len(script.requests) == 1
