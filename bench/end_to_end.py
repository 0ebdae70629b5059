"""Benchmark: a whole job through ``orchestrator run`` beside the bare SDK loop.

Both run as child processes against one simulator (its own process, 0.5 s processing),
alternating A B A B ...; the medians are compared. ``orchestrator run`` records the
items, plans, creates, polls, ingests and resolves into a fresh store each time; the
SDK loop (``bench/sdk_loop.py``) creates, polls and iterates the results, storing
nothing. The orchestrator's bytecode is written first (``compile_package``), so both
import theirs as installed.
Each round shows the child's wall time and its own CPU time (all its threads): ours
uses the second core while it records and ingests, so a busy machine slows it more.

    .venv/bin/python bench/end_to_end.py --items 100000 --rounds 2            # SQLite
    .venv/bin/python bench/end_to_end.py --items 100000 --rounds 2 --postgres # PostgreSQL
    .venv/bin/python bench/end_to_end.py --items 1000000 --rounds 1 --no-sdk  # 1M items
    .venv/bin/python bench/end_to_end.py --items 100000 --max-requests 25000  # 4 batches
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import (
    ChildRun,
    child_env,
    compile_package,
    median,
    postgres,
    run_child,
    simulator,
    write_rows,
    write_spec,
)


@contextmanager
def _databases(use_postgres: bool, root: Path) -> Iterator[Iterator[str]]:
    """A fresh database URL per orchestrator run."""
    if not use_postgres:

        def files() -> Iterator[str]:
            n = 0
            while True:
                n += 1
                yield f"sqlite:///{root / f'store-{n}.db'}"

        yield files()
        return
    import psycopg

    with postgres() as server:
        plain = server.replace("postgresql+psycopg://", "postgresql://")

        def fresh() -> Iterator[str]:
            n = 0
            while True:
                n += 1
                with psycopg.connect(plain, autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE bench_{n}")
                yield server.rsplit("/", 1)[0] + f"/bench_{n}"

        yield fresh()


def _orchestrator(spec: Path, base_url: str, database_url: str) -> ChildRun:
    env = child_env(base_url, database_url)
    if database_url.startswith("postgresql"):
        # A PostgreSQL store is made once, by `db upgrade` (a new SQLite file is made by
        # `run` itself, inside the time measured).
        made = run_child([sys.executable, "-m", "orchestrator", "db", "upgrade"], env)
        if made.returncode != 0:
            raise SystemExit(f"orchestrator db upgrade exited {made.returncode}:\n{made.stderr}")
    run = run_child([sys.executable, "-m", "orchestrator", "run", str(spec)], env, spec.parent)
    if run.returncode != 0:
        raise SystemExit(f"orchestrator run exited {run.returncode}:\n{run.stderr[-3000:]}")
    return run


def _sdk(rows: Path, base_url: str) -> ChildRun:
    script = Path(__file__).resolve().parent / "sdk_loop.py"
    run = run_child([sys.executable, str(script), str(rows)], child_env(base_url))
    if run.returncode != 0:
        raise SystemExit(f"the SDK loop exited {run.returncode}:\n{run.stderr[-3000:]}")
    counts = json.loads(run.stdout)
    if sum(counts.values()) != _count(rows):
        raise SystemExit(f"the SDK loop saw {counts}, not every row")
    return run


def _count(rows: Path) -> int:
    with rows.open("rb") as fh:
        return sum(1 for _ in fh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="A B pairs (medians over them)")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL store")
    parser.add_argument("--no-sdk", action="store_true", help="the orchestrator only")
    parser.add_argument(
        "--max-requests",
        type=int,
        help="the spec's [batching] max_requests (default: the API's 100,000 a batch)",
    )
    args = parser.parse_args()
    compile_package()  # imported as installed: from bytecode, as the SDK is
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = root / "rows.jsonl"
        write_rows(rows, args.items)
        batching = f"[batching]\nmax_requests = {args.max_requests}\n" if args.max_requests else ""
        spec = write_spec(root, rows, extra=batching)
        ours: list[ChildRun] = []
        theirs: list[ChildRun] = []
        with simulator() as base_url, _databases(args.postgres, root) as urls:
            for n in range(args.rounds):
                ours.append(_orchestrator(spec, base_url, next(urls)))
                print(
                    f"round {n + 1}: orchestrator run {ours[-1].seconds:6.1f} s "
                    f"(CPU {ours[-1].cpu_s:4.1f} s), peak RSS {ours[-1].peak_rss_mb:.0f} MB",
                    flush=True,
                )
                if not args.no_sdk:
                    theirs.append(_sdk(rows, base_url))
                    sdk = theirs[-1]
                    print(
                        f"round {n + 1}: SDK loop         {sdk.seconds:6.1f} s "
                        f"(CPU {sdk.cpu_s:4.1f} s), peak RSS {sdk.peak_rss_mb:.0f} MB",
                        flush=True,
                    )
    store = "PostgreSQL" if args.postgres else "SQLite"
    a = median([r.seconds for r in ours])
    split = f", max_requests {args.max_requests:,}" if args.max_requests else ""
    print(f"\n{args.items:,} items, {store}{split}, {args.rounds} round(s), medians:")
    print(
        f"orchestrator run: {a:.1f} s ({args.items / a:,.0f} items/s), "
        f"peak RSS {max(r.peak_rss_mb for r in ours):.0f} MB"
    )
    if theirs:
        b = median([r.seconds for r in theirs])
        print(f"SDK loop:         {b:.1f} s, peak RSS {max(r.peak_rss_mb for r in theirs):.0f} MB")
        print(f"ratio:            {a / b:.2f}x")


if __name__ == "__main__":
    main()
