"""Profile: where ``orchestrator run`` spends its time on a 100,000-item job.

Runs the job in a child process under py-spy (sampling at 50 Hz, installed with the
``dev`` extra) against a simulator in its own process, then prints the share of
samples under each phase of the run (inclusive) and the functions that were on CPU
themselves (self), the figures ``bench/RESULTS.md`` records before and after.

    .venv/bin/python bench/run_profile.py [--items 100000] [--keep profile.txt]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _common import child_env, simulator, write_rows, write_spec

#: Phases of a run, by the function that holds them (inclusive samples).
PHASES = (
    ("recording the items", "JobOps.create_job"),
    ("the estimate (new job)", "estimate"),
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


def summarize(raw: Path, top: int = 15) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = _frames(stack)
        for name in {name for name, file in frames if "orchestrator/" in file}:
            inclusive[name] += n
        if frames:
            name, file = frames[-1]
            module = file.split("site-packages/")[-1].split("/main/")[-1]
            own[f"{name} ({module})"] += n
    lines = [f"{total:,} samples", "", "| phase | share |", "|---|---:|"]
    for label, function in PHASES:
        lines.append(f"| {label} (`{function}`) | {100 * inclusive[function] / total:.1f} % |")
    lines += ["", "| on CPU itself (self) | share |", "|---|---:|"]
    for name, n in own.most_common(top):
        lines.append(f"| `{name}` | {100 * n / total:.1f} % |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="also keep py-spy's raw output here")
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[dev]'")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = root / "rows.jsonl"
        write_rows(rows, args.items)
        spec = write_spec(root, rows)
        raw = root / "profile.txt"
        with simulator() as base_url:
            env = child_env(base_url, f"sqlite:///{root / 'store.db'}")
            command = [sys.executable, "-m", "orchestrator", "run", str(spec)]
            done = subprocess.run(
                [spy, "record", "-r", "50", "-f", "raw", "-o", str(raw), "--", *command],
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
        print(summarize(raw))


if __name__ == "__main__":
    main()
