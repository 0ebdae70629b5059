"""What one result line means for its item: done, send again, or give up.

Result types are ``succeeded``, ``errored``, ``canceled`` and ``expired``
(api/message-batches.md §2.5). The API guide splits errors in two: invalid
requests (fix the request first) and server errors (retry as-is). We narrow the
second class: ``authentication_error``, ``permission_error``, ``billing_error``
and ``not_found_error`` are about the account or the resource, not a passing
server state; sending the same request again would fail the same way and only
spend attempts, so they are final. Only the four transient server-side types
below are retried. Expired requests (the 24 h window closed) are retried too.
Canceled requests were canceled by someone on purpose and are never retried.
A succeeded answer that does not match the job's declared output schema
(``domain.output``) is retried as well: it was paid for, but is not the answer.
"""

from __future__ import annotations

from orchestrator.domain.states import Outcome, ResultType

#: Server-side error types inside an errored result that are worth retrying as-is.
RETRYABLE_ERROR_TYPES = frozenset(
    {"api_error", "overloaded_error", "rate_limit_error", "timeout_error"}
)


def decide(
    result_type: ResultType,
    error_type: str | None,
    attempt: int,
    max_attempts: int,
    *,
    canceled_by_user: bool = False,
) -> Outcome:
    """Decide one item's fate from the result of its ``attempt``-th try (1-based).

    ``canceled_by_user`` (the user canceled the job) turns a would-be RETRY into
    CANCELED: re-sending what the user stopped would spend money they chose not to.
    Successes and real failures keep their outcome, so the user still sees them.
    """
    result_type = ResultType(result_type)  # an unknown type is a bug: ValueError
    if result_type is ResultType.SUCCEEDED:
        return Outcome.SUCCEEDED
    if result_type is ResultType.CANCELED:
        return Outcome.CANCELED
    if result_type is ResultType.ERRORED and error_type not in RETRYABLE_ERROR_TYPES:
        return Outcome.FAILED
    outcome = _retry_or_fail(attempt, max_attempts)
    return Outcome.CANCELED if canceled_by_user and outcome is Outcome.RETRY else outcome


def decide_missing(attempt: int, max_attempts: int, *, canceled_by_user: bool = False) -> Outcome:
    """A request absent from its batch's results (or results unavailable): like expired."""
    return decide(
        ResultType.EXPIRED, None, attempt, max_attempts, canceled_by_user=canceled_by_user
    )


def decide_invalid(attempt: int, max_attempts: int, *, canceled_by_user: bool = False) -> Outcome:
    """A succeeded answer that does not match the job's output schema: tried again
    while attempts remain (the next answer may well match), then failed."""
    outcome = _retry_or_fail(attempt, max_attempts)
    return Outcome.CANCELED if canceled_by_user and outcome is Outcome.RETRY else outcome


def _retry_or_fail(attempt: int, max_attempts: int) -> Outcome:
    return Outcome.RETRY if attempt < max_attempts else Outcome.FAILED
