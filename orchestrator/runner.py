"""Wiring shared by the CLI commands: open the store and the API, drive a job.

``drive`` is the foreground loop of ``orchestrator run``: the same steps the
daemon runs, in a loop, until every item of the job is terminal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from orchestrator.api.client import BatchesClient
from orchestrator.domain.states import (
    IN_FLIGHT_BATCH_STATUSES,
    SETTLED_JOB_STATUSES,
    BatchStatus,
)
from orchestrator.settings import Settings
from orchestrator.steps import StepContext, StepReport, run_cycle
from orchestrator.store.queries import Store
from orchestrator.store.records import JobReport

#: Pause between cycles that did something other than polling.
BUSY_PAUSE_S = 0.05

log = logging.getLogger("orchestrator")


def make_client(settings: Settings) -> BatchesClient:
    return BatchesClient(
        api_key=settings.require_api_key(),
        base_url=settings.base_url,
        api_version=settings.api_version,
        timeout_s=settings.request_timeout_s,
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
    """A store at head plus an API client, both closed on exit."""
    with open_store(settings) as store, make_client(settings) as api:
        ctx = StepContext(store=store, api=api, settings=settings)
        if settings.worker_id:
            ctx.owner = settings.worker_id
        yield ctx


def busy(reports: list[StepReport]) -> bool:
    """Did this cycle do anything besides polling batches that are still running?"""
    return any(r.work for r in reports if r.step != "poll") or any(
        r.details.get(BatchStatus.ENDED) for r in reports
    )


def drive(
    ctx: StepContext,
    job_id: int,
    on_progress: Callable[[JobReport], None],
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> JobReport:
    """Run cycles until the job is done or canceled; returns the final report."""
    while True:
        reports = run_cycle(ctx, should_stop)
        report = ctx.store.job_report(job_id)
        on_progress(report)
        if report.job.status in SETTLED_JOB_STATUSES and _settled(report):
            return report
        if should_stop():
            return report
        time.sleep(BUSY_PAUSE_S if busy(reports) else ctx.settings.poll_interval_s)


def _settled(report: JobReport) -> bool:
    """No batch of the job is still in flight (a canceled job waits for its cancels)."""
    return report.count_batches(IN_FLIGHT_BATCH_STATUSES) == 0
