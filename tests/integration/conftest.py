"""Shared set-up for integration tests: a real store (SQLite and PostgreSQL), the
simulator over real HTTP, and helpers that write small jobs and check the
invariants a user relies on (design §5) against the simulator's ledger.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from orchestrator.api.client import BatchesClient
from orchestrator.domain.planning import parse_custom_id
from orchestrator.runner import drive
from orchestrator.settings import Settings, load_settings
from orchestrator.simulator import SimulatorConfig, SimulatorServer
from orchestrator.steps import StepContext
from orchestrator.steps.context import utcnow
from orchestrator.steps.jobs import submit_spec
from orchestrator.store.queries import Store
from orchestrator.store.records import JobReport
from orchestrator.store.tables import Item, Job, Result

#: Wall-clock bound for one job driven to its end in these tests.
JOB_DEADLINE_S = 30.0

MakeCtx = Callable[..., AbstractContextManager[StepContext]]


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(processing_seconds=0.2, processing_jitter=0.0, cancel_seconds=0.2)
    with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh migrated SQLite store (for SQLite-only scenarios)."""
    path = tmp_path / "store.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


class SilentCreate(httpx.BaseTransport):
    """Times out the first create without forwarding it: the API never saw it."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.swallowed = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v1/messages/batches":
            if not self.swallowed:
                self.swallowed += 1
                raise httpx.ReadTimeout("simulated: no answer", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def fast_sleep(seconds: float) -> None:
    """The client's back-off sleep, shortened: the tests check outcomes, not waits."""
    time.sleep(min(seconds, 0.02))


@pytest.fixture
def make_ctx(store_url: str, ctx_factory: MakeCtx) -> MakeCtx:
    """``with make_ctx(owner=..., transport=..., **settings) as ctx``: a fresh worker
    on this test's store (both backends).

    Each call opens its own Store and client, like a restarted daemon would.
    """
    return functools.partial(ctx_factory, store_url)


@pytest.fixture
def ctx_factory(sim: SimulatorServer) -> MakeCtx:
    """Like ``make_ctx``, with the store URL as first argument."""

    @contextmanager
    def factory(
        url: str,
        owner: str = "worker-a",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = fast_sleep,
        **overrides: Any,
    ) -> Iterator[StepContext]:
        options: dict[str, Any] = {
            "api_key": "sk-test",
            "base_url": sim.base_url,
            "database_url": url,
            "poll_interval_s": 0.05,
            "lease_ttl_s": 30,
            "max_retries": 4,
            "request_timeout_s": 10,
        }
        options.update(overrides)
        settings = load_settings(**options)
        store = Store.open(settings.database_url)
        try:
            with _client(settings, transport, sleep) as api:
                yield StepContext(store=store, api=api, settings=settings, owner=owner)
        finally:
            store.close()

    return factory


def _client(
    settings: Settings, transport: httpx.BaseTransport | None, sleep: Callable[[float], None]
) -> BatchesClient:
    return BatchesClient(
        api_key="sk-test",
        base_url=settings.base_url,
        timeout_s=settings.request_timeout_s,
        max_retries=settings.max_retries,
        transport=transport,
        sleep=sleep,
    )


@pytest.fixture
def ctx(make_ctx: MakeCtx) -> Iterator[StepContext]:
    with make_ctx() as context:
        yield context


def write_job(
    root: Path,
    name: str,
    items: int,
    *,
    max_requests: int | None = None,
    max_attempts: int | None = None,
    options: str = "",
    rows: list[dict[str, Any]] | None = None,
) -> Path:
    """A template spec over a JSONL dataset of ``items`` rows; returns the spec path.

    Jobs written under the same ``root`` share one dataset, so two specs with the
    same template send byte-identical params (what the response cache keys on).
    """
    data = root / "rows.jsonl"
    lines = rows if rows is not None else [{"id": f"k{i}", "t": f"text {i}"} for i in range(items)]
    data.write_text("".join(json.dumps(row) + "\n" for row in lines))
    head = f'name = "{name}"\ninput = "rows.jsonl"\nkey = "id"\n{options}\n'
    request = '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 8\nprompt = "Say {t}"\n'
    batching = f"[batching]\nmax_requests = {max_requests}\n" if max_requests else ""
    retry = f"[retry]\nmax_attempts = {max_attempts}\n" if max_attempts else ""
    spec = root / f"{name}.toml"
    spec.write_text(head + request + batching + retry)
    return spec


def submit_job(ctx: StepContext, spec: Path) -> tuple[int, bool]:
    """Record the job of ``spec`` as ``orchestrator submit`` does: (job id, created)."""
    job, created = submit_spec(ctx.store, spec, utcnow(), ctx.prices)
    return job.id, created


def rows_in_store(ctx: StepContext) -> tuple[int, int]:
    """How many jobs and items the store holds (a refused spec leaves (0, 0))."""
    with ctx.store.engine.connect() as conn:
        jobs = conn.execute(select(func.count()).select_from(Job)).scalar_one()
        items = conn.execute(select(func.count()).select_from(Item)).scalar_one()
    return int(jobs), int(items)


def new_job(ctx: StepContext, spec: Path) -> int:
    job, created = submit_spec(ctx.store, spec, utcnow(), ctx.prices)
    assert created
    return job.id


def run_job(ctx: StepContext, job_id: int, deadline_s: float = JOB_DEADLINE_S) -> JobReport:
    """Drive the job the way ``orchestrator run`` does, failing past the deadline."""
    stop_at = time.monotonic() + deadline_s
    report = drive(ctx, job_id, lambda _r: None, should_stop=lambda: time.monotonic() > stop_at)
    if report.job.status.value not in ("done", "canceled"):
        pytest.fail(f"job {job_id} not finished after {deadline_s} s: {report}")
    return report


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    stop_at = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > stop_at:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def ledger(sim: SimulatorServer) -> dict[str, Any]:
    return sim.state.ledger.to_json()


def final_rows(ctx: StepContext, job_id: int) -> list[dict[str, Any]]:
    return list(ctx.store.final_results(job_id))


def assert_no_double_spend(ctx: StepContext, sim: SimulatorServer, job_id: int) -> None:
    """Every custom_id went out once; an item was sent once per attempt it records.

    Batches of other stores (other tags) on the same simulator are not this store's.
    """
    book = ledger(sim)
    resent = {cid: n for cid, n in book["submissions"].items() if n != 1}
    assert resent == {}, f"requests sent more than once: {resent}"
    tag = ctx.store.store_tag()
    sent_per_item: Counter[int] = Counter()
    for custom_id in book["submissions"]:
        parts = parse_custom_id(custom_id)
        assert parts is not None, f"a custom_id no store made was sent: {custom_id}"
        if parts.store_tag == tag:
            sent_per_item[parts.item_id] += 1
    with ctx.store.engine.connect() as conn:
        attempts = dict(
            conn.execute(
                select(Item.id, Item.attempts).where(Item.job_id == job_id, Item.cached.is_(False))
            ).all()
        )
    assert {i: sent_per_item.get(i, 0) for i in attempts} == attempts


def assert_job_complete(ctx: StepContext, job_id: int) -> list[dict[str, Any]]:
    """Done, every item terminal, one final row per item, no result stored twice."""
    report = ctx.store.job_report(job_id)
    assert report.job.status.value == "done"
    assert report.terminal == report.job.items_total
    rows = final_rows(ctx, job_id)
    assert len(rows) == report.job.items_total
    assert len({r["key"] for r in rows}) == len(rows)
    with ctx.store.engine.connect() as conn:
        total, distinct = conn.execute(
            select(func.count(), func.count(func.distinct(Result.custom_id)))
        ).one()
    assert total == distinct
    return rows
