"""A lost create that several listed batches match: the closest is adopted, the others
are watched until their results say whose they are; a billed duplicate is stored and
reported, somebody else's batch is left alone (never canceled)."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from orchestrator.domain.planning import request_bytes
from orchestrator.domain.states import DuplicateStatus, ItemStatus
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import duplicates, plan, recover, submit
from orchestrator.steps.context import utcnow
from tests.integration.conftest import MakeCtx, ledger, new_job, run_job, wait_until, write_job

ITEMS = 12


class _TwiceThenSilent(httpx.BaseTransport):
    """The first create reaches the API twice (a proxy retried it) and its answer is lost."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.done = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if (
            request.method == "POST"
            and request.url.path == "/v1/messages/batches"
            and not self.done
        ):
            self.done = True
            body = request.read()
            for _ in range(2):
                copy = httpx.Request("POST", request.url, headers=request.headers, content=body)
                self.inner.handle_request(copy).close()
            raise httpx.ReadTimeout("simulated: the answer was lost", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_billed_duplicate_is_stored_and_reported_and_a_foreign_match_left_alone(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    with make_ctx(transport=_TwiceThenSilent()) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "twice", ITEMS))
        plan(ctx, utcnow())
        assert submit(ctx, utcnow()).details == {"unknown": 1}
        # Another store sharing the key creates a batch of the same size meanwhile.
        params = orjson.dumps(
            {
                "model": "claude-haiku-4-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
            }
        )
        foreign = ctx.api.create([request_bytes(f"zz9-{i}-1", params) for i in range(1, ITEMS + 1)])
        assert recover(ctx, utcnow()).details == {"adopted": 1}
        report = run_job(ctx, job_id)
        wait_until(
            lambda: (
                not ctx.store.watched_duplicates()
                or bool(duplicates(ctx, utcnow()).work and not ctx.store.watched_duplicates())
            ),
            "the duplicates to be settled",
        )
        report = ctx.store.job_report(job_id)
        with ctx.store.engine.connect() as conn:
            settled: dict[str, str] = dict(
                conn.exec_driver_sql("SELECT remote_id, status FROM duplicate_batches").all()
            )
    assert report.items == {ItemStatus.SUCCEEDED: ITEMS}
    assert report.duplicate_requests == ITEMS  # the second copy was billed too
    made = [b["id"] for b in ledger(sim)["batches"]]
    assert len(made) == 3  # two copies of ours, one foreign; nothing re-sent
    assert settled.get(foreign.id) == DuplicateStatus.FOREIGN
    assert DuplicateStatus.OURS in settled.values()
    assert max(ledger(sim)["submissions"].values()) == 2  # the proxy's copy, reported
    assert "cancel" not in ledger(sim)["calls"]  # the foreign batch was never canceled
