"""HTTP calls of one poll tick with 2,000 batches in flight (issue 13).

Usage::

    .venv/bin/python bench/polling.py [--batches 2000] [--old 200] [--foreign 3000] [--postgres]

Each scenario starts a simulator in its own process (batches stay ``in_progress``
for an hour) and a fresh store, records jobs of one-request batches and sends
them with the orchestrator's own steps (``plan``, then ``submit`` until nothing
is planned: the store holds them exactly as a daemon would), then runs one tick
of the real ``poll`` step on a real ``StepContext`` and prints the HTTP calls it
made, by endpoint, as the simulator's ledger counted them (not the orchestrator),
and the tick's wall time.

* ``fresh``: ``--batches`` batches, the newest in the account.
* ``old``: the same number, but the first ``--old`` of them were created before
  ``--foreign`` batches of another tool sharing the workspace, so they sit
  below the first pages of the newest-first listing.

For comparison: ``paging-through`` is what reading pages until the oldest open
batch costs (the poll step before issue 13), ``naive`` what reading the pages
that hold the newer batches and retrieving each older one by id would cost.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import BENCH_KEY, MODEL, postgres, simulator, write_rows, write_spec

from orchestrator.api.client import BatchesClient
from orchestrator.domain.planning import request_bytes
from orchestrator.domain.states import OPEN_REMOTE_BATCH_STATUSES, BatchStatus
from orchestrator.runner import step_context
from orchestrator.settings import Settings, load_settings
from orchestrator.steps import StepContext, plan, poll, submit
from orchestrator.steps.context import utcnow
from orchestrator.steps.jobs import submit_spec
from orchestrator.steps.poll import LIST_PAGE_SIZE
from orchestrator.store.engine import make_engine, upgrade
from orchestrator.store.queries import Store

#: The simulator keeps every batch in progress this long (seconds): past the run.
PROCESSING_S = 3600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000, help="batches in flight")
    parser.add_argument("--old", type=int, default=200, help="of them, created before the rest")
    parser.add_argument("--foreign", type=int, default=3000, help="other batches between them")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL store")
    args = parser.parse_args()
    backend = "postgresql" if args.postgres else "sqlite"
    print(f"poll tick, {args.batches:,} batches in flight, {backend} store")
    print(
        f"  {'scenario':<8} {'listed':>6} {'calls':>5} {'list':>4} {'retrieve':>8}"
        f" {'paging-through':>14} {'naive':>5} {'tick':>6} {'set-up':>6}"
    )
    for name, old, foreign in (("fresh", 0, 0), ("old", args.old, args.foreign)):
        tick = scenario(args.batches, old, foreign, postgres=args.postgres)
        listed = args.batches + foreign
        print(
            f"  {name:<8} {listed:>6} {sum(tick.calls.values()):>5} {tick.calls['list']:>4}"
            f" {tick.calls['retrieve']:>8} {-(-listed // LIST_PAGE_SIZE):>14}"
            f" {naive_calls(args.batches, old, foreign):>5} {tick.seconds:>5.2f}s"
            f" {tick.setup_s:>5.0f}s"
        )
    print(
        "  calls: this poll's HTTP calls (the simulator's count); paging-through: pages down to"
        " the oldest open batch; naive: the pages holding the newer ones, then a retrieve each"
    )


@dataclass(frozen=True)
class Tick:
    calls: Counter[str]
    seconds: float
    setup_s: float


def scenario(batches: int, old: int, foreign: int, *, postgres: bool) -> Tick:
    """One poll tick over ``batches`` in flight, the first ``old`` of them created before
    ``foreign`` batches of another tool."""
    with (
        simulator(processing_seconds=PROCESSING_S) as base_url,
        store_url(postgres) as url,
        tempfile.TemporaryDirectory(prefix="bench-poll-") as folder,
    ):
        started = time.perf_counter()
        settings = load_settings(
            api_key=BENCH_KEY,
            base_url=base_url,
            database_url=url,
            # Let the submit step send every batch at once: pacing is not measured here.
            creates_per_minute=1_000_000,
        )
        with sending_context(settings) as ctx:
            send_job(ctx, Path(folder), "old", old)
            create_foreign(base_url, foreign)
            send_job(ctx, Path(folder), "new", batches - old)
        setup_s = time.perf_counter() - started
        # The tick itself: the daemon's own wiring, a fresh worker on the store.
        with step_context(settings) as ctx:
            open_batches = ctx.store.batches(OPEN_REMOTE_BATCH_STATUSES)
            assert len(open_batches) == batches, f"{len(open_batches)} batches in flight"
            before = ledger_calls(base_url)
            started = time.perf_counter()
            report = poll(ctx, utcnow())
            seconds = time.perf_counter() - started
            calls = ledger_calls(base_url) - before
        assert report.details.get("polled") == batches, report
        return Tick(calls, seconds, setup_s)


def naive_calls(batches: int, old: int, foreign: int) -> int:
    """Pages that hold the newer batches, then one retrieve per older one."""
    new = batches - old
    pages = -(-new // LIST_PAGE_SIZE) if new else 1
    listed = pages * LIST_PAGE_SIZE
    # Beyond the new ones, the pages read show the newest of the others (foreign first).
    shown_old = max(0, min(old, listed - new - foreign))
    return pages + (old - shown_old)


@contextlib.contextmanager
def sending_context(settings: Settings) -> Iterator[StepContext]:
    """A worker for the set-up whose client opens a connection per call.

    The simulator answers a call on a kept-alive connection about 40 ms late
    (its socket has no TCP_NODELAY, so Nagle's algorithm waits for the client's
    delayed ACK); a fresh connection per create makes the set-up much faster.
    The measured tick uses ``step_context``, unchanged.
    """
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
    api = BatchesClient(api_key=BENCH_KEY, base_url=settings.base_url, transport=transport)
    store = Store.open(settings.database_url)
    try:
        with api:
            yield StepContext(store=store, api=api, settings=settings)
    finally:
        store.close()


def send_job(ctx: StepContext, root: Path, name: str, batches: int) -> None:
    """A job of ``batches`` one-request batches, planned and created by the steps."""
    if batches == 0:
        return
    rows = root / f"{name}.jsonl"
    write_rows(rows, batches)
    spec = write_spec(root, rows, name, extra="[batching]\nmax_requests = 1\n")
    job, _ = submit_spec(ctx.store, spec, utcnow(), ctx.prices)
    if ctx.store.dialect == "postgresql":
        # Statistics on the rows just recorded: without them the plan step's
        # response-cache UPDATE takes minutes on PostgreSQL (the plan step's to fix;
        # here it is only set-up).
        with ctx.store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    ctx.job_id = job.id
    try:
        plan(ctx, utcnow())
        while ctx.store.batches([BatchStatus.PLANNED], job.id):
            report = submit(ctx, utcnow())
            if not report.details.get("created"):
                raise RuntimeError(f"submit made no batch: {report}")
    finally:
        ctx.job_id = None


def create_foreign(base_url: str, count: int) -> None:
    """Batches another tool sent to the same workspace: listed, never ours."""
    params = b'{"model":"%s","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}' % (
        MODEL.encode()
    )
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
    with BatchesClient(api_key=BENCH_KEY, base_url=base_url, transport=transport) as client:
        for i in range(count):
            client.create([request_bytes(f"foreign-{i}", params)])


def ledger_calls(base_url: str) -> Counter[str]:
    """Every HTTP call the simulator has answered so far, by endpoint."""
    response = httpx.get(f"{base_url}/_simulator/ledger", headers={"x-api-key": BENCH_KEY})
    response.raise_for_status()
    return Counter(response.json()["calls"])


@contextlib.contextmanager
def store_url(use_postgres: bool) -> Iterator[str]:
    """A fresh store at head: a SQLite file, or a throwaway PostgreSQL cluster."""
    with contextlib.ExitStack() as stack:
        if use_postgres:
            url = stack.enter_context(postgres())
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-poll-"))
            url = f"sqlite:///{folder}/store.db"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


if __name__ == "__main__":
    main()
