"""Scripted httpx transports and wire fixtures for the API client's unit tests."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson

from orchestrator.api import BatchesClient

API_KEY = "sk-ant-api03-TEST-SECRET-do-not-leak-0123456789"
BASE_URL = "https://api.test"
BATCH_ID = "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF"

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def batch_json(batch_id: str = BATCH_ID, **overrides: Any) -> dict[str, Any]:
    """A MessageBatch as the API sends it (§2.1), in progress with 2 requests."""
    batch: dict[str, Any] = {
        "id": batch_id,
        "type": "message_batch",
        "processing_status": "in_progress",
        "request_counts": {
            "processing": 2,
            "succeeded": 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        "ended_at": None,
        "created_at": "2024-09-24T18:37:24.100435Z",
        "expires_at": "2024-09-25T18:37:24.100435Z",
        "cancel_initiated_at": None,
        "archived_at": None,
        "results_url": None,
    }
    batch.update(overrides)
    return batch


def page_json(ids: list[str], *, has_more: bool) -> dict[str, Any]:
    return {
        "data": [batch_json(i) for i in ids],
        "has_more": has_more,
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
    }


def json_response(
    status: int, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        content=orjson.dumps(body),
        headers={"content-type": "application/json", **(headers or {})},
    )


def error_response(
    status: int,
    error_type: str,
    message: str = "something went wrong",
    *,
    request_id: str | None = "req_011CSHoEeqs5C35K2UUqR7Fy",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }
    return json_response(status, body, headers)


class Script:
    """A MockTransport handler: plays its steps in order, recording each request.

    A step is a response, an exception to raise, or a callable of the request. The
    last step repeats, so ``Script(error_response(503, ...))`` fails forever.
    """

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):  # a copy: a response is single-use
            return httpx.Response(step.status_code, headers=step.headers, content=step.content)
        return step(request)

    @property
    def bodies(self) -> list[bytes]:
        return [request.content for request in self.requests]


class TrackingStream(httpx.SyncByteStream):
    """A response body that records whether it was closed; may fail after some chunks."""

    def __init__(self, chunks: list[bytes], fail_with: Exception | None = None) -> None:
        self.chunks = chunks
        self.fail_with = fail_with
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.fail_with is not None:
            raise self.fail_with

    def close(self) -> None:
        self.closed = True


class ClientFactory:
    """Builds clients on a scripted transport; ``sleeps`` records every backoff wait."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.clients: list[BatchesClient] = []

    def __call__(
        self, handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
    ) -> BatchesClient:
        kwargs.setdefault("base_url", BASE_URL)
        client = BatchesClient(
            api_key=API_KEY,
            transport=httpx.MockTransport(handler),
            sleep=self.sleeps.append,
            rng=random.Random(7),
            **kwargs,
        )
        self.clients.append(client)
        return client

    def close_all(self) -> None:
        for client in self.clients:
            client.close()
