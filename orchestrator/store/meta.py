"""Store-wide facts: the tag that prefixes every custom_id, and the shared API back-off."""

from __future__ import annotations

import secrets
import string
from datetime import datetime, timedelta

from sqlalchemy import select, update

from orchestrator.store._sql import StoreBase, count
from orchestrator.store.records import BackoffState
from orchestrator.store.tables import ApiBackoff, Batch, Job, Meta

STORE_TAG_CHARS = string.ascii_lowercase + string.digits
STORE_TAG_LEN = 6


class MetaOps(StoreBase):
    def store_tag(self) -> str:
        """A short random tag, made once per store, that prefixes every custom_id.

        It proves a result line is ours: batches created by another store or tool
        in the same workspace carry other custom_ids.
        """
        if self._tag is None:
            with self._tx() as s:
                tag = "".join(secrets.choice(STORE_TAG_CHARS) for _ in range(STORE_TAG_LEN))
                stmt = self._insert(Meta).values(key="store_tag", value=tag)
                s.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
                self._tag = s.execute(
                    select(Meta.value).where(Meta.key == "store_tag")
                ).scalar_one()
        return self._tag

    def lease_holders(self, now: datetime) -> set[str]:
        """Workers holding an unexpired lease on a job or a batch."""
        with self._tx() as s:
            holders: set[str] = set()
            for model in (Job, Batch):
                rows = s.execute(
                    select(model.lease_owner)
                    .where(model.lease_owner.is_not(None), model.lease_expires_at > now)
                    .distinct()
                ).scalars()
                holders.update(owner for owner in rows if owner is not None)
            return holders

    def release_holder(self, owner: str) -> int:
        """Free every lease ``owner`` holds (it is gone); returns how many rows."""
        with self._tx() as s:
            freed = 0
            for model in (Job, Batch):
                freed += count(
                    s.execute(
                        update(model)
                        .where(model.lease_owner == owner)
                        .values(lease_owner=None, lease_expires_at=None)
                    )
                )
            return freed

    def renew_leases(self, owner: str, now: datetime, ttl_s: float) -> int:
        """Extend every lease ``owner`` still holds (a heartbeat); returns how many rows."""
        until = now + timedelta(seconds=ttl_s)
        with self._tx() as s:
            renewed = 0
            for model in (Job, Batch):
                renewed += count(
                    s.execute(
                        update(model)
                        .where(model.lease_owner == owner, model.lease_expires_at.is_not(None))
                        .values(lease_expires_at=until)
                    )
                )
            return renewed

    def backoff_until(self, scope: str) -> datetime | None:
        state = self.backoff(scope)
        return None if state is None else state.until

    def backoff(self, scope: str) -> BackoffState | None:
        """The shared back-off for ``scope``, with the reason it was set."""
        with self._tx() as s:
            row = s.execute(
                select(ApiBackoff.backoff_until, ApiBackoff.reason).where(ApiBackoff.scope == scope)
            ).first()
            return None if row is None else BackoffState(row[0], row[1] or "")

    def set_backoff(self, scope: str, until: datetime, reason: str) -> None:
        """Make every daemon on this store wait until ``until`` before calling the API."""
        with self._tx() as s:
            stmt = self._insert(ApiBackoff).values(scope=scope, backoff_until=until, reason=reason)
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=["scope"], set_={"backoff_until": until, "reason": reason}
                )
            )
