"""The job aggregate: recording a job with its items, finding it, finishing and canceling it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import Connection, Dialect, Table, delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from orchestrator.chunking import chunked
from orchestrator.domain.planning import (
    BatchPlanner,
    PlannedBatch,
    make_custom_id,
    request_size,
)
from orchestrator.domain.states import (
    CREATE_IN_FLIGHT,
    OPEN_ITEM_STATUSES,
    OPEN_REMOTE_BATCH_STATUSES,
    BatchStatus,
    ItemStatus,
    JobStatus,
)
from orchestrator.errors import JobNotFoundError, SpecError
from orchestrator.store._sql import StoreBase, count, job_record, lock_active_job
from orchestrator.store.bulk import driver_value, insert_values
from orchestrator.store.planning import copy_batch_requests
from orchestrator.store.records import ItemLike, JobRecord, NewJob
from orchestrator.store.tables import Batch, Item, Job
from orchestrator.store.views import create_job_view, free_view_name

_ITEMS: Table = Item.__table__  # type: ignore[assignment]

ITEM_CHUNK_ROWS = 2000


@dataclass(slots=True)
class PlanAtRecord:
    """Ask :meth:`JobOps.create_job` to plan the new job's items into batches as it
    records them (``run``, which plans and sends at once), in the job's transaction:
    each item is written once, already ``queued`` in its batch, rather than recorded
    ``pending`` and rewritten by the plan step a moment later.

    Only an item whose params no item of the store has yet (this job's earlier rows
    included) is planned so: one the response cache might answer, or that repeats an
    earlier row (``dedupe``), is recorded ``pending`` and left to the plan step, which
    decides it as ever. So are the items after the first ``batches`` batches: the
    plan step plans them while those are created (the first create can't start
    before the whole job is recorded, the next ones wait for it anyway). ``planned``
    is filled in: (batch id, requests) of each batch planned here.
    """

    store_tag: str
    batches: int = 1
    planned: list[tuple[int, int]] = field(default_factory=list)


class JobOps(StoreBase):
    def get_job(self, job_id: int) -> JobRecord:
        """The job with this id; ``JobNotFoundError`` if there is none."""
        job = self.find_job_by_id(job_id)
        if job is None:
            raise JobNotFoundError(f"no job with id {job_id} in this store")
        return job

    def find_job_by_id(self, job_id: int) -> JobRecord | None:
        with self._tx() as s:
            row = s.get(Job, job_id)
            return job_record(row) if row else None

    def find_job_by_name(self, name: str) -> JobRecord | None:
        with self._tx() as s:
            row = s.execute(select(Job).where(Job.name == name)).scalar_one_or_none()
            return job_record(row) if row else None

    def list_jobs(self, statuses: Sequence[JobStatus] | None = None) -> list[JobRecord]:
        with self._tx() as s:
            query = select(Job).order_by(Job.id)
            if statuses:
                query = query.where(Job.status.in_(statuses))
            return [job_record(row) for row in s.execute(query).scalars()]

    def job_of_batch(self, batch_id: int) -> JobRecord:
        with self._tx() as s:
            job = s.execute(
                select(Job).join(Batch, Batch.job_id == Job.id).where(Batch.id == batch_id)
            ).scalar_one()
            return job_record(job)

    def create_job(
        self,
        new: NewJob,
        items: Iterable[ItemLike],
        *,
        before_commit: Callable[[int], None] | None = None,
        now: datetime,
        plan: PlanAtRecord | None = None,
    ) -> JobRecord:
        """Record a job and all its items in ONE transaction (with ``plan``, its
        batches too: see :class:`PlanAtRecord`).

        A bad row, a duplicate key or ``before_commit`` (given the item count)
        raising rolls everything back: a rejected spec leaves nothing half-written.
        """
        with self._bulk_tx() as s:
            job = Job(
                status=JobStatus.ACTIVE, created_at=now, updated_at=now, **_new_job_fields(new)
            )
            s.add(job)
            s.flush()
            total = 0
            seen: dict[str, None] = {}
            conn = s.connection()
            fixed = _fixed_values(conn.dialect, job.id, now)
            planner = None if plan is None else _PlanningRecorder(s, job.id, new, plan, now)
            # A key an earlier chunk stored: SQLite's insert refuses it (see
            # ``_keys_refused``); PostgreSQL's COPY would abort the transaction, so the
            # chunk's keys are checked first there (see ``EarlierKeys``).
            sqlite, where = conn.dialect.name == "sqlite", new.spec_path
            earlier = None if sqlite else EarlierKeys()
            for chunk in chunked(items, ITEM_CHUNK_ROWS):
                _check_duplicate_keys(s, job.id, chunk, where, earlier)
                with _keys_refused(conn, job.id, chunk, where) if sqlite else nullcontext():
                    if planner is not None and not planner.done:
                        planner.insert(chunk)
                    else:
                        # Plain tuples at the driver: many rows a statement on SQLite
                        # (each lets go of the GIL while it runs), COPY on PostgreSQL.
                        rows = [_item_values(it, fixed) for it in chunk]
                        insert_values(conn, _ITEMS, _ITEM_COLUMNS, rows, processed=True)
                        del rows
                columns: Sequence[str] = ()
                for it in chunk:
                    if it.columns != columns:  # rows mostly share theirs
                        columns = it.columns
                        seen.update(dict.fromkeys(columns))
                total += len(chunk)
            if planner is not None:
                planner.finish()
            if s.get_bind().dialect.name == "postgresql":
                # Statistics for the new rows before the grouped statements that follow
                # (leaders here, the cache and planning next): without them PostgreSQL
                # may plan a nested loop over 100,000 rows that runs for many minutes.
                # ANALYZE counts this transaction's own inserts and samples a bounded
                # number of rows, so it costs the same on a large table.
                s.execute(text("ANALYZE items"))
            # With every item checked for repeats while it was planned and none found,
            # no two items of the job share their params: there is no leader to choose.
            if new.dedupe and (planner is None or not planner.unrepeated):
                _choose_leaders(s, job.id)
            if before_commit is not None:
                before_commit(total)
            job.items_total = total
            job.input_columns = list(seen)
            job.view_name = free_view_name(s, job.name, job.id)
            s.flush()
            record = job_record(job)
            create_job_view(s.connection(), record)
            return record

    def active_job_ids(self, job_id: int | None = None) -> list[int]:
        with self._tx() as s:
            query = select(Job.id).where(Job.status == JobStatus.ACTIVE)
            if job_id is not None:
                query = query.where(Job.id == job_id)
            return list(s.execute(query).scalars())

    def finish_job_if_done(self, job_id: int, now: datetime) -> bool:
        """Mark an active job done once no item is left that is not terminal.

        Asked after every cycle of ``run``: whether one open item exists, not how many
        (a count reads every item of the job, 10-50 ms a 100,000 on PostgreSQL, dozens
        of times a run). The ``(job_id, status)`` index finds the first one, if any."""
        with self._tx() as s:
            open_item = s.execute(
                select(Item.id)
                .where(Item.job_id == job_id, Item.status.in_(sorted(OPEN_ITEM_STATUSES)))
                .limit(1)
            ).first()
            if open_item is not None:
                return False
            done = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.ACTIVE)
                .values(status=JobStatus.DONE, finished_at=now, updated_at=now)
            )
            return count(done) == 1

    def cancel_job(self, job_id: int, now: datetime) -> int:
        """Cancel a job: nothing new is sent, in-flight batches get a cancel request.

        Returns how many batches will be asked to cancel (creates in flight included).
        """
        with self._tx() as s:
            if not lock_active_job(s, job_id):
                return 0
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.ACTIVE)
                .values(status=JobStatus.CANCELED, canceled_at=now, updated_at=now)
            )
            planned = select(Batch.id).where(
                Batch.job_id == job_id, Batch.status == BatchStatus.PLANNED
            )
            s.execute(
                update(Item)
                .where(
                    Item.job_id == job_id,
                    or_(Item.status == ItemStatus.PENDING, Item.batch_id.in_(planned)),
                )
                .values(status=ItemStatus.CANCELED, batch_id=None, updated_at=now)
            )
            s.execute(delete(Batch).where(Batch.id.in_(planned)))
            flagged = s.execute(
                update(Batch)
                .where(
                    Batch.job_id == job_id,
                    Batch.status.in_(CREATE_IN_FLIGHT | OPEN_REMOTE_BATCH_STATUSES),
                )
                .values(cancel_requested=True, updated_at=now)
            )
            return count(flagged)


def _choose_leaders(s: Session, job_id: int) -> None:
    """Items of this job with identical params follow the first of them (``dedupe``):
    only it is sent, and they take its outcome. One grouped pass over the job's items,
    however many items repeat."""
    groups = (
        select(_ITEMS.c.params_hash, func.min(_ITEMS.c.id).label("leader"))
        .where(_ITEMS.c.job_id == job_id)
        .group_by(_ITEMS.c.params_hash)
        .having(func.count() > 1)
        .subquery("leaders")
    )
    s.connection().execute(
        _ITEMS.update()
        .where(
            _ITEMS.c.job_id == job_id,
            _ITEMS.c.params_hash == groups.c.params_hash,
            _ITEMS.c.id != groups.c.leader,
        )
        .values(leader_id=groups.c.leader)
    )


def _check_duplicate_keys(
    s: Session, job_id: int, chunk: list[ItemLike], where: str, earlier: EarlierKeys | None
) -> None:
    """Refuse a key repeated within ``chunk`` and, given ``earlier``, one an earlier
    chunk's row has (the store is asked about the keys ``earlier`` may hold)."""
    seen: dict[str, int] = {}
    for item in chunk:
        if item.key in seen:
            raise SpecError(
                f"duplicate key {item.key!r} (first seen on line {seen[item.key]})",
                location=f"{where}: input line {item.line}",
            )
        seen[item.key] = item.line
    if earlier is None:
        return
    maybe = earlier.candidates(seen)
    clash = _stored_key(s, job_id, maybe) if maybe else None
    if clash is not None:
        raise _stored_key_error(clash, seen[clash], where)
    earlier.add(seen)


class EarlierKeys:
    """The keys of a new job's earlier chunks, as one bit per key hash in a table of
    fixed size (4 MB): a key whose bit is clear is not among them, and only a key
    whose bit is set (a repeat, or by chance: about 3 in 100 at a million keys) is
    looked up in the store. Asking the store about every key took 10 ms a chunk of
    2,000 on PostgreSQL, 0.5 s of a 100,000-row job."""

    BITS = 1 << 25

    def __init__(self) -> None:
        self._table = bytearray(self.BITS >> 3)

    def candidates(self, keys: Iterable[str]) -> list[str]:
        """The keys of ``keys`` that an earlier chunk may have had."""
        table, mask = self._table, self.BITS - 1
        found: list[str] = []
        for key in keys:
            bit = hash(key) & mask
            if table[bit >> 3] & (1 << (bit & 7)):
                found.append(key)
        return found

    def add(self, keys: Iterable[str]) -> None:
        table, mask = self._table, self.BITS - 1
        for key in keys:
            bit = hash(key) & mask
            table[bit >> 3] |= 1 << (bit & 7)


def _stored_key_error(key: str, line: int, where: str) -> SpecError:
    return SpecError(
        f"duplicate key {key!r} (already used by an earlier row)",
        location=f"{where}: input line {line}",
    )


@contextmanager
def _keys_refused(
    conn: Connection, job_id: int, chunk: list[ItemLike], where: str
) -> Iterator[None]:
    """SQLite: the insert of ``chunk`` under a savepoint. A key an earlier chunk stored
    makes the unique constraint refuse it: the chunk is undone, its keys are looked up,
    and the SpecError of its first row whose key is stored is raised (without the
    IntegrityError, a statement of a thousand rows). Any other refusal is raised as is.
    No query a chunk to look first."""
    conn.exec_driver_sql("SAVEPOINT item_chunk")
    try:
        yield
    except IntegrityError:
        conn.exec_driver_sql("ROLLBACK TO item_chunk")
        keys = [item.key for item in chunk]  # no repeats: checked before
        found = conn.exec_driver_sql(_sqlite_stored_keys(len(keys)), (job_id, *keys))
        stored = {str(row[0]) for row in found}
        for item in chunk:
            if item.key in stored:
                raise _stored_key_error(item.key, item.line, where) from None
        raise
    conn.exec_driver_sql("RELEASE item_chunk")


#: The columns an item is recorded with: those of ``_item_values``, then ``_fixed_values``.
_ITEM_COLUMNS = (
    "ordinal",
    "key",
    "params",
    "params_hash",
    "input",
    "job_id",
    "status",
    "attempts",
    "cached",
    "updated_at",
)


def _fixed_values(dialect: Dialect, job_id: int, now: datetime) -> tuple[Any, ...]:
    """The values every item of a new job is recorded with, as the driver takes them
    (each column type's bind processing done once, not once a row)."""
    fixed = {
        "job_id": job_id,
        "status": ItemStatus.PENDING,
        "attempts": 0,
        "cached": False,
        "updated_at": now,
    }
    return tuple(driver_value(dialect, _ITEMS, name, value) for name, value in fixed.items())


def _stored_key(s: Session, job_id: int, keys: list[str]) -> str | None:
    """One of ``keys`` an item of this job has already, or None."""
    # PostgreSQL (SQLite's store refuses the insert instead): one array parameter, not
    # thousands (an IN list of a chunk's keys is parsed and planned for every chunk:
    # 60 ms each, 3 s of a 100,000-row job).
    found = (
        s.connection()
        .exec_driver_sql(
            "SELECT key FROM items WHERE job_id = %s AND key = ANY(%s) LIMIT 1", (job_id, keys)
        )
        .first()
    )
    return None if found is None else str(found[0])


@lru_cache(maxsize=8)
def _sqlite_stored_keys(keys: int) -> str:
    marks = ", ".join(["?"] * keys)
    return f"SELECT key FROM items WHERE job_id = ? AND key IN ({marks})"


def _item_values(item: ItemLike, fixed: tuple[Any, ...]) -> tuple[Any, ...]:
    """An item's row in ``_ITEM_COLUMNS`` order, its values as the driver takes them
    (JSON bytes as text, as ``JSONText`` stores them)."""
    input_json = item.input_json
    return (
        item.ordinal,
        item.key,
        item.params_json.decode(),
        item.params_hash,
        None if input_json is None else input_json.decode(),
        *fixed,
    )


#: The columns of an item recorded by ``_PlanningRecorder``: its id is chosen first,
#: for its custom_id; then those of ``_item_values``; then its plan; then job and time.
_PLANNED_ITEM_COLUMNS = (
    "id",
    "ordinal",
    "key",
    "params",
    "params_hash",
    "input",
    "custom_id",
    "batch_id",
    "status",
    "attempts",
    "job_id",
    "cached",
    "updated_at",
)


class _PlanningRecorder:
    """Records a new job's items chunk by chunk, those of its first batches planned as
    they are written (see :class:`PlanAtRecord`): the plan step's packing
    (``BatchPlanner``, in id order) and custom_ids (``<tag>-<item id>-1``), its batch
    rows and their requests."""

    def __init__(
        self, s: Session, job_id: int, new: NewJob, plan: PlanAtRecord, now: datetime
    ) -> None:
        make_custom_id(plan.store_tag, 1, 1)  # a bad tag fails here, not in a batch
        self._s = s
        self._conn = s.connection()
        self._job_id = job_id
        self._plan = plan
        self._now = now
        self._planner = BatchPlanner(new.max_requests, new.max_bytes)
        self._batch: Batch | None = None
        #: The batches asked for are planned: the rest is recorded without a plan.
        self.done = False
        #: An item was found repeating params the store has (this job's rows included).
        self._repeated = False
        # Without dedupe and the cache nothing decides anything from repeated params.
        self._check_repeats = new.dedupe or new.use_cache
        dialect = self._conn.dialect
        self._postgres = dialect.name == "postgresql"
        value = partial(driver_value, dialect, _ITEMS)
        self._queued = (value("status", ItemStatus.QUEUED), 1)
        self._pending = (None, None, value("status", ItemStatus.PENDING), 0)
        self._fixed = (value("job_id", job_id), value("cached", False), value("updated_at", now))
        # SQLite gives a new row the largest id + 1, as this does (the write lock is
        # held): ids in file order, as recording without a plan gives them.
        self._last_id = 0 if self._postgres else _largest_item_id(self._conn)
        # In a store with no item yet, only this job's own earlier rows can be repeated:
        # they are remembered here (by the str hash of their params hash: a clash only
        # leaves an item to the plan step) rather than looked up, a query a chunk.
        # Another job's items recorded meanwhile have no answer for the cache yet.
        fresh = self._check_repeats and _no_items(self._conn)
        self._seen: set[int] | None = set() if fresh else None

    def insert(self, chunk: Sequence[ItemLike]) -> None:
        # Once the batches asked for are planned every item is recorded pending: no
        # repeat decides anything then, and the lookup (an index probe per item) is skipped.
        check = self._check_repeats and not self.done
        repeats = self._stored_hashes(chunk) if check else set()
        closed: list[tuple[Batch, PlannedBatch]] = []
        rows: list[tuple[Any, ...]] = []
        tag = self._plan.store_tag
        for item_id, item in zip(self._new_ids(len(chunk)), chunk, strict=True):
            params_hash, input_json = item.params_hash, item.input_json
            values = (
                item_id,
                item.ordinal,
                item.key,
                item.params_json.decode(),
                params_hash,
                None if input_json is None else input_json.decode(),
            )
            if self.done or (check and params_hash in repeats):
                self._repeated = self._repeated or not self.done
                rows.append((*values, *self._pending, *self._fixed))  # the plan step's
                continue
            if check:
                repeats.add(params_hash)
            custom_id = f"{tag}-{item_id}-1"
            full = self._planner.add(item_id, request_size(custom_id, len(item.params_json)))
            if full is not None and self._batch is not None:
                closed.append((self._batch, full))
                self._batch = None
                if len(self._plan.planned) + len(closed) >= self._plan.batches:
                    self.done = True  # this item starts a batch the plan step makes
                    rows.append((*values, *self._pending, *self._fixed))
                    continue
            if self._batch is None:
                self._batch = self._new_batch()
            rows.append((*values, custom_id, self._batch.id, *self._queued, *self._fixed))
        if check and self._seen is not None:
            self._seen.update(hash(item.params_hash) for item in chunk)
        insert_values(self._conn, _ITEMS, _PLANNED_ITEM_COLUMNS, rows, processed=True)
        for batch, planned in closed:  # their items are stored now
            self._close(batch, planned)

    @property
    def unrepeated(self) -> bool:
        """Every item recorded was checked for repeats, and none repeated another."""
        return self._check_repeats and not self.done and not self._repeated

    def finish(self) -> None:
        last = None if self.done else self._planner.finish()
        if last is not None and self._batch is not None:
            self._close(self._batch, last)

    def _new_ids(self, n: int) -> Sequence[int]:
        if self._postgres:  # from the sequence: other sessions may be inserting items
            rows = self._conn.exec_driver_sql(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                (_ITEMS.fullname, n),
            )
            return sorted(int(r[0]) for r in rows)
        first = self._last_id + 1
        self._last_id += n
        return range(first, first + n)

    def _stored_hashes(self, chunk: Sequence[ItemLike]) -> set[str]:
        """The params hashes of ``chunk`` that an item of the store has already."""
        if self._seen is not None:
            seen = self._seen
            return {it.params_hash for it in chunk if hash(it.params_hash) in seen}
        wanted = list(dict.fromkeys(it.params_hash for it in chunk))
        if self._postgres:
            found = self._conn.exec_driver_sql(
                "SELECT DISTINCT params_hash FROM items WHERE params_hash = ANY(%s)", (wanted,)
            )
        else:
            # One of a few statement sizes (powers of two), however many distinct hashes.
            size = 1 << (len(wanted) - 1).bit_length()
            wanted += wanted[-1:] * (size - len(wanted))
            found = self._conn.exec_driver_sql(_sqlite_stored_hashes(size), tuple(wanted))
        return {str(r[0]) for r in found}

    def _new_batch(self) -> Batch:
        # Its count and size are set when it is closed (within this transaction).
        batch = Batch(
            job_id=self._job_id,
            status=BatchStatus.PLANNED,
            request_count=1,
            body_bytes=0,
            created_at=self._now,
            updated_at=self._now,
        )
        self._s.add(batch)
        self._s.flush()
        return batch

    def _close(self, batch: Batch, planned: PlannedBatch) -> None:
        batch.request_count = len(planned.request_ids)
        batch.body_bytes = planned.body_bytes
        self._s.flush()
        copy_batch_requests(self._s, batch.id)
        self._plan.planned.append((batch.id, batch.request_count))


def _no_items(conn: Connection) -> bool:
    return conn.exec_driver_sql("SELECT 1 FROM items LIMIT 1").first() is None


def _largest_item_id(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM items").scalar_one())


@lru_cache(maxsize=16)
def _sqlite_stored_hashes(hashes: int) -> str:
    marks = ", ".join(["?"] * hashes)
    return f"SELECT DISTINCT params_hash FROM items WHERE params_hash IN ({marks})"


def _new_job_fields(new: NewJob) -> dict[str, Any]:
    return {
        "name": new.name,
        "content_hash": new.content_hash,
        "spec_path": new.spec_path,
        "spec": new.spec,
        "max_attempts": new.max_attempts,
        "max_requests": new.max_requests,
        "max_bytes": new.max_bytes,
        "use_cache": new.use_cache,
        "budget_usd": new.budget_usd,
        "schedule": new.schedule,
        "api_version": new.api_version,
        "output_mode": None if new.output is None else new.output.mode.value,
        "output_schema": None if new.output is None else new.output.schema,
        "output_tool": None if new.output is None else new.output.tool_name,
        "betas": list(new.betas) or None,
    }
