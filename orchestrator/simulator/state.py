"""The in-memory batch store: create, retrieve, list, cancel, delete (§1.1, §4, §6).

Every public method takes the lock and first brings batches up to date with the clock,
so no background thread is needed. Tests read ``state.ledger`` and change knobs with
``state.configure(...)`` while the server runs in another thread.
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any

from . import batch as lifecycle
from .batch import Batch
from .caching import PromptCache
from .clock import Clock, RealClock
from .config import SimulatorConfig
from .faults import Faults
from .ids import batch_id, digest64, request_id, unit_interval
from .ledger import Ledger, LedgerBatch
from .model import Prompt, Shared, invalid_output, sketch
from .outcomes import scripted_outcome
from .validation import InvalidRequest, params_problem

#: §4.1: list limit default and range.
LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 1000


class NotFound(InvalidRequest):
    """404 not_found_error."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=404, error_type="not_found_error")


class RateLimited(InvalidRequest):
    """429 rate_limit_error with a retry-after in whole seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, status=429, error_type="rate_limit_error")
        self.retry_after = retry_after


class SimulatorState:
    """Batches, ledger, faults and knobs of one simulator."""

    def __init__(self, config: SimulatorConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.clock: Clock = clock or RealClock()
        self.ledger = Ledger()
        self.faults = Faults(self.config.seed)
        self._batches: dict[str, Batch] = {}
        self._lock = threading.RLock()
        self._creating = threading.Lock()
        self._ids = random.Random(digest64(self.config.seed, "batch-ids"))
        self._request_ids = random.Random(digest64(self.config.seed, "request-ids"))
        self._sequence = 0
        self._last_created = 0.0
        #: Prompt-cache prefixes seen by this simulator (batches and /v1/messages).
        self.prompt_cache = PromptCache()

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Replace some knobs (validated); e.g. ``configure(fault_500_share=0)``."""
        with self._lock:
            self.config = SimulatorConfig.model_validate({**self.config.model_dump(), **changes})
            return self.config

    def new_request_id(self) -> str:
        with self._lock:
            return request_id(self._request_ids)

    def now(self) -> float:
        return self.clock.now()

    def message_prompt(self, params: dict[str, Any]) -> Prompt:
        """The sketch of a validated /v1/messages call, sharing the prompt cache.

        Its answers are always valid: no custom_id to draw ``invalid_output_share`` from.
        """
        with self._lock:
            return sketch(params, self.config.seed, None, Shared(), cache=self.prompt_cache)

    # -- create -----------------------------------------------------------------------

    def create_batch(
        self,
        pairs: list[tuple[str, dict[str, Any]]],
        betas: frozenset[str],
        api_version: str = "",
    ) -> Batch:
        """Store a validated batch (§6.2: processing starts immediately).

        Creates go one at a time; sketching the requests (seconds for a large batch)
        holds only that, so the other calls are answered meanwhile.
        """
        with self._creating:
            with self._lock:
                self._refresh()
                self._check_queue(len(pairs))
                created_at = max(self.clock.now(), self._last_created)
                self._last_created, self._sequence = created_at, self._sequence + 1
                new_id = batch_id(created_at, self._sequence, self._ids)
                config = self.config
            batch = self._build(config, new_id, created_at, pairs, betas)
            with self._lock:
                self._batches[new_id] = batch
                self.ledger.record_batch(
                    LedgerBatch(
                        new_id,
                        created_at,
                        len(pairs),
                        tuple(batch.custom_ids),
                        api_version,
                        tuple(sorted(betas)),
                    )
                )
            return batch

    def _build(
        self,
        config: SimulatorConfig,
        new_id: str,
        created_at: float,
        pairs: list[tuple[str, dict[str, Any]]],
        betas: frozenset[str],
    ) -> Batch:
        shared = Shared()
        prompts = [
            sketch(
                p,
                config.seed,
                params_problem(p, betas),
                shared,
                invalid=invalid_output(config.seed, c, config.invalid_output_share),
                cache=self.prompt_cache,
            )
            for c, p in pairs  # in request order: the first of equal cache prefixes writes
        ]
        custom_ids = [custom_id for custom_id, _ in pairs]
        scripted = bytearray(
            scripted_outcome(config, new_id, c, p) for c, p in zip(custom_ids, prompts, strict=True)
        )
        expires_at = created_at + config.expiry_seconds
        processing = _processing_seconds(config, new_id)
        ends_at = min(created_at + processing, expires_at)
        batch = Batch(new_id, created_at, expires_at, ends_at, custom_ids, prompts, scripted)
        batch.seed = config.seed
        return batch

    def _check_queue(self, incoming: int) -> None:
        """§7.4: requests in processing across non-ended batches (§12.6: 429)."""
        limit = self.config.queue_limit
        if limit is None:
            return
        active = [b for b in self._batches.values() if b.ended_at is None]
        if sum(len(b.custom_ids) for b in active) + incoming <= limit:
            return
        due = min((b.due_end() or 0.0 for b in active), default=self.clock.now() + 1)
        retry_after = max(1, math.ceil(due - self.clock.now()))
        raise RateLimited(
            f"Number of batch requests in the processing queue would exceed {limit}.", retry_after
        )

    # -- read -------------------------------------------------------------------------

    def get(self, batch_id_: str) -> Batch:
        with self._lock:
            self._refresh()
            return self._get(batch_id_)

    def _get(self, batch_id_: str) -> Batch:
        batch = self._batches.get(batch_id_)
        if batch is None:
            raise NotFound(f"message batch '{batch_id_}' not found")
        return batch

    def batches(self) -> list[Batch]:
        """Every stored batch, oldest first."""
        with self._lock:
            self._refresh()
            return list(self._batches.values())

    def list_page(
        self, before_id: str | None, after_id: str | None, limit: int
    ) -> tuple[list[Batch], bool]:
        """§4: newest first; cursors position by id (ids sort in creation order)."""
        if before_id and after_id:
            raise InvalidRequest("before_id and after_id cannot be used together")
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidRequest(
                f"limit: Input should be between 1 and {LIST_LIMIT_MAX}, got {limit}"
            )
        shown_until = self.clock.now() - self.config.list_lag_seconds
        listed = [b for b in self.batches() if b.created_at <= shown_until]
        newest_first = sorted(listed, key=lambda b: b.id, reverse=True)
        if before_id:
            newer = [b for b in newest_first if b.id > before_id]
            return newer[-limit:], len(newer) > limit
        older = [b for b in newest_first if not after_id or b.id < after_id]
        return older[:limit], len(older) > limit

    def is_archived(self, batch: Batch) -> bool:
        return batch.archived_at(self.clock.now(), self.config.archive_seconds) is not None

    def batch_json(self, batch: Batch, base_url: str) -> dict[str, Any]:
        with self._lock:
            return batch.to_json(self.clock.now(), self.config.archive_seconds, base_url)

    # -- cancel / delete --------------------------------------------------------------

    def cancel(self, batch_id_: str) -> Batch:
        """§6.3 / §12.2: canceling is idempotent (200 unchanged); ended -> 400."""
        with self._lock:
            self._refresh()
            batch = self._get(batch_id_)
            if batch.ended_at is not None:
                raise InvalidRequest(
                    f"message batch '{batch_id_}' has already ended and cannot be canceled"
                )
            if batch.cancel_initiated_at is None:
                now = self.clock.now()
                batch.cancel_initiated_at = now
                batch.cancel_ends_at = now + self.config.cancel_seconds
                self._refresh()
            return batch

    def delete(self, batch_id_: str) -> None:
        """§6.5 / §12.3: only an ended batch can be deleted; 404 afterwards."""
        with self._lock:
            self._refresh()
            batch = self._get(batch_id_)
            if batch.ended_at is None:
                raise InvalidRequest(
                    f"message batch '{batch_id_}' is still {batch.processing_status}; cancel it "
                    "and wait until it has ended before deleting it"
                )
            del self._batches[batch_id_]

    # -- lifecycle --------------------------------------------------------------------

    def _refresh(self) -> None:
        now = self.clock.now()
        for batch in self._batches.values():
            due = batch.due_end()
            if due is not None and now >= due:
                self._finish(batch)

    def _finish(self, batch: Batch) -> None:
        share, seed = self.config.cancel_inflight_share, self.config.seed
        if batch.cancel_ends_at is None:
            share = 0.0
        inflight = [
            share > 0 and unit_interval(seed, "inflight", batch.id, c) < share
            for c in batch.custom_ids
        ]
        self.ledger.record_paid(lifecycle.finish(batch, inflight))


def _processing_seconds(config: SimulatorConfig, new_id: str) -> float:
    """§6.2: mean × (1 ± jitter), drawn per batch from the seed."""
    draw = random.Random(digest64(config.seed, "processing", new_id)).uniform(-1.0, 1.0)
    return max(0.0, config.processing_seconds * (1.0 + config.processing_jitter * draw))
