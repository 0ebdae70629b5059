"""Planning: which items wait for a batch, the response cache, and recording a planned batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import String, Table, cast, func, literal, select, update
from sqlalchemy.orm import Session, aliased

from orchestrator.domain.planning import parse_custom_id
from orchestrator.domain.states import BatchStatus, ItemStatus, JobStatus, ResultType
from orchestrator.store._sql import LostRace, StoreBase, count, held, lease_free, lock_active_job
from orchestrator.store.records import Lease, PendingItem, PlannedRequest
from orchestrator.store.tables import Batch, BatchRequest, Item, Job, Result

#: Requests written per statement when a batch is recorded (bounded parameter lists).
PLAN_WRITE_ROWS = 5000

_ITEMS: Table = Item.__table__  # type: ignore[assignment]
_REQUESTS: Table = BatchRequest.__table__  # type: ignore[assignment]
#: A leader's outcomes its followers take (``dedupe``): every finished one.
_SHARED_STATUSES = (ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.CANCELED)


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

        Set-based, in a fixed number of statements: the distinct params of the job's
        never-sent items are looked up once each (grouped), and every item is answered
        with one UPDATE ... FROM, so 100,000 items with identical params cost what one
        does (it was one correlated lookup per item, quadratic in repeats).
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
            wanted = (
                select(_ITEMS.c.params_hash)
                .where(
                    _ITEMS.c.job_id == job_id,
                    _ITEMS.c.status == ItemStatus.PENDING,
                    _ITEMS.c.attempts == 0,
                )
                .distinct()
            )
            source_job = aliased(Job, name="source_job")
            sources = (
                select(Item.params_hash, func.min(Result.id).label("result_id"))
                .join(Item, Item.id == Result.item_id)
                .join(Batch, Batch.id == Result.batch_id)
                .join(source_job, source_job.id == Item.job_id)
                .where(
                    Result.result_type == ResultType.SUCCEEDED,
                    Item.params_hash.in_(wanted),
                    Batch.endpoint == endpoint,
                    source_job.api_version == api_version,
                    *usable,
                )
                .group_by(Item.params_hash)
                .subquery("sources")
            )
            hits = count(
                s.connection().execute(
                    _ITEMS.update()
                    .where(
                        _ITEMS.c.job_id == job_id,
                        _ITEMS.c.status == ItemStatus.PENDING,
                        _ITEMS.c.attempts == 0,
                        _ITEMS.c.params_hash == sources.c.params_hash,
                    )
                    .values(
                        status=ItemStatus.SUCCEEDED,
                        final_result_id=sources.c.result_id,
                        cached=True,
                        updated_at=now,
                    )
                )
            )
            return hits, _cache_totals(s, job_id)

    def share_leaders_outcomes(self, job_id: int, now: datetime) -> int:
        """Items that follow another (``dedupe``) take their leader's outcome once the
        leader is finished: its answer (counted as a cache hit), or its failure. One
        UPDATE ... FROM per call. Returns how many items were finished."""
        leader = _ITEMS.alias("leader")
        with self._tx() as s:
            shared = count(
                s.connection().execute(
                    _ITEMS.update()
                    .where(
                        _ITEMS.c.job_id == job_id,
                        _ITEMS.c.status == ItemStatus.PENDING,
                        _ITEMS.c.leader_id == leader.c.id,
                        leader.c.status.in_(_SHARED_STATUSES),
                    )
                    .values(
                        status=leader.c.status,
                        final_result_id=leader.c.final_result_id,
                        cached=leader.c.status == ItemStatus.SUCCEEDED,
                        error_type=leader.c.error_type,
                        error_message=leader.c.error_message,
                        updated_at=now,
                    )
                )
            )
            if shared:
                _cache_totals(s, job_id)
            return shared

    def pending_items(self, job_id: int, after_id: int, limit: int) -> list[PendingItem]:
        """Pending items of a job in id order, one keyset page at a time; an item that
        follows another with the same params (``dedupe``) waits for its outcome instead."""
        with self._tx() as s:
            rows = s.connection().execute(
                select(_ITEMS.c.id, _ITEMS.c.attempts, _ITEMS.c.params)
                .where(
                    _ITEMS.c.job_id == job_id,
                    _ITEMS.c.status == ItemStatus.PENDING,
                    _ITEMS.c.leader_id.is_(None),
                    _ITEMS.c.id > after_id,
                )
                .order_by(_ITEMS.c.id)
                .limit(limit)
            )
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
            parts = parse_custom_id(requests[0].custom_id) if requests else None
            tag = parts.store_tag if parts is not None else ""
            # Chunked so no statement carries more ids than a backend binds at once.
            for start in range(0, len(requests), PLAN_WRITE_ROWS):
                chunk = requests[start : start + PLAN_WRITE_ROWS]
                moved += _queue_requests(s, batch.id, chunk, tag, now)
            if moved != len(requests):
                raise LostRace
            return batch.id


def _queue_requests(
    s: Session, batch_id: int, chunk: Sequence[PlannedRequest], tag: str, now: datetime
) -> int:
    """Write a chunk of the batch's requests and move their items into it: one UPDATE
    per attempt number over an id list (not one statement per item), the custom_id
    computed in SQL from each row exactly as ``make_custom_id`` makes it (the attempt
    is in the WHERE, so an item whose attempts changed since it was read is not moved,
    and the caller's count check rolls the batch back)."""
    # The requests in the order planned (the body's order), Core executemany.
    s.connection().execute(
        _REQUESTS.insert(),
        [
            {
                "batch_id": batch_id,
                "item_id": r.item_id,
                "attempt": r.attempt,
                "custom_id": r.custom_id,
            }
            for r in chunk
        ],
    )
    moved = 0
    by_attempt: dict[int, list[int]] = {}
    for request in chunk:
        by_attempt.setdefault(request.attempt, []).append(request.item_id)
    custom_id = (
        literal(f"{tag}-")
        + cast(_ITEMS.c.id, String)
        + literal("-")
        + cast(_ITEMS.c.attempts + 1, String)
    )
    for attempt, ids in by_attempt.items():
        moved += count(
            s.connection().execute(
                _ITEMS.update()
                .where(
                    _ITEMS.c.id.in_(ids),
                    _ITEMS.c.status == ItemStatus.PENDING,
                    _ITEMS.c.attempts == attempt - 1,
                )
                .values(
                    status=ItemStatus.QUEUED,
                    batch_id=batch_id,
                    attempts=_ITEMS.c.attempts + 1,
                    custom_id=custom_id,
                    updated_at=now,
                )
            )
        )
    return moved


def _cache_totals(s: Session, job_id: int) -> float:
    """Recount the job's cache totals from its cached items (one join, no id list that
    could outgrow a backend's bind-parameter limit). Returns the USD saved."""
    total_hits, total_saved = s.execute(
        select(func.count(), func.coalesce(func.sum(Result.cost_usd), 0.0))
        .select_from(Item)
        .join(Result, Result.id == Item.final_result_id)
        .where(Item.job_id == job_id, Item.cached.is_(True))
    ).one()
    saved = float(total_saved or 0.0)
    s.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(cache_hits=int(total_hits), cache_saved_usd=saved)
    )
    return saved
