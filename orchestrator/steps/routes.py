"""A batch's route table, read while its create runs instead of after it ends.

The download of a batch's results routes each line by a table of the batch's
requests (``ResultOps.batch_routes``: 0.15-0.2 s for 100,000 requests on SQLite).
Read when the download starts, that time falls between the batch's end and its
first stored line. But the table is known as soon as the batch is planned, and a
create leaves the worker idle for seconds: the API reads the whole body (up to
256 MB) and checks every request before it answers, and a short batch may well
have ended by then. So once the create's body is out, the submit step starts a
thread that reads the table while the API checks the body
(:meth:`RouteTables.read_ahead`), and the ingest takes it from there
(:meth:`RouteTables.take`). Not sooner: a thread of Python work beside the one that
streams the body takes the GIL each time a socket write gives it up, and the upload
(hence the create) of 100,000 requests took up to a second longer.

A table is kept only for the remote batch its create made (:meth:`created`): a
create that made nothing, or whose outcome is unknown, drops it (``forget``), and a
download takes a table only for the remote batch it was kept for. At most ``keep``
tables are held (a dozen bytes a request), the oldest dropped first; a download
with no table kept for it (another worker's batch, a restarted worker, a table
dropped) reads it from the store, as it always did. The store is read in a
read-only transaction (it takes no write lock on SQLite).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from orchestrator.store.queries import Store
from orchestrator.store.records import RouteTable

log = logging.getLogger(__name__)

#: Route tables held at most (a 100,000-request batch's takes about 1.2 MB).
KEPT_TABLES = 2


class _Reading:
    """One table being read on a thread of its own; ``remote_id`` once its create
    made a batch."""

    def __init__(self, store: Store, batch_id: int) -> None:
        self.remote_id: str | None = None
        self.table: RouteTable | None = None
        self.failed = False
        self._store = store
        self._batch_id = batch_id
        self.thread = threading.Thread(target=self._read, name="routes-ahead", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            self.table = self._store.batch_routes(self._batch_id)
        except Exception:  # the download reads the table itself, and meets the error then
            log.debug("batch %s: reading its routes ahead failed", self._batch_id, exc_info=True)
            self.failed = True


class RouteTables:
    """Route tables read ahead of the downloads that need them (see the module)."""

    def __init__(self, keep: int = KEPT_TABLES) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._readings: OrderedDict[int, _Reading] = OrderedDict()

    def read_ahead(self, store: Store, batch_id: int) -> None:
        """Start reading ``batch_id``'s table (its create's body has been handed over)."""
        reading = _Reading(store, batch_id)
        with self._lock:
            self._readings[batch_id] = reading
            self._readings.move_to_end(batch_id)
            while len(self._readings) > self._keep:
                self._readings.popitem(last=False)

    def created(self, batch_id: int, remote_id: str) -> None:
        """The create made ``remote_id``: keep the table for its download."""
        with self._lock:
            reading = self._readings.get(batch_id)
            if reading is not None:
                reading.remote_id = remote_id

    def forget(self, batch_id: int) -> None:
        """The create made nothing, or may have: drop the table."""
        with self._lock:
            self._readings.pop(batch_id, None)

    def take(self, store: Store, batch_id: int, remote_id: str | None) -> RouteTable | None:
        """``store.batch_routes(batch_id)``, from the table read ahead when one was
        kept for ``remote_id`` (waiting for its read to end, if it has not)."""
        with self._lock:
            reading = self._readings.pop(batch_id, None)
        if reading is not None and remote_id is not None and reading.remote_id == remote_id:
            reading.thread.join()
            if not reading.failed:
                return reading.table
        return store.batch_routes(batch_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._readings)
