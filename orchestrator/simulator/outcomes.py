"""Per-request outcomes: a deterministic function of (seed, batch, custom_id, params).

* Invalid params (async validation, §3.2) are always ``errored`` / invalid_request_error.
* ``errored_share["invalid_request_error"]`` is drawn from (seed, custom_id, params) only,
  so resubmitting the same request fails the same way (the guide: fix it, don't retry).
* Server-side error types and ``expired_share`` are drawn from (seed, batch id,
  custom_id, params): the same custom_id retried in a new batch gets a fresh draw.
"""

from __future__ import annotations

from .config import SERVER_ERROR_TYPES, SimulatorConfig
from .ids import unit_interval
from .model import Prompt

SUCCEEDED = 0
EXPIRED = 1
CANCELED = 2
INVALID = 3
#: Codes 4.. are the server-side error types in this order.
SERVER_ERRORS = tuple(sorted(SERVER_ERROR_TYPES))
_CODE_OF_ERROR = {error_type: 4 + n for n, error_type in enumerate(SERVER_ERRORS)}

#: §2.5: messages for injected errored results.
ERROR_MESSAGES = {
    "invalid_request_error": "Simulated invalid request (errored_share).",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
    "timeout_error": "Request timed out",
    "rate_limit_error": "Rate limited",
}


def result_type(code: int) -> str:
    """The result line ``type`` for an outcome code."""
    if code >= INVALID:
        return "errored"
    return ("succeeded", "expired", "canceled")[code]


def error_type(code: int) -> str:
    """The error type inside an errored result."""
    return "invalid_request_error" if code == INVALID else SERVER_ERRORS[code - 4]


def scripted_outcome(config: SimulatorConfig, batch_id: str, custom_id: str, prompt: Prompt) -> int:
    """What this request ends as if the batch runs to completion."""
    if prompt.error is not None:
        return INVALID
    shares = config.errored_share
    invalid_share = shares.get("invalid_request_error", 0.0)
    if (
        invalid_share
        and unit_interval(config.seed, "invalid", custom_id, prompt.digest) < invalid_share
    ):
        return INVALID
    # Shares are of all requests: rescale for the ones the invalid draw already took.
    scale = 1.0 / (1.0 - invalid_share) if invalid_share < 1.0 else 1.0
    draw = unit_interval(config.seed, "outcome", batch_id, custom_id, prompt.digest)
    edge = 0.0
    for name in SERVER_ERRORS:
        edge += shares.get(name, 0.0) * scale
        if draw < edge:
            return _CODE_OF_ERROR[name]
    return EXPIRED if draw < edge + config.expired_share * scale else SUCCEEDED


def canceled_outcome(code: int, inflight: bool) -> int:
    """§6.3: in-flight requests finish anyway (succeeded/errored), the rest are canceled."""
    return code if inflight and code not in (EXPIRED, CANCELED) else CANCELED


def expired_outcome(code: int) -> int:
    """§6.4: at expiry every unfinished request is expired; invalid ones failed early."""
    return code if code == INVALID else EXPIRED
