"""Planning: which items wait for a batch, the response cache, and recording a planned batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from orchestrator.domain.states import BatchStatus, ItemStatus, JobStatus, ResultType
from orchestrator.store._sql import LostRace, StoreBase, count, held, lease_free, lock_active_job
from orchestrator.store.records import Lease, PendingItem, PlannedRequest
from orchestrator.store.tables import Batch, BatchRequest, Item, Job, Result

#: Requests written per statement when a batch is recorded (bounded parameter lists).
PLAN_WRITE_ROWS = 5000

_PENDING = aliased(Item, name="pending_item")
_ITEMS: Table = Item.__table__  # type: ignore[assignment]


class PlanningOps(StoreBase):
    def jobs_with_pending_items(self, job_id: int | None = None) -> list[int]:
        with self._tx() as s:
            query = (
                select(Item.job_id)
                .join(Job, Job.id == Item.job_id)
                .where(Item.status == ItemStatus.PENDING, Job.status == JobStatus.ACTIVE)
                .distinct()
            )
            if job_id is not None:
                query = query.where(Item.job_id == job_id)
            return list(s.execute(query).scalars())

    def claim_job(self, job_id: int, owner: str, now: datetime, ttl_s: float) -> Lease | None:
        """Lease a job for planning, so two daemons never plan the same items."""
        with self._tx() as s:
            row = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.ACTIVE, lease_free(Job, now))
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=ttl_s),
                    lease_version=Job.lease_version + 1,
                )
                .returning(Job.lease_version)
            ).first()
            return Lease(job_id, owner, int(row[0])) if row else None

    def release_job(self, lease: Lease) -> None:
        with self._tx() as s:
            s.execute(
                update(Job).where(held(Job, lease)).values(lease_owner=None, lease_expires_at=None)
            )

    def apply_response_cache(self, job_id: int, now: datetime, endpoint: str) -> tuple[int, float]:
        """Answer never-sent items whose exact request already succeeded in this store.

        The same request means the same params, sent to the same ``endpoint`` under
        the same API version: an answer from a simulator never stands in for the
        real API's, nor one from another version's rules. An answer that did not match
        the job's output schema is never reused.
        Returns (items answered now, USD the cache has saved this job so far).
        """
        with self._tx() as s:
            api_version, output_mode = s.execute(
                select(Job.api_version, Job.output_mode).where(Job.id == job_id)
            ).one()
            # An answer that missed its schema is no answer; a job with [output] needs
            # one that was read against it (the schema is in the params, so the same).
            usable = [Result.output_error.is_(None)]
            if output_mode is not None:
                usable.append(Result.output.is_not(None))
            source_job = aliased(Job, name="source_job")
            source = (
                select(func.min(Result.id))
                .join(Item, Item.id == Result.item_id)
                .join(Batch, Batch.id == Result.batch_id)
                .join(source_job, source_job.id == Item.job_id)
                .where(
                    Result.result_type == ResultType.SUCCEEDED,
                    Item.params_hash == _PENDING.params_hash,
                    Batch.endpoint == endpoint,
                    source_job.api_version == api_version,
                    *usable,
                )
                .correlate(_PENDING)
                .scalar_subquery()
            )
            rows = s.execute(
                select(_PENDING.id, source).where(
                    _PENDING.job_id == job_id,
                    _PENDING.status == ItemStatus.PENDING,
                    _PENDING.attempts == 0,
                )
            ).all()
            hits = [{"item": i, "result": r} for i, r in rows if r is not None]
            if hits:
                s.connection().execute(
                    _ITEMS.update()
                    .where(_ITEMS.c.id == bindparam("item"), _ITEMS.c.status == ItemStatus.PENDING)
                    .values(
                        status=ItemStatus.SUCCEEDED,
                        final_result_id=bindparam("result"),
                        cached=True,
                        updated_at=now,
                    ),
                    hits,
                )
            # The job's totals are derived from its cached items (one join, no id list
            # that could outgrow a backend's bind-parameter limit).
            total_hits, total_saved = s.execute(
                select(func.count(), func.coalesce(func.sum(Result.cost_usd), 0.0))
                .select_from(Item)
                .join(Result, Result.id == Item.final_result_id)
                .where(Item.job_id == job_id, Item.cached.is_(True))
            ).one()
            s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(cache_hits=int(total_hits), cache_saved_usd=float(total_saved or 0.0))
            )
            return len(hits), float(total_saved or 0.0)

    def pending_items(self, job_id: int, after_id: int, limit: int) -> list[PendingItem]:
        """Pending items of a job in id order, one keyset page at a time."""
        with self._tx() as s:
            rows = s.execute(
                select(Item.id, Item.attempts, Item.params)
                .where(Item.job_id == job_id, Item.status == ItemStatus.PENDING, Item.id > after_id)
                .order_by(Item.id)
                .limit(limit)
            ).all()
            return [PendingItem(r.id, r.attempts, r.params) for r in rows]

    def add_planned_batch(
        self, lease: Lease, requests: Sequence[PlannedRequest], body_bytes: int, now: datetime
    ) -> int | None:
        """Record a planned batch and move its items to ``queued``.

        None when the job lease was lost or an item is no longer pending.
        """
        try:
            return self._add_planned_batch(lease, requests, body_bytes, now)
        except LostRace:
            return None

    def _add_planned_batch(
        self, lease: Lease, requests: Sequence[PlannedRequest], body_bytes: int, now: datetime
    ) -> int:
        with self._tx() as s:
            if not lock_active_job(s, lease.row_id):
                raise LostRace
            if not s.execute(select(Job.id).where(held(Job, lease))).first():
                raise LostRace
            batch = Batch(
                job_id=lease.row_id,
                status=BatchStatus.PLANNED,
                request_count=len(requests),
                body_bytes=body_bytes,
                created_at=now,
                updated_at=now,
            )
            s.add(batch)
            s.flush()
            moved = 0
            # Chunked so a 100,000-request batch never builds 100,000 parameter dicts at once.
            for start in range(0, len(requests), PLAN_WRITE_ROWS):
                chunk = requests[start : start + PLAN_WRITE_ROWS]
                moved += _queue_requests(s, batch.id, chunk, now)
            if moved != len(requests):
                raise LostRace
            return batch.id


def _queue_requests(
    s: Session, batch_id: int, chunk: Sequence[PlannedRequest], now: datetime
) -> int:
    s.execute(insert(BatchRequest), [_request_row(batch_id, r) for r in chunk])
    return count(
        s.connection().execute(
            _ITEMS.update()
            .where(_ITEMS.c.id == bindparam("item"), _ITEMS.c.status == ItemStatus.PENDING)
            .values(
                status=ItemStatus.QUEUED,
                batch_id=batch_id,
                attempts=bindparam("attempt"),
                custom_id=bindparam("cid"),
                updated_at=now,
            ),
            [{"item": r.item_id, "attempt": r.attempt, "cid": r.custom_id} for r in chunk],
        )
    )


def _request_row(batch_id: int, request: PlannedRequest) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "item_id": request.item_id,
        "attempt": request.attempt,
        "custom_id": request.custom_id,
    }
