"""Error mapping and the retry loop, seen through ``retrieve`` (an idempotent GET)."""

from __future__ import annotations

import random

import httpx
import pytest

from orchestrator import errors
from orchestrator.api import MessageBatch, retry
from tests.unit.api.fakes import (
    BATCH_ID,
    ClientFactory,
    Script,
    batch_json,
    error_response,
    json_response,
)


@pytest.mark.parametrize(
    ("status", "error_type", "error_class"),
    [
        (400, "invalid_request_error", errors.BadRequestError),
        (401, "authentication_error", errors.AuthenticationError),
        (402, "billing_error", errors.BillingError),
        (403, "permission_error", errors.PermissionDeniedError),
        (404, "not_found_error", errors.NotFoundError),
        (409, "conflict_error", errors.ConflictError),
        (413, "request_too_large", errors.RequestTooLargeError),
        (418, "invalid_request_error", errors.APIStatusError),
        (422, "invalid_request_error", errors.APIStatusError),
        (429, "rate_limit_error", errors.RateLimitError),
        (500, "api_error", errors.InternalServerError),
        (503, "api_error", errors.InternalServerError),
        (504, "timeout_error", errors.InternalServerError),
        (529, "overloaded_error", errors.OverloadedError),
    ],
)
def test_status_maps_to_its_error_class(
    make_client: ClientFactory, status: int, error_type: str, error_class: type
) -> None:
    script = Script(error_response(status, error_type, "Batch went sideways", request_id="req_9"))
    client = make_client(script, max_retries=0)

    with pytest.raises(errors.APIStatusError) as caught:
        client.retrieve(BATCH_ID)

    assert type(caught.value) is error_class
    assert caught.value.status_code == status
    assert caught.value.error_type == error_type
    assert caught.value.request_id == "req_9"
    assert "Batch went sideways" in str(caught.value)
    assert f"GET /v1/messages/batches/{BATCH_ID}" in str(caught.value)


def test_non_json_502_from_a_proxy_maps_with_header_request_id(
    make_client: ClientFactory,
) -> None:
    page = httpx.Response(
        502,
        content=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        headers={"content-type": "text/html", "request-id": "req_from_header"},
    )
    client = make_client(Script(page), max_retries=0)

    with pytest.raises(errors.InternalServerError) as caught:
        client.retrieve(BATCH_ID)

    assert caught.value.status_code == 502
    assert caught.value.error_type is None
    assert caught.value.request_id == "req_from_header"
    assert "502 Bad Gateway" in str(caught.value)


def test_empty_error_body_falls_back_to_the_reason_phrase(make_client: ClientFactory) -> None:
    client = make_client(Script(httpx.Response(503)), max_retries=0)

    with pytest.raises(errors.InternalServerError, match="Service Unavailable"):
        client.retrieve(BATCH_ID)


def test_retry_hints_are_carried_on_the_error(make_client: ClientFactory) -> None:
    headers = {"retry-after": "120", "x-should-retry": "true"}
    script = Script(error_response(429, "rate_limit_error", headers=headers))
    client = make_client(script, max_retries=0)

    with pytest.raises(errors.RateLimitError) as caught:
        client.retrieve(BATCH_ID)

    assert caught.value.retry_after_s == 120.0
    assert caught.value.should_retry is True


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        (httpx.ReadTimeout("read timed out"), errors.APITimeoutError),
        (httpx.ConnectTimeout("connect timed out"), errors.APITimeoutError),
        (httpx.ConnectError("connection refused"), errors.APIConnectionError),
        (httpx.RemoteProtocolError("peer closed connection"), errors.APIConnectionError),
        (httpx.ReadError("connection reset"), errors.APIConnectionError),
    ],
)
def test_transport_errors_map_with_cause(
    make_client: ClientFactory, exc: httpx.TransportError, error_class: type
) -> None:
    client = make_client(Script(exc), max_retries=0)

    with pytest.raises(errors.APIConnectionError) as caught:
        client.retrieve(BATCH_ID)

    assert type(caught.value) is error_class
    assert caught.value.__cause__ is exc


def test_a_2xx_body_that_is_not_a_batch_is_an_api_error(make_client: ClientFactory) -> None:
    client = make_client(Script(json_response(200, {"hello": "proxy"})))

    with pytest.raises(errors.APIError, match="not a MessageBatch"):
        client.retrieve(BATCH_ID)


# -- the retry table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (error_response(408, "timeout_error"), True),
        (error_response(409, "conflict_error"), True),
        (error_response(429, "rate_limit_error"), True),
        (error_response(500, "api_error"), True),
        (error_response(503, "api_error"), True),
        (error_response(529, "overloaded_error"), True),
        (httpx.Response(502, content=b"bad gateway"), True),
        (error_response(400, "invalid_request_error"), False),
        (error_response(401, "authentication_error"), False),
        (error_response(404, "not_found_error"), False),
        (error_response(413, "request_too_large"), False),
        (error_response(400, "invalid_request_error", headers={"x-should-retry": "true"}), True),
        (error_response(503, "api_error", headers={"x-should-retry": "false"}), False),
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.RemoteProtocolError("closed"), True),
    ],
)
def test_which_failures_are_retried(
    make_client: ClientFactory, failure: httpx.Response | Exception, retried: bool
) -> None:
    script = Script(failure, json_response(200, batch_json()))
    client = make_client(script, max_retries=2)

    if retried:
        assert client.retrieve(BATCH_ID).id == BATCH_ID
        assert len(script.requests) == 2
        assert len(make_client.sleeps) == 1
    else:
        with pytest.raises(errors.APIStatusError):
            client.retrieve(BATCH_ID)
        assert len(script.requests) == 1
        assert make_client.sleeps == []


@pytest.mark.parametrize(
    ("headers", "expected_sleep"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "0.75"}, 0.75),
    ],
)
def test_retry_after_is_honoured_exactly(
    make_client: ClientFactory, headers: dict[str, str], expected_sleep: float
) -> None:
    script = Script(
        error_response(429, "rate_limit_error", headers=headers), json_response(200, batch_json())
    )
    client = make_client(script)

    client.retrieve(BATCH_ID)

    assert make_client.sleeps == [expected_sleep]


def test_attempts_stop_at_max_retries_and_the_last_error_is_raised(
    make_client: ClientFactory,
) -> None:
    script = Script(*(error_response(503, "api_error", request_id=f"req_{n}") for n in range(10)))
    client = make_client(script, max_retries=3)

    with pytest.raises(errors.InternalServerError) as caught:
        client.retrieve(BATCH_ID)

    assert len(script.requests) == 4
    assert caught.value.request_id == "req_3"
    rng = random.Random(7)
    expected = [retry.backoff_delay(n, retry_after=None, rng=rng) for n in range(3)]
    assert make_client.sleeps == expected


def test_max_retries_zero_makes_one_attempt(make_client: ClientFactory) -> None:
    script = Script(httpx.ConnectError("refused"))
    client = make_client(script, max_retries=0)

    with pytest.raises(errors.APIConnectionError):
        client.retrieve(BATCH_ID)

    assert len(script.requests) == 1
    assert make_client.sleeps == []


def test_each_attempt_says_its_retry_count(make_client: ClientFactory) -> None:
    script = Script(
        error_response(529, "overloaded_error"),
        httpx.ConnectError("refused"),
        json_response(200, batch_json()),
    )
    client = make_client(script)

    assert isinstance(client.retrieve(BATCH_ID), MessageBatch)
    assert [r.headers["x-retry-count"] for r in script.requests] == ["0", "1", "2"]
