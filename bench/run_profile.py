"""Profile: where ``orchestrator run`` spends its time on a 100,000-item job.

Runs the job in a child process under py-spy (sampling at 50 Hz, installed with the
``dev`` extra) against a simulator in its own process, then prints the share of
samples under each phase of the run (inclusive) and the functions that were on CPU
themselves (self), the figures ``bench/RESULTS.md`` records before and after.

The store is a new SQLite file, or with ``--postgres`` a database in a throwaway
PostgreSQL cluster, made by ``orchestrator db upgrade`` before the profiled run (as
``end_to_end.py`` does). On PostgreSQL much of the time is the server's, which py-spy
does not see: the samples of the client waiting on it are counted, under the
statement that waits (``do_execute``, ``copy``), with ``--idle``, and only the main
thread's samples are summed (the run's own work: other threads mostly wait).

    .venv/bin/python bench/run_profile.py [--items 100000] [--postgres] [--keep profile.txt]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import (
    child_env,
    compile_package,
    postgres,
    run_child,
    simulator,
    write_rows,
    write_spec,
)

#: Phases of a run, by the function that holds them (inclusive samples).
PHASES = (
    ("recording the items", "JobOps.create_job"),
    ("the estimate: its sample counted (new job)", "EstimateTally.finish"),
    ("planning", "plan"),
    ("  cache lookup", "PlanningOps.apply_response_cache"),
    ("submitting (body + create)", "submit"),
    ("polling", "poll"),
    ("ingesting", "ingest_batch"),
    ("  download + parse + insert", "_download"),
    ("  resolving the items", "_finish"),
)
_FRAME = re.compile(r"^(?P<name>.+?) \((?P<file>.*?)(?::\d+)?\)$")


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        found = _FRAME.match(frame)
        if found:
            out.append((found["name"], found["file"]))
    return out


def summarize(raw: Path, top: int = 15, main_thread_only: bool = False) -> str:
    """The phases' shares and the top functions of a py-spy raw profile;
    ``main_thread_only``: leave out the samples of other threads (with ``--idle``,
    threads that wait all along would otherwise make up most of the samples)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = _frames(stack)
        if main_thread_only and frames and frames[0][0].endswith("_bootstrap"):
            continue  # a thread's stack begins in threading.Thread._bootstrap
        total += n
        for name in {name for name, file in frames if "orchestrator/" in file}:
            inclusive[name] += n
        if frames:
            name, file = frames[-1]
            module = file.split("site-packages/")[-1].split("/main/")[-1]
            own[f"{name} ({module})"] += n
    lines = [
        f"{total:,} samples" + (" (the main thread's)" if main_thread_only else ""),
        "",
        "| phase | share |",
        "|---|---:|",
    ]
    for label, function in PHASES:
        lines.append(f"| {label} (`{function}`) | {100 * inclusive[function] / total:.1f} % |")
    lines += ["", "| on CPU itself (self) | share |", "|---|---:|"]
    for name, n in own.most_common(top):
        lines.append(f"| `{name}` | {100 * n / total:.1f} % |")
    return "\n".join(lines)


@contextmanager
def _store(use_postgres: bool, root: Path) -> Iterator[str]:
    """The store's URL: a new SQLite file, or a migrated PostgreSQL database."""
    if not use_postgres:
        yield f"sqlite:///{root / 'store.db'}"
        return
    with postgres() as url:
        yield url


def _upgrade(env: dict[str, str]) -> None:
    made = run_child([sys.executable, "-m", "orchestrator", "db", "upgrade"], env)
    if made.returncode != 0:
        raise SystemExit(f"orchestrator db upgrade exited {made.returncode}:\n{made.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL store")
    parser.add_argument("--keep", type=Path, help="also keep py-spy's raw output here")
    args = parser.parse_args()
    compile_package()  # the run imports bytecode, as installed: no compiling in the profile
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[dev]'")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = root / "rows.jsonl"
        write_rows(rows, args.items)
        spec = write_spec(root, rows)
        raw = root / "profile.txt"
        with simulator() as base_url, _store(args.postgres, root) as database_url:
            env = child_env(base_url, database_url)
            if args.postgres:
                _upgrade(env)
            command = [sys.executable, "-m", "orchestrator", "run", str(spec)]
            # Idle samples too on PostgreSQL: there the client mostly waits on the server.
            idle = ["--idle"] if args.postgres else []
            done = subprocess.run(
                [spy, "record", "-r", "50", *idle, "-f", "raw", "-o", str(raw), "--", *command],
                env=env,
                cwd=root,
                capture_output=True,
                text=True,
                check=False,
            )
        if done.returncode != 0 or not raw.exists():
            raise SystemExit(f"the profiled run failed:\n{done.stderr[-3000:]}")
        if args.keep:
            shutil.copyfile(raw, args.keep)
        print(summarize(raw, main_thread_only=args.postgres))


if __name__ == "__main__":
    main()
