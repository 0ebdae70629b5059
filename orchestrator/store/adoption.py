"""Adoption: which remote batch a lost create made, proven by the results.

A create whose answer was lost is matched by listing (``steps.recover``): the
closest listed batch is adopted *tentatively* and the other matches are watched
(``duplicate_batches``). The results settle it: lines that route to the batch's
own requests prove the adoption; lines that are another local batch's requests
hand the remote batch to that batch; lines of another store make it foreign.

Every remote batch this store knows is *claimed*: held by a batch row, watched
for one, or foreign (:meth:`AdoptionOps.remote_claims`). A claim is settled
(proven) unless it is a tentative adoption or a watch; an unsettled claim made
after a create's intent could still be that create's batch, so its
reconciliation waits for the proof instead of guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from orchestrator.domain.states import (
    FINAL_BATCH_STATUSES,
    BatchStatus,
    DuplicateStatus,
)
from orchestrator.store._sql import REMOTE_BATCH_COLUMNS, StoreBase, count, held
from orchestrator.store.records import Claim, Lease
from orchestrator.store.tables import Batch, BatchRequest, DuplicateBatch, ForeignBatch

#: Local batches that can take a remote batch proven theirs as their own.
_CAN_ADOPT = (BatchStatus.UNKNOWN, BatchStatus.PLANNED)


def proven(model: Any = Batch) -> Any:
    """A batch row's remote batch is known to be its own: its create returned it, or
    (adopted) its results proved it; or the batch is over either way."""
    return or_(
        model.adopted.is_(False),
        model.proven_at.is_not(None),
        model.status.in_(FINAL_BATCH_STATUSES),
    )


class _Blocked(Exception):
    """The disowned batch can neither go back in flight nor try another match."""


class AdoptionOps(StoreBase):
    # -- claims ------------------------------------------------------------------------

    def remote_claims(self) -> dict[str, Claim]:
        """Every remote batch this store holds, watches or knows to be foreign."""
        claims: dict[str, Claim] = {}
        with self._tx() as s:
            for remote_id, batch_id, since in s.execute(
                select(
                    DuplicateBatch.remote_id, DuplicateBatch.batch_id, DuplicateBatch.found_at
                ).where(DuplicateBatch.status == DuplicateStatus.WATCHING)
            ):
                claims[str(remote_id)] = Claim(int(batch_id), since, settled=False)
            held_rows = s.execute(
                select(
                    Batch.remote_id,
                    Batch.id,
                    Batch.submitted_at,
                    proven().label("settled"),
                ).where(Batch.remote_id.is_not(None))
            )
            for remote_id, batch_id, since, settled in held_rows:
                claims[str(remote_id)] = Claim(int(batch_id), since, settled=bool(settled))
            for remote_id in s.execute(select(ForeignBatch.remote_id)).scalars():
                claims[str(remote_id)] = Claim(None, None, settled=True)
        return claims

    def foreign_remote_ids(self) -> set[str]:
        """Remote batches proven to belong to somebody else (never adopted again)."""
        with self._tx() as s:
            return set(s.execute(select(ForeignBatch.remote_id)).scalars())

    def batch_of_requests(self, custom_ids: Sequence[str]) -> int | None:
        """The local batch holding most of these custom_ids as requests (None: none)."""
        if not custom_ids:
            return None
        with self._tx() as s:
            found = s.execute(
                select(BatchRequest.batch_id, func.count().label("n"))
                .where(BatchRequest.custom_id.in_(list(set(custom_ids))))
                .group_by(BatchRequest.batch_id)
                .order_by(func.count().desc(), BatchRequest.batch_id)
                .limit(1)
            ).first()
            return None if found is None else int(found.batch_id)

    # -- proof -------------------------------------------------------------------------

    def prove_adoption(self, lease: Lease, now: datetime) -> bool:
        """The adopted batch's results route to its own requests: it is this batch's."""
        with self._tx() as s:
            res = s.execute(
                update(Batch)
                .where(held(Batch, lease), Batch.adopted.is_(True), Batch.proven_at.is_(None))
                .values(proven_at=now, updated_at=now)
            )
            return count(res) == 1

    def disown(
        self, lease: Lease, reason: str, now: datetime, *, owner: int | None = None
    ) -> BatchStatus | None:
        """The adopted remote batch proved not this batch's: its results hold none of
        its requests.

        ``owner`` None: it is somebody else's, remembered as foreign (never a match
        again; committed on its own, so no other create waits on it even when this
        batch can't move yet). Otherwise it is ``owner``'s, another batch of this
        store: an unknown or planned ``owner`` adopts it (nothing is sent twice), any
        other watches it as a billed duplicate.

        This batch becomes an unknown create again, to be reconciled without it; if
        another create of its job or request count is in flight, it tries the next
        match it watches instead. Its items stay queued: none fails, none is sent
        twice. Returns its new status (``unknown``, or ``in_progress`` with the next
        match); None (nothing changed here) when the lease moved on, or the batch can
        do neither yet: the caller tries again later.
        """
        with self._tx() as s:
            remote_id = s.execute(
                select(Batch.remote_id).where(held(Batch, lease), Batch.adopted.is_(True))
            ).scalar()
            if remote_id is None:
                return None
            if owner is None:
                s.execute(
                    self._insert(ForeignBatch)
                    .values(remote_id=remote_id, batch_id=lease.row_id, reason=reason)
                    .on_conflict_do_nothing(index_elements=["remote_id"])
                )
        for back_in_flight in (True, False):
            try:
                with self._tx() as s:
                    return self._disown(s, lease, remote_id, reason, now, owner, back_in_flight)
            except (IntegrityError, _Blocked):
                continue
        return None

    def _disown(
        self,
        s: Session,
        lease: Lease,
        remote_id: str,
        reason: str,
        now: datetime,
        owner: int | None,
        back_in_flight: bool,
    ) -> BatchStatus | None:
        row = s.execute(
            select(Batch)
            .where(held(Batch, lease), Batch.adopted.is_(True), Batch.remote_id == remote_id)
            .with_for_update()
        ).scalar_one_or_none()
        if row is None:
            return None
        taken = {c: getattr(row, c) for c in REMOTE_BATCH_COLUMNS}
        taken.update(status=row.status, submitted_at=row.submitted_at)
        following = None if back_in_flight else self._next_watched(s, row.id)
        # The remote batch is let go of first: a remote id is held by one row at most.
        s.execute(
            update(Batch)
            .where(Batch.id == row.id)
            .values(
                status=BatchStatus.PLANNED,
                remote_id=None,
                adopted=False,
                proven_at=None,
                ingest_attempts=0,
                next_attempt_at=None,
                last_error=reason,
                updated_at=now,
                **dict.fromkeys(REMOTE_BATCH_COLUMNS),
            )
        )
        if owner is not None:
            self._hand_over(s, owner, remote_id, taken, now)
        if following is None:
            s.execute(update(Batch).where(Batch.id == row.id).values(status=BatchStatus.UNKNOWN))
            return BatchStatus.UNKNOWN
        next_id, since = following
        s.execute(
            update(Batch)
            .where(Batch.id == row.id)
            .values(
                status=BatchStatus.IN_PROGRESS, remote_id=next_id, adopted=True, submitted_at=since
            )
        )
        s.execute(delete(DuplicateBatch).where(DuplicateBatch.remote_id == next_id))
        return BatchStatus.IN_PROGRESS

    def _next_watched(self, s: Session, batch_id: int) -> tuple[str, datetime]:
        found = s.execute(
            select(DuplicateBatch.remote_id, DuplicateBatch.found_at)
            .where(
                DuplicateBatch.batch_id == batch_id,
                DuplicateBatch.status == DuplicateStatus.WATCHING,
                DuplicateBatch.remote_id.not_in(select(ForeignBatch.remote_id)),
            )
            .order_by(DuplicateBatch.found_at, DuplicateBatch.remote_id)
            .limit(1)
        ).first()
        if found is None:
            raise _Blocked
        return str(found.remote_id), found.found_at

    def _hand_over(
        self, s: Session, owner: int, remote_id: str, taken: dict[str, Any], now: datetime
    ) -> None:
        """Give ``remote_id`` (proven ``owner``'s) to ``owner``: adopted, or watched as
        its duplicate when it already has (or is getting) a batch of its own."""
        adopted = s.execute(
            update(Batch)
            .where(
                Batch.id == owner,
                Batch.status.in_(_CAN_ADOPT),
                Batch.cancel_requested.is_(False),
            )
            .values(
                remote_id=remote_id,
                adopted=True,
                proven_at=now,  # its results were just read: they are this batch's requests
                reconcile_until=None,
                next_attempt_at=None,
                last_error=None,
                updated_at=now,
                **taken,
            )
        )
        if count(adopted) == 1:
            s.execute(delete(DuplicateBatch).where(DuplicateBatch.remote_id == remote_id))
            return
        s.execute(
            self._insert(DuplicateBatch)
            .values(
                remote_id=remote_id,
                batch_id=owner,
                status=DuplicateStatus.WATCHING,
                found_at=taken["submitted_at"] or now,
            )
            .on_conflict_do_update(
                index_elements=["remote_id"],
                set_={"batch_id": owner, "status": DuplicateStatus.WATCHING},
            )
        )

    # -- duplicates ----------------------------------------------------------------------

    def add_duplicates(self, batch_id: int, remote_ids: Sequence[str], now: datetime) -> None:
        """Watch other listed batches that matched the same lost create as ``batch_id``."""
        if not remote_ids:
            return
        with self._tx() as s:
            s.execute(
                self._insert(DuplicateBatch)
                .values(
                    [
                        {
                            "remote_id": r,
                            "batch_id": batch_id,
                            "status": DuplicateStatus.WATCHING,
                            "found_at": now,
                        }
                        for r in remote_ids
                    ]
                )
                .on_conflict_do_nothing(index_elements=["remote_id"])
            )

    def watched_duplicates(self, job_id: int | None = None) -> list[tuple[str, int]]:
        """(remote id, local batch id) of the duplicates ready to be settled: those of a
        batch whose own remote batch is proven (until then, a watched one may turn out
        to be the batch's real one)."""
        with self._tx() as s:
            query = (
                select(DuplicateBatch.remote_id, DuplicateBatch.batch_id)
                .join(Batch, Batch.id == DuplicateBatch.batch_id)
                .where(
                    DuplicateBatch.status == DuplicateStatus.WATCHING,
                    Batch.remote_id.is_not(None),
                    proven(),
                )
                .order_by(DuplicateBatch.found_at, DuplicateBatch.remote_id)
            )
            if job_id is not None:
                query = query.where(Batch.job_id == job_id)
            return [(str(r), int(b)) for r, b in s.execute(query).all()]

    def settle_duplicate(self, remote_id: str, status: DuplicateStatus, paid: int) -> bool:
        with self._tx() as s:
            res = s.execute(
                update(DuplicateBatch)
                .where(
                    DuplicateBatch.remote_id == remote_id,
                    DuplicateBatch.status == DuplicateStatus.WATCHING,
                )
                .values(status=status, paid_requests=paid)
            )
            return count(res) == 1
