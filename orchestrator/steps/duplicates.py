"""Duplicates of a lost create: other listed batches that matched it, settled by their
results once they end.

When a lost create matches several listed batches, the closest is adopted and
the others are watched (``duplicate_batches``). While the adoption is tentative a
watched batch may still turn out to be the create's real one (``steps.ingest``
switches to it), so it is settled only once the batch's own remote batch is
proven. Then a watched batch whose results carry the batch's requests is a
billed duplicate: its results are stored beside the batch's (each request's
first stored result wins) and its succeeded requests are reported as duplicate
spend. Otherwise it was somebody else's and nothing of it is kept.

Watched batches are never canceled while they run: until their results are read
nobody can tell whose they are, and canceling another store's batch would
destroy its work.
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.api.models import parse_result_line
from orchestrator.chunking import chunked
from orchestrator.domain.states import DuplicateStatus, ProcessingStatus, ResultType
from orchestrator.errors import APIError, NotFoundError
from orchestrator.steps.context import StepContext, StepReport, log
from orchestrator.steps.ingest import result_row

#: Watched batches looked at per run of the ingest step.
DUPLICATES_PER_RUN = 4


def duplicates(ctx: StepContext, now: datetime) -> StepReport:  # noqa: ARG001 - a step
    """Settle watched duplicates that ended (a few per run)."""
    report = StepReport("duplicates")
    for remote_id, batch_id in ctx.store.watched_duplicates(ctx.job_id)[:DUPLICATES_PER_RUN]:
        try:
            settled = _settle(ctx, remote_id, batch_id)
        except APIError as exc:  # look again next cycle
            log.info("duplicate %s of batch %s: not settled yet (%s)", remote_id, batch_id, exc)
            continue
        if settled is not None:
            report.add(f"duplicate_{settled}")
    return report


def _settle(ctx: StepContext, remote_id: str, batch_id: int) -> DuplicateStatus | None:
    try:
        remote = ctx.api.retrieve(remote_id)
    except NotFoundError:
        ctx.store.settle_duplicate(remote_id, DuplicateStatus.FOREIGN, 0)
        return DuplicateStatus.FOREIGN
    if remote.processing_status != ProcessingStatus.ENDED:
        return None
    paid = None if remote.results_url is None else _read(ctx, batch_id, remote.results_url)
    status = DuplicateStatus.FOREIGN if paid is None else DuplicateStatus.OURS
    ctx.store.settle_duplicate(remote_id, status, paid or 0)
    if paid is not None:
        log.warning(
            "batch %s: listed batch %s proved a duplicate of it; %s request(s) were billed twice",
            batch_id,
            remote_id,
            paid,
        )
    return status


def _read(ctx: StepContext, batch_id: int, results_url: str) -> int | None:
    """Store a duplicate's results if they are ours; returns how many succeeded (billed),
    or None when its first lines hold none of the batch's requests."""
    paid = 0
    with ctx.api.results_lines(results_url) as lines:
        for index, chunk in enumerate(chunked(lines, ctx.settings.ingest_chunk_rows)):
            parsed = []
            for raw in chunk:
                try:
                    parsed.append(parse_result_line(raw))
                except ValueError:
                    continue
            routes = ctx.store.route_custom_ids(batch_id, [line.custom_id for line in parsed])
            rows = [
                result_row(batch_id, routes[line.custom_id], line, ctx.prices)
                for line in parsed
                if line.custom_id in routes
            ]
            if index == 0 and not rows:
                return None
            ctx.store.store_duplicate_results(rows)
            paid += sum(1 for row in rows if row.result_type is ResultType.SUCCEEDED)
    return paid
