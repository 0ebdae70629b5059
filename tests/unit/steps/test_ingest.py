"""ingest.resolve: what an item becomes from its result in an ingested batch, and the
typed row a result line becomes."""

from __future__ import annotations

import pytest

from orchestrator.api.models import SucceededResult, parse_result_line
from orchestrator.domain.pricing import PriceTable
from orchestrator.domain.states import ItemStatus, ResultType
from orchestrator.steps.ingest import MISSING_RESULT, resolve, result_row, usage_counts
from orchestrator.store.records import RequestRef, Resolution, Route

R = ResultType


def ref(result_type: ResultType | None, attempt: int = 1, error: str | None = None) -> RequestRef:
    return RequestRef(
        item_id=7,
        attempt=attempt,
        custom_id=f"tag-7-{attempt}",
        result_id=None if result_type is None else 70 + attempt,
        result_type=result_type,
        error_type=error,
        error_message=None if error is None else f"{error} happened",
    )


@pytest.mark.parametrize(
    ("case", "request_ref", "max_attempts", "canceled", "expected"),
    [
        ("succeeded", ref(R.SUCCEEDED), 3, False, Resolution(7, ItemStatus.SUCCEEDED, 71)),
        (
            "server error retried",
            ref(R.ERRORED, 1, "overloaded_error"),
            3,
            False,
            Resolution(7, ItemStatus.PENDING, 71, "overloaded_error", "overloaded_error happened"),
        ),
        (
            "server error, attempts used up",
            ref(R.ERRORED, 3, "api_error"),
            3,
            False,
            Resolution(7, ItemStatus.FAILED, 73, "api_error", "api_error happened"),
        ),
        (
            "invalid request fails at once",
            ref(R.ERRORED, 1, "invalid_request_error"),
            3,
            False,
            Resolution(
                7, ItemStatus.FAILED, 71, "invalid_request_error", "invalid_request_error happened"
            ),
        ),
        (
            "expired retried",
            ref(R.EXPIRED, 1),
            3,
            False,
            Resolution(
                7,
                ItemStatus.PENDING,
                71,
                "expired",
                "the batch expired before this request was processed",
            ),
        ),
        (
            "expired, attempts used up, says how many",
            ref(R.EXPIRED, 2),
            2,
            False,
            Resolution(
                7,
                ItemStatus.FAILED,
                72,
                "expired",
                "the batch expired before this request was processed (after 2 attempts)",
            ),
        ),
        (
            "canceled is final",
            ref(R.CANCELED),
            3,
            False,
            Resolution(
                7,
                ItemStatus.CANCELED,
                71,
                "canceled",
                "the batch was canceled before this request was processed",
            ),
        ),
        (
            "missing result retried like expired",
            ref(None, 1),
            3,
            False,
            Resolution(
                7, ItemStatus.PENDING, None, MISSING_RESULT, "no result line for this request"
            ),
        ),
        (
            "missing result, attempts used up",
            ref(None, 3),
            3,
            False,
            Resolution(
                7,
                ItemStatus.FAILED,
                None,
                MISSING_RESULT,
                "no result line for this request (after 3 attempts)",
            ),
        ),
        (
            "a canceled job retries nothing",
            ref(R.EXPIRED, 1),
            3,
            True,
            Resolution(
                7,
                ItemStatus.CANCELED,
                71,
                "expired",
                "the batch expired before this request was processed",
            ),
        ),
        (
            "a canceled job keeps its successes",
            ref(R.SUCCEEDED),
            3,
            True,
            Resolution(7, ItemStatus.SUCCEEDED, 71),
        ),
    ],
)
def test_resolve(
    case: str, request_ref: RequestRef, max_attempts: int, canceled: bool, expected: Resolution
) -> None:
    assert resolve(request_ref, max_attempts, canceled) == expected, case


SUCCEEDED_LINE = (
    b'{"custom_id":"t-5-2","result":{"type":"succeeded","message":{"id":"msg_1",'
    b'"type":"message","role":"assistant","model":"claude-haiku-4-5",'
    b'"content":[{"type":"text","text":"posi"},{"type":"text","text":"tive"}],'
    b'"stop_reason":"end_turn","stop_sequence":null,'
    b'"usage":{"input_tokens":1000000,"output_tokens":1000000,'
    b'"cache_creation_input_tokens":null,"cache_read_input_tokens":0,'
    b'"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":null},'
    b'"service_tier":"batch"}}}}'
)
ERRORED_LINE = (
    b'{"custom_id":"t-5-2","result":{"type":"errored","error":{"type":"error",'
    b'"error":{"type":"overloaded_error","message":"busy"}}}}'
)


def test_a_succeeded_line_becomes_a_typed_priced_row() -> None:
    row = result_row(3, Route(5, 2), parse_result_line(SUCCEEDED_LINE), PriceTable.load())
    assert (row.batch_id, row.item_id, row.attempt, row.custom_id) == (3, 5, 2, "t-5-2")
    assert row.result_type is ResultType.SUCCEEDED
    assert row.text == "positive"
    assert (row.input_tokens, row.output_tokens) == (1_000_000, 1_000_000)
    assert row.cache_creation_5m_input_tokens == 3
    assert row.cache_creation_1h_input_tokens is None
    # claude-haiku-4-5: $1 in / $5 out per MTok standard, half at batch prices.
    assert row.cost_usd == pytest.approx(3.0)


def test_an_errored_line_keeps_its_error() -> None:
    row = result_row(3, Route(5, 2), parse_result_line(ERRORED_LINE), PriceTable.load())
    assert row.result_type is ResultType.ERRORED
    assert (row.error_type, row.error_message) == ("overloaded_error", "busy")
    assert row.cost_usd is None
    assert row.text is None


def test_usage_counts_read_null_fields_as_zero() -> None:
    line = parse_result_line(SUCCEEDED_LINE)
    assert isinstance(line.result, SucceededResult)
    counts = usage_counts(line.result.message.usage)
    assert counts.cache_creation_input_tokens == 0
    assert counts.cache_5m_tokens == 3
    assert counts.cache_1h_tokens is None
