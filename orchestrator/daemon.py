"""The scheduled daemon: APScheduler is only the in-process timer.

Everything durable (what to submit, which batch a worker holds) lives in the
store's tables and leases, so several daemons can share one PostgreSQL store:
APScheduler's own FAQ warns that sharing its job store between processes leads
to duplicate execution, so it keeps nothing but timers in memory here.

* one interval job runs the step cycle every ``poll_interval_s``
  (``max_instances=1``, ``coalesce=True``: a slow cycle is never run twice);
  creates run on a thread of their own meanwhile (``steps/background.py``);
* one cron job per ``--spec`` with a ``schedule`` submits a new job per firing;
* SIGTERM or SIGINT lets the step under way finish, then exits; a second signal
  exits at once (safe too: every step is re-runnable after a crash).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from orchestrator.domain.spec import load_spec
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.runner import BUSY_PAUSE_S, StopSignals, busy
from orchestrator.steps import StepReport, run_cycle
from orchestrator.steps.background import BackgroundSubmit
from orchestrator.steps.context import StepContext, utcnow
from orchestrator.steps.jobs import submit_spec

log = logging.getLogger("orchestrator.daemon")
#: How long a missed timer may still run late (e.g. after a long cycle).
MISFIRE_GRACE_S = 30


class Daemon:
    def __init__(self, ctx: StepContext, specs: list[Path]) -> None:
        self.submitter = BackgroundSubmit(ctx)
        self.ctx = replace(ctx, on_planned=self.submitter.wake)
        self.specs = specs
        self.stopping = threading.Event()
        self.scheduler = BackgroundScheduler(timezone=UTC)

    def cycle(self) -> None:
        """One pass over the steps (the same as ``orchestrator run``), stopping between steps.

        The steps log what changes (a batch created, ended or ingested, a job
        finished); a cycle that changes nothing logs nothing.
        """
        try:
            # Again at once while there is work (a batch ingested, planned or ended),
            # as `run` does: the timer's pause is for waiting on the API.
            while busy(self._cycle()) and not self.stopping.wait(BUSY_PAUSE_S):
                pass
        except OrchestratorError as exc:
            # Not transient (a bad key, a missing permission): say so, keep the timer.
            log.error("cycle failed: %s", exc)

    def _cycle(self) -> list[StepReport]:
        return run_cycle(self.ctx, self.stopping.is_set, submitter=self.submitter.submit)

    def submit_scheduled(self, spec: Path) -> None:
        if self.stopping.is_set():
            return
        name = load_spec(spec).spec.name
        run_name = f"{name}@{datetime.now(UTC):%Y%m%dT%H%M}"
        try:
            job, created = submit_spec(
                self.ctx.store,
                spec,
                utcnow(),
                self.ctx.prices,
                api_version=self.ctx.settings.api_version,
                name=run_name,
            )
        except OrchestratorError as exc:
            log.error("scheduled run of %s failed: %s", spec, exc)
            return
        if created:
            log.info("scheduled run of %s: job %s (id %s)", spec, job.name, job.id)

    def start(self) -> None:
        self.scheduler.add_job(
            self.cycle,
            "interval",
            seconds=self.ctx.settings.poll_interval_s,
            next_run_time=datetime.now(UTC),
            id="cycle",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=MISFIRE_GRACE_S,
        )
        for spec in self.specs:
            schedule = load_spec(spec).spec.schedule
            if schedule is None:
                raise ConfigError(f"{spec}: --spec needs a `schedule` (cron) in the spec")
            self.scheduler.add_job(
                self.submit_scheduled,
                CronTrigger.from_crontab(schedule, timezone=UTC),
                args=[spec],
                id=f"schedule:{spec}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=MISFIRE_GRACE_S,
            )
        # Only once every spec was accepted: a daemon that refuses to start sends nothing.
        self.submitter.start()
        self.scheduler.start()

    def stop(self) -> None:
        """Let the running step finish, then stop the timers (waits for it)."""
        self.stopping.set()
        self.scheduler.shutdown(wait=True)
        self.submitter.close()


def run_daemon(ctx: StepContext, specs: list[Path]) -> None:
    """Run until SIGTERM/SIGINT."""
    daemon = Daemon(ctx, specs)

    def on_signal(signum: int) -> None:
        log.info("signal %s: finishing the current step, then exiting", signum)
        daemon.stopping.set()

    with StopSignals(on_signal):
        daemon.start()
        log.info("daemon %s started (poll every %g s)", ctx.owner, ctx.settings.poll_interval_s)
        try:
            while not daemon.stopping.wait(0.2):
                pass
        finally:
            daemon.stop()
            log.info("daemon stopped")
