"""The submit step on a thread of its own, so creates overlap with the other steps.

A create is the slowest call a worker makes: the API reads the whole body (up to
256 MB) and checks every request before it answers. Run in the cycle, it holds up
planning the next batch, polling, and ingesting the results of the batch before.
:class:`BackgroundSubmit` runs the unchanged submit step on a thread instead, woken
when a batch is planned (and at least every poll interval), while the cycle's own
thread goes on with the other steps. A job's creates still go one at a time
(``mark_creating`` refuses a second one in flight), so nothing changes for the API.

The thread holds its leases under an owner id of its own (``thread_owner``), renewed
by its own :class:`LeaseKeeper`: the cycle's ``free_own_leases`` frees only what the
cycle's thread holds, never a lease of a create under way. Crash safety is the
submit step's: a worker killed mid-create leaves a ``creating`` batch whose lease
expires, and the recover step reconciles it by listing, as before.

A create held back because the processing queue is full makes the thread poll
(every poll interval, until there is room): a batch that ended makes room only once
a poll saw it, and the cycle's own poll may wait behind an ingest of many seconds.

What the thread did reaches the cycle as the submit step's report (summed since the
previous cycle); an error that is not transient (a bad key) is raised by the cycle's
next submit step, as it would be by the step itself (``run`` ends with it, the daemon
logs it), and the thread tries again after a poll interval, as a next cycle would.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime
from functools import partial
from types import TracebackType

from orchestrator.domain.states import BatchStatus
from orchestrator.errors import StoreError
from orchestrator.steps import SKIPPED, run_step
from orchestrator.steps.context import StepContext, StepReport, log, utcnow
from orchestrator.steps.leases import LeaseKeeper, thread_owner
from orchestrator.steps.poll import poll
from orchestrator.steps.submit import QUEUE_FULL, submit

#: How long ``close`` waits for the thread when the caller was interrupted (Ctrl-C):
#: a create under way is not waited for then (its batch is reconciled like any create
#: whose answer was lost).
INTERRUPTED_JOIN_S = 1.0


class BackgroundSubmit:
    """A thread running the submit step for ``ctx`` (its job, or every job) until closed.

    Use as a context manager; :meth:`submit` stands in for the submit step in
    ``run_cycle`` and :meth:`wake` asks the thread to look for planned batches now.
    ``changed`` is set whenever the thread created (or gave up on) a batch or met an
    error, so a loop waiting between cycles can go on at once.
    """

    def __init__(self, ctx: StepContext) -> None:
        self._ctx = replace(ctx, owner=thread_owner(ctx.owner, "submit"), failing_steps=set())
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._report = StepReport("submit")
        self._error: Exception | None = None
        self.changed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="submitter", daemon=True)

    def __enter__(self) -> BackgroundSubmit:
        self.start()
        return self

    def start(self) -> None:
        self._thread.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close(wait=exc_type is None or not issubclass(exc_type, KeyboardInterrupt))

    def close(self, *, wait: bool = True) -> None:
        """Stop after the create under way (``wait``: until it is done, its leases
        freed); without ``wait``, give it ``INTERRUPTED_JOIN_S`` and return."""
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:  # started
            self._thread.join(None if wait else INTERRUPTED_JOIN_S)

    def wake(self) -> None:
        self._wake.set()

    def submit(self, ctx: StepContext, now: datetime) -> StepReport:  # noqa: ARG002 - a step
        """The submit step's place in a cycle: wake the thread, hand over what it did
        since the last call; raise the error that is not transient it met, if any."""
        with self._lock:
            error, self._error = self._error, None
            report, self._report = self._report, StepReport("submit")
        if error is not None:
            raise error
        self._wake.set()
        return report

    def _run(self) -> None:
        ctx = self._ctx
        pause = ctx.settings.poll_interval_s
        with LeaseKeeper(ctx.store, ctx.owner, ctx.ttl_s, utcnow):
            try:
                interrupted = False
                while not self._stop.is_set():
                    self._wake.clear()
                    try:
                        report = run_step(ctx, "submit", partial(self._pass, ctx, interrupted))
                        interrupted = SKIPPED in report.details
                        self._merge(report)
                        if report.work:
                            self.changed.set()
                            if not report.unreachable and not report.error:
                                continue  # more may be planned already
                        if QUEUE_FULL in report.details and self._poll(ctx):
                            continue  # a batch ended: room for the next create
                    except Exception as exc:  # not transient: the cycle's thread raises it
                        with self._lock:
                            self._error = exc
                        self.changed.set()
                    self._wake.wait(pause)  # after an error: try again, as a next cycle would
            finally:
                try:
                    ctx.store.release_holder(ctx.owner)
                except StoreError as exc:  # they expire anyway
                    log.warning("could not free the submitter's leases: %s", exc)

    def _pass(self, ctx: StepContext, interrupted: bool) -> StepReport:
        """The submit step; after a pass an outage cut short, first free what it left."""
        if interrupted:
            ctx.store.release_holder(ctx.owner)
        return submit(ctx, utcnow(), self._stop.is_set)

    def _poll(self, ctx: StepContext) -> bool:
        """The poll step, for a create held back by the processing queue: whether a
        batch ended. The cycle's thread polls too, but between its other steps (an
        ingest may take minutes); a batch that ended makes room in the queue only once
        a poll saw it."""
        report = run_step(ctx, "poll", partial(poll, ctx, utcnow()))
        if not report.details.get(BatchStatus.ENDED):
            return False
        self.changed.set()  # the cycle ingests it
        return True

    def _merge(self, report: StepReport) -> None:
        with self._lock:
            total = self._report
            for key, n in report.details.items():
                total.details[key] = total.details.get(key, 0) + n
            total.work += report.work
            total.unreachable = total.unreachable or report.unreachable
            total.error = report.error or total.error
