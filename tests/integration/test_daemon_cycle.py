"""A daemon's cycle runs again at once while it finds work, as ``run``'s loop does:
the timer's pause (the poll interval, 30 s by default) is for waiting on the API. A
cycle ingests ``BATCHES_PER_RUN`` batches, so without this a daemon with forty ended
batches would take ten poll intervals to store them."""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator.daemon import Daemon
from orchestrator.domain.states import BatchStatus, JobStatus
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import StepContext, poll, submit
from orchestrator.steps.context import utcnow
from orchestrator.steps.ingest import BATCHES_PER_RUN
from orchestrator.steps.plan import plan
from tests.integration.conftest import new_job, write_job

BATCHES = BATCHES_PER_RUN + 1


def test_one_daemon_cycle_ingests_every_ended_batch(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    job_id = new_job(ctx, write_job(tmp_path, "daemon", 3 * BATCHES, max_requests=3))
    assert plan(ctx, utcnow()).details == {"batches": BATCHES}
    assert submit(ctx, utcnow()).details == {"created": BATCHES}
    stop_at = time.monotonic() + 15
    while len(ctx.store.batches([BatchStatus.ENDED])) < BATCHES:
        assert time.monotonic() < stop_at, "the simulator's batches did not end"
        time.sleep(0.1)
        poll(ctx, utcnow())

    Daemon(ctx, []).cycle()  # the timer's one call

    assert len(ctx.store.batches([BatchStatus.INGESTED])) == BATCHES
    assert ctx.store.get_job(job_id).status is JobStatus.DONE
    assert len(sim.state.ledger.to_json()["batches"]) == BATCHES
