"""When to retry an API call, and how long to wait first: the whole policy in one place.

Mirrors the official SDK (docs/message-batches-api.md §8): transport errors,
408, 409, 429 and every 5xx (incl. 529) are transient; ``x-should-retry`` overrides the
status; waits honour ``retry-after-ms`` / ``retry-after``, else exponential backoff with
up to 25 % jitter. Create is stricter (``create_may_retry_*``): the SDK sends no
idempotency key, so a create is resent only when it provably was never processed.

:func:`is_transient` is the one verdict on a failure: the client retries what it
calls transient, and a step whose failure outlasted those retries is skipped for
one cycle (``steps.run_cycle``) instead of ending ``orchestrator run``.

Everything here is pure: the caller passes the clock and the random source.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from orchestrator import errors

#: 4xx statuses that are transient: request timeout, conflict, rate limit.
RETRYABLE_STATUS = frozenset({408, 409, 429})
#: Statuses that mean the API refused a create before processing it, so resending is safe.
CREATE_RETRYABLE_STATUS = frozenset({408, 409, 429, 529})
#: 529 overloaded_error: refused outright, unlike other 5xx (which may follow processing).
OVERLOADED_STATUS = 529

#: First backoff step in seconds (SDK ``INITIAL_RETRY_DELAY``).
BASE_DELAY_S = 0.5
#: Longest backoff step in seconds (SDK ``MAX_RETRY_DELAY``).
MAX_DELAY_S = 8.0
#: A server-given wait longer than this is not slept through; backoff is used instead and
#: the final error carries ``retry_after_s`` so the caller can reschedule (SDK <= 1.0).
MAX_RETRY_AFTER_S = 60.0
#: Backoff is reduced by up to this fraction, so clients do not retry in lockstep.
JITTER_FRACTION = 0.25

#: Transport errors raised before any byte of the request was sent: even a create is safe
#: to resend after these.
NEVER_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


def parse_should_retry(value: str | None) -> bool | None:
    """Read an ``x-should-retry`` header: ``True``/``False``, or ``None`` if absent or odd."""
    if value is None:
        return None
    return {"true": True, "false": False}.get(value.strip().lower())


def is_retryable_status(status: int, should_retry: bool | None) -> bool:
    """Whether a failed call with this status is worth repeating (any method but create).

    ``should_retry`` is the parsed ``x-should-retry`` header; when present it decides.
    """
    if should_retry is not None:
        return should_retry
    return status in RETRYABLE_STATUS or status >= 500


#: Failures that pass by themselves: the network, a broken-off download, the store.
_TRANSIENT_KINDS: tuple[type[errors.OrchestratorError], ...] = (
    errors.APIConnectionError,
    errors.ResultsStreamError,
    errors.StoreUnavailableError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether the failed operation is worth doing again later, unchanged.

    An API status error is judged on its status and ``x-should-retry`` (as the
    SDK does); a connection failure, a download that broke off and an unreachable
    store are transient; everything else (a bad key, a refused request, a bug) is not.
    An ambiguous create is not "transient": it must be reconciled, never resent.
    """
    if isinstance(exc, errors.APIStatusError):
        return is_retryable_status(exc.status_code, exc.should_retry)
    return isinstance(exc, _TRANSIENT_KINDS)


def create_may_retry_status(status: int, should_retry: bool | None) -> bool:
    """Whether a create answered with this status may be resent without risking a duplicate.

    Only refusals that happen before processing qualify; ``x-should-retry: false`` can
    still veto them, but ``x-should-retry: true`` cannot make a 500 safe.
    """
    return status in CREATE_RETRYABLE_STATUS and is_retryable_status(status, should_retry)


def create_outcome_unknown(status: int) -> bool:
    """Whether a create answered with this status may nevertheless have made a batch."""
    return status >= 500 and status != OVERLOADED_STATUS


def create_may_retry_transport(exc: httpx.RequestError) -> bool:
    """Whether a create that failed with this httpx error provably never arrived."""
    return isinstance(exc, NEVER_SENT_ERRORS)


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait, or ``None`` if absent, unparseable or negative.

    ``retry-after-ms`` (milliseconds, non-standard but sent by the API) wins over
    ``retry-after``, which is read as seconds and then as an HTTP date.
    """
    millis = _finite_float(_header(headers, "retry-after-ms"))
    if millis is not None:
        return _non_negative(millis / 1000.0)
    value = _header(headers, "retry-after")
    if value is None:
        return None
    seconds = _finite_float(value)
    if seconds is None:
        seconds = _seconds_until(value, now or datetime.now(UTC))
    return None if seconds is None else _non_negative(seconds)


def backoff_delay(
    attempt: int,
    *,
    retry_after: float | None,
    rng: random.Random | None = None,
    base_s: float = BASE_DELAY_S,
    cap_s: float = MAX_DELAY_S,
    max_retry_after_s: float = MAX_RETRY_AFTER_S,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    A server-given ``retry_after`` in ``(0, max_retry_after_s]`` is used exactly;
    otherwise ``min(base_s * 2**attempt, cap_s)`` reduced by up to 25 % jitter.
    """
    if retry_after is not None and 0 < retry_after <= max_retry_after_s:
        return retry_after
    step = min(base_s * 2.0**attempt, cap_s)
    draw = rng.random() if rng is not None else random.random()
    return step * (1.0 - JITTER_FRACTION * draw)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx.Headers is case-insensitive; a plain dict from a test or a caller may not be.
    value = headers.get(name)
    if value is not None:
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _finite_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _non_negative(seconds: float) -> float | None:
    return seconds if seconds >= 0 else None


def _seconds_until(http_date: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with unknown origin (RFC 5322)
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()
