from __future__ import annotations

import random
from datetime import UTC, datetime

import httpx
import pytest

from orchestrator.api import retry

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


class FixedRandom(random.Random):
    """A random source whose every draw is ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("status", "should_retry", "expected"),
    [
        (408, None, True),
        (409, None, True),
        (429, None, True),
        (500, None, True),
        (502, None, True),
        (503, None, True),
        (504, None, True),
        (529, None, True),
        (400, None, False),
        (401, None, False),
        (402, None, False),
        (403, None, False),
        (404, None, False),
        (413, None, False),
        (422, None, False),
        (400, "true", True),
        (404, "TRUE", True),
        (503, "false", False),
        (429, "false", False),
        (503, "maybe", True),
        (400, "", False),
    ],
)
def test_is_retryable_status(status: int, should_retry: str | None, expected: bool) -> None:
    assert retry.is_retryable_status(status, retry.parse_should_retry(should_retry)) is expected


@pytest.mark.parametrize(
    ("status", "should_retry", "may_retry", "unknown"),
    [
        (408, None, True, False),
        (409, None, True, False),
        (429, None, True, False),
        (529, None, True, False),
        (429, "false", False, False),
        (500, None, False, True),
        (500, "true", False, True),
        (502, None, False, True),
        (503, None, False, True),
        (504, None, False, True),
        (400, None, False, False),
        (400, "true", False, False),
        (413, None, False, False),
    ],
)
def test_create_status_policy(
    status: int, should_retry: str | None, may_retry: bool, unknown: bool
) -> None:
    assert (
        retry.create_may_retry_status(status, retry.parse_should_retry(should_retry)) is may_retry
    )
    assert retry.create_outcome_unknown(status) is unknown


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ConnectTimeout("slow"), True),
        (httpx.PoolTimeout("busy"), True),
        (httpx.ReadTimeout("slow"), False),
        (httpx.WriteTimeout("slow"), False),
        (httpx.ReadError("reset"), False),
        (httpx.WriteError("reset"), False),
        (httpx.RemoteProtocolError("closed"), False),
    ],
)
def test_create_transport_policy(exc: httpx.RequestError, expected: bool) -> None:
    assert retry.create_may_retry_transport(exc) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "oops", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "-5"}, None),
        ({"Retry-After": "4"}, 4.0),
        ({"retry-after": "Sat, 21 Nov 2026 12:00:30 GMT"}, 30.0),
        ({"retry-after": "Sat, 21 Nov 2026 11:59:00 GMT"}, None),
        ({"retry-after": "Sat, 21 Nov 2026 12:01:00 -0000"}, 60.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry.parse_retry_after(headers, now=NOW) == expected


def test_parse_retry_after_reads_httpx_headers_case_insensitively() -> None:
    headers = httpx.Headers({"Retry-After-Ms": "1500"})

    assert retry.parse_retry_after(headers, now=NOW) == 1.5


@pytest.mark.parametrize(
    ("attempt", "retry_after", "draw", "expected"),
    [
        (0, None, 0.0, 0.5),
        (0, None, 1.0, 0.375),
        (1, None, 0.0, 1.0),
        (2, None, 0.0, 2.0),
        (3, None, 0.5, 4.0 * 0.875),
        (4, None, 0.0, 8.0),
        (10, None, 1.0, 6.0),
        (0, 3.0, 0.5, 3.0),
        (5, 0.25, 0.5, 0.25),
        (0, 60.0, 0.5, 60.0),
        (0, 60.5, 0.0, 0.5),
        (2, 120.0, 0.0, 2.0),
        (0, 0.0, 0.0, 0.5),
        (1, -2.0, 0.0, 1.0),
    ],
)
def test_backoff_delay(
    attempt: int, retry_after: float | None, draw: float, expected: float
) -> None:
    delay = retry.backoff_delay(attempt, retry_after=retry_after, rng=FixedRandom(draw))

    assert delay == pytest.approx(expected)


def test_backoff_delay_is_a_pure_function_of_its_inputs() -> None:
    first = [retry.backoff_delay(n, retry_after=None, rng=random.Random(3)) for n in range(6)]
    again = [retry.backoff_delay(n, retry_after=None, rng=random.Random(3)) for n in range(6)]

    assert first == again


@pytest.mark.parametrize("attempt", range(8))
def test_backoff_delay_stays_in_its_jitter_band(attempt: int) -> None:
    step = min(retry.BASE_DELAY_S * 2**attempt, retry.MAX_DELAY_S)

    delays = [retry.backoff_delay(attempt, retry_after=None) for _ in range(50)]

    assert all(0.75 * step <= delay <= step for delay in delays)
