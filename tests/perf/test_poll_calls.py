"""Regression guard for polling cost (issue 13): HTTP calls per poll tick, never time.

A real store holds 2,000 batches in flight, planned by the plan step and taken
through the store's create transitions as the submit step takes them (intent,
then the remote batch recorded); they are real simulator batches, created on its
state directly (2,000 creates over loopback HTTP would double the test's time,
and they are not what is measured). One tick of the real ``poll`` step on a
real ``StepContext`` then goes over HTTP, and the simulator's ledger counts its
calls. The store is SQLite only: what a tick calls does not depend on the
backend, and the set-up is most of the test's time. How a tick finds batches far
down the listing, call by call, is in ``tests/unit/test_poll_listing.py``;
``bench/polling.py`` measures both end to end, on either backend.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from orchestrator.api.models import MessageBatch
from orchestrator.domain.states import OPEN_REMOTE_BATCH_STATUSES, BatchStatus
from orchestrator.runner import step_context
from orchestrator.settings import Settings, load_settings
from orchestrator.simulator import SimulatorConfig, SimulatorServer
from orchestrator.steps import StepContext, plan, poll
from orchestrator.steps.context import utcnow
from orchestrator.steps.jobs import submit_spec
from orchestrator.steps.remote import remote_state

pytestmark = pytest.mark.slow

IN_FLIGHT = 2000
MAX_CALLS_PER_TICK = 3
#: Batches of another tool on the same workspace, older than ours: listed, never polled.
FOREIGN = 1000
FOREIGN_PARAMS = {
    "model": "claude-haiku-4-5",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    # Batches stay in progress for the whole test.
    config = SimulatorConfig(processing_seconds=3600, processing_jitter=0.0)
    with SimulatorServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def settings(
    sim: SimulatorServer, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """A store with a job of ``IN_FLIGHT`` batches in progress."""
    root = tmp_path_factory.mktemp("poll-calls")
    path = root / "store.db"
    shutil.copyfile(sqlite_template, path)
    settings = load_settings(
        api_key="sk-test", base_url=sim.base_url, database_url=f"sqlite:///{path}"
    )
    for i in range(FOREIGN):
        sim.state.create_batch([(f"foreign-{i}", FOREIGN_PARAMS)], frozenset())
    with step_context(settings) as ctx:
        send_job(ctx, sim, root, "job", IN_FLIGHT)
    return settings


def send_job(ctx: StepContext, sim: SimulatorServer, root: Path, name: str, batches: int) -> int:
    """A job of one-request batches, planned by the plan step and created through the
    store's transitions (intent, then the remote batch recorded) as submit does."""
    rows = root / f"{name}.jsonl"
    rows.write_bytes(
        b"".join(
            orjson.dumps({"id": f"{name}{i}", "t": f"text {i}"}) + b"\n" for i in range(batches)
        )
    )
    spec = root / f"{name}.toml"
    spec.write_text(
        f'name = "{name}"\ninput = "{rows.name}"\nkey = "id"\n'
        '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 8\nprompt = "Say {t}"\n'
        "[batching]\nmax_requests = 1\n"
    )
    job, _ = submit_spec(ctx.store, spec, utcnow(), ctx.prices)
    ctx.job_id = job.id
    plan(ctx, utcnow())
    ctx.job_id = None
    leases = ctx.store.claim_batches(
        [BatchStatus.PLANNED], ctx.owner, utcnow(), ctx.ttl_s, batches, job_id=job.id
    )
    assert len(leases) == batches
    for lease in leases:
        assert ctx.store.mark_creating(lease, utcnow(), ctx.api.endpoint)
        requests = [
            (line.custom_id, orjson.loads(line.params_json))
            for line in ctx.store.request_lines(lease.row_id)
        ]
        made = sim.state.create_batch(requests, frozenset(), job.api_version)
        answer = MessageBatch.model_validate(sim.state.batch_json(made, sim.base_url))
        assert ctx.store.record_created(lease, remote_state(answer), utcnow())
        ctx.store.release_batch(lease)
    return job.id


def test_a_tick_over_2000_batches_in_flight_makes_at_most_3_calls(
    sim: SimulatorServer, settings: Settings
) -> None:
    with step_context(settings) as ctx:
        before = Counter(sim.state.ledger.calls)
        report = poll(ctx, utcnow())
        calls = Counter(sim.state.ledger.calls) - before
        open_batches = ctx.store.batches(OPEN_REMOTE_BATCH_STATUSES)
    assert report.details["polled"] == IN_FLIGHT
    assert len(open_batches) == IN_FLIGHT
    assert all(b.status is BatchStatus.IN_PROGRESS for b in open_batches)
    assert sum(calls.values()) <= MAX_CALLS_PER_TICK, calls
    assert calls == Counter(list=2), calls
