"""Read-only views of a job for people: its report, and its final results for export."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from orchestrator.domain.states import (
    REMOTE_BATCH_STATUSES,
    TERMINAL_ITEM_STATUSES,
    BatchStatus,
    DuplicateStatus,
    ItemStatus,
    ResultType,
)
from orchestrator.store._sql import StoreBase, job_record
from orchestrator.store.records import FailureGroup, FinishedItem, JobReport
from orchestrator.store.tables import Batch, DuplicateBatch, Item, Job, Quarantine, Result

#: Rows of ``final_results`` read per transaction while exporting.
EXPORT_PAGE_ROWS = 1000


class ReportOps(StoreBase):
    def job_report(self, job_id: int) -> JobReport:
        with self._read() as s:  # one snapshot, no write lock: run makes one each cycle
            job = job_record(s.get_one(Job, job_id))
            items = s.execute(
                select(Item.status, func.count()).where(Item.job_id == job_id).group_by(Item.status)
            ).all()
            batches = s.execute(
                select(Batch.status, func.count())
                .where(Batch.job_id == job_id)
                .group_by(Batch.status)
            ).all()
            # The results are read once: counts, sums and invalid answers by type.
            results = s.execute(
                select(
                    Result.result_type,
                    func.count(),
                    func.coalesce(func.sum(Result.cost_usd), 0.0),
                    func.coalesce(func.sum(Result.input_tokens), 0),
                    func.coalesce(func.sum(Result.output_tokens), 0),
                    func.count(Result.output_error),
                )
                .join(Batch, Batch.id == Result.batch_id)
                .where(Batch.job_id == job_id)
                .group_by(Result.result_type)
            ).all()
            retried = s.execute(
                select(func.count()).where(Item.job_id == job_id, Item.attempts > 1)
            ).scalar_one()
            quarantined = s.execute(
                select(func.count())
                .select_from(Quarantine)
                .join(Batch, Batch.id == Quarantine.batch_id)
                .where(Batch.job_id == job_id)
            ).scalar_one()
            sent = s.execute(
                select(func.coalesce(func.sum(Batch.request_count), 0)).where(
                    Batch.job_id == job_id, Batch.status.in_(REMOTE_BATCH_STATUSES)
                )
            ).scalar_one()
            unsent_queued = s.execute(
                select(func.count())
                .select_from(Item)
                .join(Batch, Batch.id == Item.batch_id)
                .where(
                    Item.job_id == job_id,
                    Item.status == ItemStatus.QUEUED,
                    Batch.status.not_in(REMOTE_BATCH_STATUSES),
                )
            ).scalar_one()
            duplicates = s.execute(
                select(func.coalesce(func.sum(DuplicateBatch.paid_requests), 0))
                .join(Batch, Batch.id == DuplicateBatch.batch_id)
                .where(Batch.job_id == job_id, DuplicateBatch.status == DuplicateStatus.OURS)
            ).scalar_one()
            item_counts = {ItemStatus(k): int(v) for k, v in items}
            return JobReport(
                job=job,
                items=item_counts,
                batches={BatchStatus(k): int(v) for k, v in batches},
                results={ResultType(r[0]): int(r[1]) for r in results},
                retried_items=int(retried),
                cost_usd=math.fsum(float(r[2] or 0.0) for r in results),
                input_tokens=sum(int(r[3] or 0) for r in results),
                output_tokens=sum(int(r[4] or 0) for r in results),
                quarantined=int(quarantined),
                invalid_answers=sum(int(r[5]) for r in results),
                duplicate_requests=int(duplicates),
                sent_requests=int(sent),
                unsent_requests=item_counts.get(ItemStatus.PENDING, 0) + int(unsent_queued),
                failures=_failure_groups(s, job_id),
            )

    def finished_items(self, job_id: int, since: datetime | None) -> Iterator[FinishedItem]:
        """Items of the job in a final state, changed at or after ``since`` (None: all),
        streamed in keyset pages."""
        after = 0
        while True:
            with self._tx() as s:
                query = (
                    select(
                        Item.id,
                        Item.ordinal,
                        Item.key,
                        Item.status,
                        Item.attempts,
                        Item.error_type,
                    )
                    .where(
                        Item.job_id == job_id,
                        Item.status.in_(TERMINAL_ITEM_STATUSES),
                        Item.id > after,
                    )
                    .order_by(Item.id)
                    .limit(EXPORT_PAGE_ROWS)
                )
                if since is not None:
                    query = query.where(Item.updated_at >= since)
                rows = s.execute(query).all()
            if not rows:
                return
            for r in rows:
                yield FinishedItem(
                    int(r.id), int(r.ordinal), r.key, ItemStatus(r.status), r.attempts, r.error_type
                )
            after = int(rows[-1].id)

    def final_results(self, job_id: int) -> Iterator[dict[str, Any]]:
        """Rows of the ``final_results`` view for a job, streamed in ordinal order."""
        after = -1
        while True:
            with self._tx() as s:
                rows = (
                    s.execute(
                        text(
                            "SELECT * FROM final_results WHERE job_id = :job AND ordinal > :after "
                            "ORDER BY ordinal LIMIT :n"
                        ),
                        {"job": job_id, "after": after, "n": EXPORT_PAGE_ROWS},
                    )
                    .mappings()
                    .all()
                )
            if not rows:
                return
            for row in rows:
                yield dict(row)
            after = int(rows[-1]["ordinal"])


def _failure_groups(s: Session, job_id: int) -> tuple[FailureGroup, ...]:
    """Failed items by error type, most frequent first, with one example message each."""
    rows = s.execute(
        select(Item.error_type, func.count(), func.min(Item.error_message))
        .where(Item.job_id == job_id, Item.status == ItemStatus.FAILED)
        .group_by(Item.error_type)
        .order_by(func.count().desc(), Item.error_type)
    ).all()
    return tuple(
        FailureGroup(kind or "unspecified", int(n), example or "") for kind, n, example in rows
    )
