"""The client and the step cycle agree on what is transient, for every status and failure.

The client retries a failed call when ``retry.is_transient`` says so; once its
retries are spent, ``run_cycle`` skips the step for one cycle on the same verdict
(and ends ``orchestrator run`` otherwise). If the two ever disagreed, a failure the
client retries could still end the command (a 408 once did).
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import cast

import httpx
import pytest

import orchestrator.steps as steps
from orchestrator import errors
from orchestrator.api import retry
from orchestrator.steps import run_cycle
from orchestrator.steps.context import StepContext, StepReport
from tests.unit.api.fakes import BATCH_ID, ClientFactory, Script, error_response

STATUSES = [400, 401, 402, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 529]
SHOULD_RETRY = [None, "true", "false"]
TRANSPORT_FAILURES = [
    httpx.ConnectError("refused"),
    httpx.ConnectTimeout("slow connect"),
    httpx.ReadTimeout("slow read"),
    httpx.WriteTimeout("slow write"),
    httpx.PoolTimeout("no connection free"),
    httpx.ReadError("reset"),
    httpx.WriteError("broken pipe"),
    httpx.RemoteProtocolError("server hung up"),
]


def _client_verdict(
    make_client: ClientFactory, step: httpx.Response | Exception
) -> tuple[errors.APIError, bool]:
    """Retrieve with one retry allowed: the final error, and whether the client retried."""
    script = Script(step)
    client = make_client(script, max_retries=1)
    with pytest.raises(errors.APIError) as caught:
        client.retrieve(BATCH_ID)
    assert len(script.requests) in (1, 2)
    return caught.value, len(script.requests) == 2


class _NoJobsStore:
    """run_cycle ends with finish_jobs, which asks for active jobs: there are none."""

    def release_holder(self, owner: str) -> int:
        return 0

    def active_job_ids(self, job_id: int | None = None) -> list[int]:
        return []


def _run_cycle_failing_with(error: Exception, monkeypatch: pytest.MonkeyPatch) -> list[StepReport]:
    """run_cycle whose only step raises ``error``, as a step whose API call failed."""

    def failing_step(_ctx: StepContext, _now: datetime) -> StepReport:
        raise error

    monkeypatch.setattr(steps, "STEPS", (failing_step,))
    context = SimpleNamespace(
        store=_NoJobsStore(), job_id=None, failing_steps=set(), owner="host:1:test"
    )
    return run_cycle(cast(StepContext, context))


def _cycle_verdict(error: Exception, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether run_cycle absorbs this error (True) or lets it end the run (False)."""
    try:
        reports = _run_cycle_failing_with(error, monkeypatch)
    except Exception as exc:
        if exc is not error:
            raise
        return False
    assert reports[1].details == {"skipped_transient": 1}
    return True


@pytest.mark.parametrize("should_retry", SHOULD_RETRY)
@pytest.mark.parametrize("status", STATUSES)
def test_status_verdicts_agree(
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    should_retry: str | None,
) -> None:
    headers = {} if should_retry is None else {"x-should-retry": should_retry}
    error, client_retried = _client_verdict(
        make_client, error_response(status, "some_error", headers=headers)
    )
    assert client_retried is retry.is_transient(error)
    assert _cycle_verdict(error, monkeypatch) is client_retried


@pytest.mark.parametrize("failure", TRANSPORT_FAILURES, ids=lambda e: type(e).__name__)
def test_transport_verdicts_agree(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    error, client_retried = _client_verdict(make_client, failure)
    assert client_retried, "the SDK retries every transport failure"
    assert retry.is_transient(error)
    assert _cycle_verdict(error, monkeypatch) is True


def test_408_is_transient_everywhere(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case that once ended `orchestrator run`: a 408 that outlasts the retries."""
    error, client_retried = _client_verdict(make_client, error_response(408, "timeout_error"))
    assert isinstance(error, errors.RequestTimeoutError)
    assert client_retried
    assert _cycle_verdict(error, monkeypatch) is True


@pytest.mark.parametrize(
    "error",
    [
        errors.ResultsStreamError("cut"),
        errors.StoreUnavailableError("locked"),
        errors.APIConnectionError("down"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_failures_outside_one_call_are_transient(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    assert retry.is_transient(error)
    assert _cycle_verdict(error, monkeypatch) is True


@pytest.mark.parametrize(
    "error",
    [
        errors.AmbiguousCreateError("reconcile, never resend"),
        errors.ForeignResultsURLError("elsewhere"),
        errors.APIError("body is not a batch"),
        errors.ConfigError("no key"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_failures_are_not_transient(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    assert not retry.is_transient(error)
    assert _cycle_verdict(error, monkeypatch) is False
