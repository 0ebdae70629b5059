"""Wiring shared by the CLI commands: open the store and the API, drive a job.

``drive`` is the foreground loop of ``orchestrator run``: the same steps the
daemon runs, in a loop, until every item of the job is terminal.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import FrameType
from typing import Any

from orchestrator.api.client import BatchesClient
from orchestrator.domain.states import (
    IN_FLIGHT_BATCH_STATUSES,
    SETTLED_JOB_STATUSES,
    BatchStatus,
)
from orchestrator.errors import APIUnreachableError
from orchestrator.settings import Settings
from orchestrator.steps import StepContext, StepReport, run_cycle
from orchestrator.steps.background import BackgroundSubmit
from orchestrator.steps.context import utcnow
from orchestrator.steps.leases import LeaseKeeper
from orchestrator.steps.waiting import waiting_reason
from orchestrator.store.queries import Store
from orchestrator.store.records import JobReport

#: Pause between cycles that did something other than polling.
BUSY_PAUSE_S = 0.05
#: How long a cycle in which no step did anything reuses the job's last report (a
#: batch's create runs on its own thread meanwhile; polls are cycles that work).
REPORT_IDLE_S = 1.0

log = logging.getLogger("orchestrator")


def make_client(settings: Settings) -> BatchesClient:
    return BatchesClient(
        api_key=settings.require_api_key(),
        base_url=settings.base_url,
        api_version=settings.api_version,
        timeout_s=settings.request_timeout_s,
        create_timeout_s=settings.create_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        max_retries=settings.max_retries,
    )


@contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings.database_url)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def step_context(settings: Settings) -> Iterator[StepContext]:
    """A store at head plus an API client, both closed on exit; while it is open, a
    heartbeat renews this worker's leases."""
    with open_store(settings) as store, make_client(settings) as api:
        ctx = StepContext(store=store, api=api, settings=settings)
        if settings.worker_id:
            ctx.owner = settings.worker_id
        with LeaseKeeper(store, ctx.owner, ctx.ttl_s, utcnow):
            yield ctx


class StopSignals:
    """SIGTERM/SIGINT while a command works: the first asks it to stop after the step
    under way (its transaction commits or rolls back, its leases are released); the
    second exits at once (safe too: every step can be re-run after a crash)."""

    def __init__(self, on_first: Callable[[int], None] = lambda _signum: None) -> None:
        self.stop = threading.Event()
        self._on_first = on_first
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            log.warning("second signal: exiting now")
            os._exit(130)
        self.stop.set()
        self._on_first(signum)


def busy(reports: list[StepReport]) -> bool:
    """Did this cycle do anything besides polling batches that are still running?"""
    return any(r.work for r in reports if r.step != "poll") or any(
        r.details.get(BatchStatus.ENDED) for r in reports
    )


class UnreachableClock:
    """How long the API has been unreachable, from cycle reports.

    Any cycle in which a step worked with the API and none found it unreachable
    resets the clock; a cycle that only waits (e.g. out a back-off) leaves it.
    """

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s = limit_s
        self._clock = clock
        self._since: float | None = None
        self.last_error: str | None = None

    def observe(self, reports: list[StepReport]) -> None:
        failed = [r for r in reports if r.unreachable]
        if failed:
            if self._since is None:
                self._since = self._clock()
            self.last_error = failed[-1].error or self.last_error
        elif any(r.work for r in reports):
            self._since = None

    def expired(self) -> bool:
        return self._since is not None and self._clock() - self._since > self.limit_s


def drive(
    ctx: StepContext,
    job_id: int,
    on_progress: Callable[[JobReport], None],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_waiting: Callable[[str | None], None] = lambda _reason: None,
) -> JobReport:
    """Run cycles on this job alone until it is done or canceled; returns the final report.

    ``on_waiting`` hears why the job is held back whenever that changes. An API
    that stays unreachable for ``unreachable_timeout_s`` ends the run with
    ``APIUnreachableError`` (run the command again to resume).
    """
    report: JobReport | None = None
    for report in cycles(ctx, job_id, should_stop=should_stop, on_waiting=on_waiting):
        on_progress(report)
    assert report is not None  # cycles yields at least once
    return report


def cycles(
    ctx: StepContext,
    job_id: int,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_waiting: Callable[[str | None], None] = lambda _reason: None,
) -> Iterator[JobReport]:
    """The job's report after each cycle of the steps on it, until it is done, canceled
    and settled, or ``should_stop``; the last one yielded is the final report.

    The one loop behind ``orchestrator run``, ``drive`` and the Python API's
    ``Job.until_done`` / ``Job.events``. Creates run on a thread of their own
    (``steps/background.py``) while the cycles plan, poll and ingest. Between cycles
    it waits: briefly after work, the poll interval otherwise, less when a create
    is done.
    """
    ctx = replace(ctx, job_id=job_id)
    with BackgroundSubmit(ctx) as submitter:
        ctx = replace(ctx, on_planned=submitter.wake)
        yield from _cycles(ctx, job_id, submitter, should_stop, on_waiting)


def _cycles(
    ctx: StepContext,
    job_id: int,
    submitter: BackgroundSubmit,
    should_stop: Callable[[], bool],
    on_waiting: Callable[[str | None], None],
) -> Iterator[JobReport]:
    unreachable = UnreachableClock(ctx.settings.unreachable_timeout_s)
    reason: str | None = None
    report: JobReport | None = None
    reported_at = 0.0
    while True:
        reports = run_cycle(ctx, should_stop, submitter=submitter.submit)
        # The report counts every item of the job: made again after a cycle that did
        # something, and otherwise (another worker may have) once a REPORT_IDLE_S.
        if report is None or any(r.work for r in reports) or _due(reported_at):
            report, reported_at = ctx.store.job_report(job_id), time.monotonic()
        yield report
        if report.job.status in SETTLED_JOB_STATUSES and _settled(report):
            return
        if should_stop():
            return
        unreachable.observe(reports)
        if unreachable.expired():
            raise APIUnreachableError(
                f"the API at {ctx.api.endpoint} could not be reached for over "
                f"{ctx.settings.unreachable_timeout_s:.0f} s ({unreachable.last_error}); check "
                "ANTHROPIC_BASE_URL and the network, then run the same command to resume "
                "(ORCHESTRATOR_UNREACHABLE_TIMEOUT sets how long to keep trying)"
            )
        now_reason = waiting_reason(ctx.store, ctx.settings, job_id, utcnow())
        if now_reason != reason:
            reason = now_reason
            on_waiting(reason)
        # A create the submitter finished (the batch may have ended already) wakes it.
        submitter.changed.wait(BUSY_PAUSE_S if busy(reports) else ctx.settings.poll_interval_s)
        submitter.changed.clear()


def _due(reported_at: float) -> bool:
    return time.monotonic() - reported_at >= REPORT_IDLE_S


def settled(report: JobReport) -> bool:
    """The job is over and nothing of it is in flight any more."""
    return report.job.status in SETTLED_JOB_STATUSES and _settled(report)


def _settled(report: JobReport) -> bool:
    """No batch of the job is still in flight (a canceled job waits for its cancels)."""
    return report.count_batches(IN_FLIGHT_BATCH_STATUSES) == 0
