"""What every step needs, bundled: the store, the API client and the knobs.

Each step is ``step(ctx, now) -> StepReport``: it claims its own work, commits in
small transactions and can be run again after a crash at any line. The daemon
and ``orchestrator run`` call the same steps.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orchestrator.api.client import BatchesClient
from orchestrator.domain.pricing import PriceTable
from orchestrator.settings import Settings
from orchestrator.steps.routes import RouteTables
from orchestrator.store.queries import Store

log = logging.getLogger("orchestrator")

#: A clean download that is still short of lines is tried again this many times
#: before the missing requests are resolved as missing (and retried).
MAX_SHORT_DOWNLOADS = 3
#: Back-off for a create refused before processing (429/529/connect error).
SUBMIT_RETRY_S = 30.0
#: Back-off for a results download that broke off.
INGEST_RETRY_S = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_owner() -> str:
    """A worker id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class StepContext:
    store: Store
    api: BatchesClient
    settings: Settings
    owner: str = field(default_factory=default_owner)
    prices: PriceTable = field(default_factory=PriceTable.load)
    #: Work on this job only (``orchestrator run SPEC``); None: every job (the daemon).
    job_id: int | None = None
    #: Steps whose transient failure was already logged; quiet until they succeed again.
    failing_steps: set[str] = field(default_factory=set)
    #: Called by the plan step after each batch it commits: wakes a background
    #: submitter (``steps/background.py``), if the cycle has one.
    on_planned: Callable[[], None] = field(default=lambda: None)
    #: Route tables the submit step reads while a create runs, for the ingest
    #: (``steps/routes.py``); shared by the copies a background submitter makes.
    routes: RouteTables = field(default_factory=RouteTables)

    @property
    def ttl_s(self) -> float:
        return self.settings.lease_ttl_s


@dataclass
class StepReport:
    """What one run of a step did; ``work`` counts the units it handled.

    ``unreachable`` says the API could not be reached at all during the step
    (``error`` says how), so ``orchestrator run`` can give up after a bounded time.
    """

    step: str
    work: int = 0
    details: dict[str, int] = field(default_factory=dict)
    unreachable: bool = False
    error: str | None = None

    def add(self, key: str, n: int = 1) -> None:
        self.details[key] = self.details.get(key, 0) + n
        self.work += n
