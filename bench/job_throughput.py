"""Benchmark: one whole job through the orchestrator against the simulator.

Generates N items, runs them end to end (plan, create, poll, ingest, resolve)
into a fresh SQLite store in this process, and prints the wall time per phase
and the peak RSS, so flat memory (design §5.7) is checked with numbers rather
than a timed test. Usage::

    .venv/bin/python bench/job_throughput.py --items 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from orchestrator.domain.pricing import PriceTable
from orchestrator.domain.states import ItemStatus
from orchestrator.runner import drive, step_context
from orchestrator.settings import load_settings
from orchestrator.simulator import SimulatorConfig, SimulatorServer
from orchestrator.steps.context import utcnow
from orchestrator.steps.jobs import submit_spec
from orchestrator.store.engine import make_engine, upgrade


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_job(root: Path, items: int) -> Path:
    with (root / "rows.jsonl").open("w") as fh:
        for i in range(items):
            text = f"Review {i}: the product was {'great' if i % 3 else 'broken'}, would buy again?"
            fh.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")
    spec = root / "spec.toml"
    spec.write_text(
        'name = "bench"\ninput = "rows.jsonl"\nkey = "id"\n[request]\n'
        'model = "claude-haiku-4-5"\nmax_tokens = 16\n'
        'prompt = "Review: {text}\\nAnswer positive, negative or neutral."\n'
    )
    return spec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument(
        "--base-url",
        help="a simulator already running (e.g. `orchestrator simulate`), so "
        "its memory is not counted in this process's RSS; default: one in this process",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = write_job(root, args.items)
        url = f"sqlite:///{root / 'bench.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        with ExitStack() as stack:
            base_url = (
                args.base_url
                or stack.enter_context(
                    SimulatorServer(SimulatorConfig(processing_seconds=0.5))
                ).base_url
            )
            settings = load_settings(
                api_key="sk-bench", base_url=base_url, database_url=url, poll_interval_s=0.2
            )
            ctx = stack.enter_context(step_context(settings))
            started = time.perf_counter()
            job, _ = submit_spec(ctx.store, spec, utcnow(), PriceTable.load())
            recorded = time.perf_counter()
            report = drive(ctx, job.id, lambda _r: None)
            finished = time.perf_counter()
    print(f"items:              {args.items:,}")
    print(f"record items:       {recorded - started:.1f} s")
    print(f"submit..resolved:   {finished - recorded:.1f} s")
    print(
        f"total:              {finished - started:.1f} s "
        f"({args.items / (finished - started):,.0f} items/s)"
    )
    print(f"succeeded:          {report.items.get(ItemStatus.SUCCEEDED, 0):,}")
    print(f"peak RSS:           {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
