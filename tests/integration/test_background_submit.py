"""Creates run on a thread of their own while the other steps go on.

A create is the slowest call (the API reads and checks the whole body before it
answers): ``orchestrator run``, the Python API and the daemon send it from
``steps/background.py`` so the results of an earlier batch are stored meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.domain.states import BatchStatus
from orchestrator.errors import AuthenticationError, StoreUnavailableError
from orchestrator.runner import drive
from orchestrator.simulator import SimulatorServer
from orchestrator.steps.background import BackgroundSubmit
from orchestrator.steps.context import utcnow
from orchestrator.steps.leases import dead_local_holders, same_worker, thread_owner
from orchestrator.steps.plan import plan
from orchestrator.store.queries import Store
from tests.integration.conftest import MakeCtx, ledger, new_job, run_job, write_job

#: How long the gate holds the second create at most (a serial run never opens it).
GATE_S = 15.0


class SecondCreateWaitsForFirstIngest(httpx.BaseTransport):
    """Holds the second create until the first batch's results are stored."""

    def __init__(self, store_url: str) -> None:
        self.inner = httpx.HTTPTransport()
        self.store = Store.open(store_url)
        self.creates = 0
        self.first_ingested_while_held: bool | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v1/messages/batches":
            self.creates += 1
            if self.creates == 2:
                self.first_ingested_while_held = self._wait_for_an_ingested_batch()
        return self.inner.handle_request(request)

    def _wait_for_an_ingested_batch(self) -> bool:
        stop_at = time.monotonic() + GATE_S
        while time.monotonic() < stop_at:
            if self.store.batches([BatchStatus.INGESTED]):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.inner.close()
        self.store.close()


def test_the_first_batch_is_ingested_while_the_second_is_being_created(
    make_ctx: MakeCtx, store_url: str, sim: SimulatorServer, tmp_path: Path
) -> None:
    gate = SecondCreateWaitsForFirstIngest(store_url)
    with make_ctx(transport=gate) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "pipelined", 6, max_requests=3))
        # Both batches planned before the run: the thread claims them in one pass.
        assert plan(ctx, utcnow()).details == {"batches": 2}
        report = run_job(ctx, job_id)
    assert gate.first_ingested_while_held is True  # run one step after the other: False
    assert report.items == {"succeeded": 6}
    assert len(ledger(sim)["batches"]) == 2
    assert not [t for t in threading.enumerate() if t.name == "submitter"]


class RefusedCreates(httpx.BaseTransport):
    """Answers every create 401, as the API does for a revoked key."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v1/messages/batches":
            body = {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            }
            return httpx.Response(401, json=body, request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_create_refused_on_the_thread_ends_the_run_with_its_error(
    make_ctx: MakeCtx, tmp_path: Path
) -> None:
    with make_ctx(transport=RefusedCreates(), max_retries=0) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "refused", 4))
        with pytest.raises(AuthenticationError, match="invalid x-api-key"):
            drive(ctx, job_id, lambda _report: None)
        # Nothing was made: the batch waits, planned, for a run with a good key.
        assert len(ctx.store.batches([BatchStatus.PLANNED])) == 1
        assert not [t for t in threading.enumerate() if t.name == "submitter"]
        assert ctx.store.lease_holders(utcnow()) == set()  # the thread's leases are freed


def test_the_submitter_is_part_of_its_worker_not_a_dead_peer() -> None:
    me = "host-a:4242:abcd1234"
    mine = thread_owner(me, "submit")
    assert same_worker(mine, me)
    assert not same_worker("host-a:4242:abcd12345", me)
    # A live worker never frees its own thread's leases as a dead holder's...
    assert dead_local_holders([mine], me, host="host-a", pid=4242, alive=lambda _pid: True) == []
    # ...but the thread of a process that is gone is freed with it.
    gone = thread_owner("host-a:777:ffff0000", "submit")
    assert dead_local_holders([gone], me, host="host-a", pid=4242, alive=lambda p: p != 777) == [
        gone
    ]


def test_the_submitter_outlives_a_store_outage(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon's store restarting must not stop its creates for good: the thread
    skips the pass (and the release of what it left) and goes on."""
    with make_ctx() as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "outage", 3))
        down = {"claim_batches": 1, "release_holder": 1}

        def failing(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                on_the_thread = threading.current_thread().name == "submitter"
                if down[name] and on_the_thread:
                    down[name] -= 1
                    raise StoreUnavailableError("job store failed: the database is restarting")
                return real(*args, **kwargs)

            return call

        for name in down:
            monkeypatch.setattr(ctx.store, name, failing(name, getattr(ctx.store, name)))
        report = run_job(ctx, job_id)
    assert down == {"claim_batches": 0, "release_holder": 0}  # both failed once
    assert report.items == {"succeeded": 3}
    assert len(ledger(sim)["batches"]) == 1


def test_a_create_held_back_by_the_queue_polls_until_a_batch_ends(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    """Nothing else polls here (no cycle runs): the thread itself sees the first batch
    end and sends the second. Before, it waited for the cycle's poll, which may come
    only after an ingest of many seconds."""
    with make_ctx(max_requests_in_flight=3) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "queue", 6, max_requests=3))
        assert plan(ctx, utcnow()).details == {"batches": 2}
        with BackgroundSubmit(replace(ctx, job_id=job_id)) as submitter:
            stop_at = time.monotonic() + GATE_S
            while len(ledger(sim)["batches"]) < 2 and time.monotonic() < stop_at:
                submitter.wake()
                time.sleep(0.05)
        report = submitter.submit(ctx, utcnow())
        assert report.details.get("created") == 2
        assert report.details.get("queue_full", 0) >= 1  # the second did wait for room
        # The first batch, seen ended by the thread's own poll (nothing else polled).
        assert len(ctx.store.batches([BatchStatus.ENDED])) == 1
