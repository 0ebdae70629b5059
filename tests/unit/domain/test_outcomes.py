"""The retry policy: which results end an item and which send it again."""

from __future__ import annotations

from typing import cast

import pytest

from orchestrator.domain.outcomes import RETRYABLE_ERROR_TYPES, decide, decide_missing
from orchestrator.domain.states import Outcome, ResultType

S, R, F, C = Outcome.SUCCEEDED, Outcome.RETRY, Outcome.FAILED, Outcome.CANCELED


@pytest.mark.parametrize(
    ("result_type", "error_type", "attempt", "max_attempts", "expected"),
    [
        ("succeeded", None, 1, 3, S),
        ("succeeded", None, 3, 3, S),
        # server-side errors: retried as-is until attempts run out
        ("errored", "api_error", 1, 3, R),
        ("errored", "overloaded_error", 2, 3, R),
        ("errored", "rate_limit_error", 1, 3, R),
        ("errored", "timeout_error", 1, 3, R),
        ("errored", "api_error", 3, 3, F),
        ("errored", "overloaded_error", 1, 1, F),
        # invalid requests and account/resource errors: final at once
        ("errored", "invalid_request_error", 1, 3, F),
        ("errored", "authentication_error", 1, 3, F),
        ("errored", "permission_error", 1, 3, F),
        ("errored", "billing_error", 1, 3, F),
        ("errored", "not_found_error", 1, 3, F),
        ("errored", "some_future_error", 1, 3, F),
        ("errored", None, 1, 3, F),
        # expired: the 24 h window closed; try again
        ("expired", None, 1, 3, R),
        ("expired", None, 2, 3, R),
        ("expired", None, 3, 3, F),
        # canceled: somebody meant it
        ("canceled", None, 1, 3, C),
        ("canceled", None, 3, 3, C),
    ],
)
def test_decide(
    result_type: str, error_type: str | None, attempt: int, max_attempts: int, expected: Outcome
) -> None:
    assert decide(ResultType(result_type), error_type, attempt, max_attempts) is expected


@pytest.mark.parametrize(
    ("result_type", "error_type", "attempt", "expected"),
    [
        ("succeeded", None, 1, S),
        ("expired", None, 1, C),
        ("errored", "overloaded_error", 1, C),
        ("errored", "invalid_request_error", 1, F),
        ("expired", None, 3, F),
        ("canceled", None, 1, C),
    ],
)
def test_a_user_cancel_stops_retries_but_keeps_real_outcomes(
    result_type: str, error_type: str | None, attempt: int, expected: Outcome
) -> None:
    assert (
        decide(ResultType(result_type), error_type, attempt, 3, canceled_by_user=True) is expected
    )


@pytest.mark.parametrize(("attempt", "expected"), [(1, R), (2, R), (3, F)])
def test_a_missing_result_is_treated_like_expired(attempt: int, expected: Outcome) -> None:
    assert decide_missing(attempt, 3) is expected
    assert decide_missing(attempt, 3, canceled_by_user=True) is (C if expected is R else F)


def test_unknown_result_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="'pending' is not a valid ResultType"):
        decide(cast(ResultType, "pending"), None, 1, 3)


def test_retryable_types_are_the_server_side_ones() -> None:
    assert RETRYABLE_ERROR_TYPES == {
        "api_error",
        "overloaded_error",
        "rate_limit_error",
        "timeout_error",
    }


def test_outcome_values_are_stable_strings() -> None:
    assert [o.value for o in Outcome] == ["succeeded", "retry", "failed", "canceled"]
