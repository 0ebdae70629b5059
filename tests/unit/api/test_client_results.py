"""Results streaming: same-host rule, line framing, and the response always closed."""

from __future__ import annotations

import httpx
import pytest

from orchestrator import errors
from tests.unit.api.fakes import (
    BASE_URL,
    BATCH_ID,
    ClientFactory,
    Script,
    TrackingStream,
    error_response,
)

RESULTS_URL = f"{BASE_URL}/v1/messages/batches/{BATCH_ID}/results"
LINES = [
    b'{"custom_id":"b","result":{"type":"canceled"}}',
    b'{"custom_id":"a","result":{"type":"expired"}}',
    b'{"custom_id":"c","result":{"type":"canceled"}}',
]


def streamed(stream: TrackingStream) -> httpx.Response:
    return httpx.Response(200, stream=stream, headers={"content-type": "application/x-jsonl"})


def test_lines_are_streamed_and_the_response_closed(make_client: ClientFactory) -> None:
    body = b"\n".join(LINES) + b"\n"
    stream = TrackingStream([body[:10], body[10:70], body[70:]])
    script = Script(lambda _: streamed(stream))

    with make_client(script).results_lines(RESULTS_URL) as lines:
        got = list(lines)

    assert got == LINES
    assert stream.closed
    request = script.requests[0]
    assert request.url == RESULTS_URL
    assert request.headers["x-api-key"]
    assert request.headers["accept"] == "application/x-jsonl"


def test_early_exit_closes_the_response(make_client: ClientFactory) -> None:
    stream = TrackingStream([line + b"\n" for line in LINES])
    client = make_client(Script(lambda _: streamed(stream)))

    with client.results_lines(RESULTS_URL) as lines:
        first = next(lines)

    assert first == LINES[0]
    assert stream.closed


def test_an_error_in_the_with_block_closes_the_response(make_client: ClientFactory) -> None:
    stream = TrackingStream([line + b"\n" for line in LINES])
    client = make_client(Script(lambda _: streamed(stream)))

    def ingest_one_then_fail() -> None:
        with client.results_lines(RESULTS_URL) as lines:
            next(lines)
            raise KeyError("ingest failed")

    with pytest.raises(KeyError):
        ingest_one_then_fail()

    assert stream.closed


def test_mid_stream_transport_error_raises_results_stream_error(
    make_client: ClientFactory,
) -> None:
    cut = httpx.RemoteProtocolError("peer closed connection without sending complete body")
    stream = TrackingStream([LINES[0] + b"\n" + LINES[1][:9]], fail_with=cut)
    client = make_client(Script(lambda _: streamed(stream)))
    got: list[bytes] = []

    with (
        pytest.raises(errors.ResultsStreamError, match="download it again") as caught,
        client.results_lines(RESULTS_URL) as lines,
    ):
        got.extend(lines)

    assert got == [LINES[0]]  # the partial second line is never yielded
    assert caught.value.__cause__ is cut
    assert stream.closed


def test_iterating_after_the_with_block_is_an_error(make_client: ClientFactory) -> None:
    stream = TrackingStream([line + b"\n" for line in LINES])
    client = make_client(Script(lambda _: streamed(stream)))

    with client.results_lines(RESULTS_URL) as lines:
        pass

    with pytest.raises(RuntimeError, match="inside its `with` block"):
        next(lines)


def test_error_status_on_results_is_mapped_and_closed(make_client: ClientFactory) -> None:
    stream = TrackingStream(
        [b'{"type":"error","error":{"type":"not_found_error","message":"archived"}}']
    )
    client = make_client(Script(lambda _: httpx.Response(404, stream=stream)))

    with pytest.raises(errors.NotFoundError, match="archived"):
        client.results_lines(RESULTS_URL).__enter__()

    assert stream.closed


def test_opening_the_stream_is_retried(make_client: ClientFactory) -> None:
    stream = TrackingStream([LINES[0]])
    script = Script(error_response(503, "api_error"), lambda _: streamed(stream))

    with make_client(script).results_lines(RESULTS_URL) as lines:
        assert list(lines) == [LINES[0]]

    assert len(script.requests) == 2


def test_default_port_spelled_out_is_the_same_host(make_client: ClientFactory) -> None:
    stream = TrackingStream([LINES[0]])
    script = Script(lambda _: streamed(stream))

    with make_client(script).results_lines(
        f"https://api.test:443/v1/messages/batches/{BATCH_ID}/results"
    ) as lines:
        assert list(lines) == [LINES[0]]


@pytest.mark.parametrize(
    ("base_url", "results_url"),
    [
        (BASE_URL, f"https://api.anthropic.com/v1/messages/batches/{BATCH_ID}/results"),
        (BASE_URL, f"https://api.test.evil.example/v1/messages/batches/{BATCH_ID}/results"),
        (BASE_URL, f"https://api.test:8443/v1/messages/batches/{BATCH_ID}/results"),
        (BASE_URL, f"http://api.test/v1/messages/batches/{BATCH_ID}/results"),
        ("http://127.0.0.1:8765", f"http://127.0.0.1:8766/v1/messages/batches/{BATCH_ID}/results"),
        ("http://127.0.0.1:8765", f"http://localhost:8765/v1/messages/batches/{BATCH_ID}/results"),
        (BASE_URL, f"//other.test/v1/messages/batches/{BATCH_ID}/results"),
    ],
)
def test_foreign_results_url_is_refused_before_any_request(
    make_client: ClientFactory, base_url: str, results_url: str
) -> None:
    script = Script(error_response(500, "api_error"))
    client = make_client(script, base_url=base_url)

    with pytest.raises(errors.ForeignResultsURLError, match="not on the API host"):
        client.results_lines(results_url)

    assert script.requests == []


def test_the_download_carries_the_batchs_betas(make_client: ClientFactory) -> None:
    script = Script(lambda _: streamed(TrackingStream([LINES[0] + b"\n"])))

    with make_client(script).results_lines(RESULTS_URL, betas=("files-api-2025-04-14",)) as lines:
        assert list(lines) == [LINES[0]]

    assert script.requests[0].headers["anthropic-beta"] == "files-api-2025-04-14"
