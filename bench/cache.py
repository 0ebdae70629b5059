"""Benchmark: the response cache and within-job dedupe on 100,000 items, 90 % repeats.

Four jobs on one store (SQLite, or with ``--postgres`` a throwaway PostgreSQL
cluster), against an in-process simulator:

1. ``distinct``: 10,000 distinct requests, run to the end (the answers the cache holds);
   before it runs, the cache lookup in the still empty store is timed;
2. ``cached``: 100,000 rows asking those same 10,000 questions ten times each, with
   ``dedupe = false``: the plan step's cache lookup answers all 100,000 from job 1;
3. ``deduped``: 100,000 rows of which 90 % repeat an earlier row's params, with
   ``cache = false``: recording chooses 10,000 leaders, planning sends only them;
4. ``unseen``: 100,000 new questions: the cache lookup finds nothing to answer among
   the 10,000 stored answers (timed alone).

Before issue 13 the cache lookup was one correlated subquery per item, quadratic in
repeats (10,000 identical items took 9 s, 100,000 over 19 minutes).

    .venv/bin/python bench/cache.py [--items 100000] [--distinct 10000] [--postgres]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from _common import postgres, review_text, write_rows, write_spec

from orchestrator.runner import drive, step_context
from orchestrator.settings import load_settings
from orchestrator.simulator import SimulatorConfig, SimulatorServer
from orchestrator.steps.context import utcnow
from orchestrator.steps.jobs import submit_spec
from orchestrator.steps.plan import plan
from orchestrator.store.engine import make_engine, upgrade
from orchestrator.store.queries import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=10_000)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL store")
    args = parser.parse_args()
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = stack.enter_context(postgres()) if args.postgres else f"sqlite:///{root / 'c.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        distinct_rows, repeated_rows = root / "distinct.jsonl", root / "repeated.jsonl"
        write_rows(distinct_rows, args.distinct)
        write_rows(repeated_rows, args.items, distinct=args.distinct)
        config = SimulatorConfig(processing_seconds=0.2, processing_jitter=0.0)
        with SimulatorServer(config) as sim:
            settings = load_settings(
                api_key="sk-bench", base_url=sim.base_url, database_url=url, poll_interval_s=0.2
            )
            with step_context(settings) as ctx:
                first, _ = submit_spec(
                    ctx.store, write_spec(root, distinct_rows, "distinct"), utcnow(), ctx.prices
                )
                empty_s = _lookup_seconds(ctx.store, first.id, ctx.api.endpoint)
                drive(ctx, first.id, lambda _r: None)

                spec = write_spec(root, repeated_rows, "cached", extra="dedupe = false\n")
                second, _ = submit_spec(ctx.store, spec, utcnow(), ctx.prices)
                started = time.perf_counter()
                report = plan(dataclasses.replace(ctx, job_id=second.id), utcnow())
                cached_s = time.perf_counter() - started
                answered = ctx.store.get_job(second.id).cache_hits

                spec = write_spec(root, repeated_rows, "deduped", extra="cache = false\n")
                started = time.perf_counter()
                third, _ = submit_spec(ctx.store, spec, utcnow(), ctx.prices)
                recorded_s = time.perf_counter() - started
                started = time.perf_counter()
                planned = plan(dataclasses.replace(ctx, job_id=third.id), utcnow())
                planned_s = time.perf_counter() - started
                sent = ctx.store.job_report(third.id).items

                unseen_rows = root / "unseen.jsonl"
                with unseen_rows.open("w", encoding="utf-8") as fh:
                    for i in range(args.items):
                        fh.write(json.dumps({"id": f"u{i}", "text": f"new {review_text(i)}"}))
                        fh.write("\n")
                spec = write_spec(root, unseen_rows, "unseen")
                fourth, _ = submit_spec(ctx.store, spec, utcnow(), ctx.prices)
                unseen_s = _lookup_seconds(ctx.store, fourth.id, ctx.api.endpoint)
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{args.items:,} items, {args.distinct:,} distinct params, {store}:")
    print(f"cache lookup, {args.distinct:,} new items in an empty store: {empty_s:.3f} s")
    print(
        f"cache (dedupe = false): plan step {cached_s:.2f} s, {answered:,} answered "
        f"from the store ({report.details})"
    )
    print(
        f"dedupe (cache = false): record {recorded_s:.2f} s, plan step {planned_s:.2f} s "
        f"({planned.details}); item states { ({str(s): n for s, n in sent.items()}) }"
    )
    print(
        f"cache lookup, {args.items:,} new items beside {args.distinct:,} stored answers: "
        f"{unseen_s:.3f} s"
    )


def _lookup_seconds(store: Store, job_id: int, endpoint: str) -> float:
    """The cache lookup alone, on a job none of whose items it can answer."""
    started = time.perf_counter()
    hits, _saved = store.apply_response_cache(job_id, utcnow(), endpoint)
    seconds = time.perf_counter() - started
    assert hits == 0, hits
    return seconds


if __name__ == "__main__":
    main()
