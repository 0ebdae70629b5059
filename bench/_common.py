"""What the benchmarks share: a simulator in its own process, children timed with their
own peak RSS, the job rows and spec, and a throwaway PostgreSQL cluster.

Run every script from the repository root (``.venv/bin/python bench/<name>.py``); each
prints its figures, and ``bench/RESULTS.md`` records them with the command.
"""

from __future__ import annotations

import compileall
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/x.py` puts bench/, not the root, on sys.path
    sys.path.insert(0, str(REPO))

BENCH_KEY = "sk-bench-not-a-real-key"
PROMPT = "Review: {text}\nAnswer positive, negative or neutral."
MODEL = "claude-haiku-4-5"
MAX_TOKENS = 16


def compile_package() -> None:
    """Write the orchestrator's bytecode (``__pycache__``), as installing the wheel does.

    The children import the package from this checkout; with ``PYTHONDONTWRITEBYTECODE``
    set (as it is on the development VM) each of them would compile every module again,
    about 0.1 s a start, while the SDK loop imports the SDK's bytecode from site-packages.
    """
    if not compileall.compile_dir(REPO / "orchestrator", quiet=1):
        raise SystemExit("could not compile the orchestrator package")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def review_text(i: int) -> str:
    return f"Review {i}: the product was {'great' if i % 3 else 'broken'}, would buy again?"


def write_rows(path: Path, items: int, distinct: int | None = None) -> None:
    """``items`` JSONL rows ``{"id", "text"}``; with ``distinct``, texts repeat modulo it."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(items):
            text = review_text(i if distinct is None else i % distinct)
            fh.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")


def write_spec(root: Path, rows: Path, name: str = "bench", extra: str = "") -> Path:
    spec = root / f"{name}.toml"
    prompt = json.dumps(PROMPT)
    spec.write_text(
        f'name = "{name}"\ninput = "{rows.name}"\nkey = "id"\n{extra}'
        f'[request]\nmodel = "{MODEL}"\nmax_tokens = {MAX_TOKENS}\nprompt = {prompt}\n',
        encoding="utf-8",
    )
    return spec


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    peak_rss_mb: float
    #: The child's own CPU time, user + system, all threads (``wait4``).
    cpu_s: float
    stdout: str
    stderr: str
    returncode: int


def run_child(args: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> ChildRun:
    """Run ``args`` to the end; its wall time, its own CPU time and peak RSS (``wait4``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(args), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return ChildRun(
            seconds,
            usage.ru_maxrss / 1024,
            usage.ru_utime + usage.ru_stime,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            proc.returncode,
        )


@contextmanager
def simulator(processing_seconds: float = 0.5, **options: str) -> Iterator[str]:
    """``orchestrator simulate`` in its own process; yields its base URL."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "orchestrator",
        "simulate",
        "--port",
        str(port),
        "--processing-seconds",
        str(processing_seconds),
        "--processing-jitter",
        "0",
    ]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", value]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/v1/messages/batches", headers={"x-api-key": BENCH_KEY})
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"the simulator did not start: {err[-2000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (the test suite's), as a psycopg URL."""
    from tests.support.postgres import throwaway_cluster

    with throwaway_cluster() as url:
        yield url


def child_env(base_url: str, database_url: str = "", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "ANTHROPIC_"))}
    env.update(
        PYTHONPATH=str(REPO),
        ANTHROPIC_API_KEY=BENCH_KEY,
        ANTHROPIC_BASE_URL=base_url,
        ORCHESTRATOR_POLL_INTERVAL="0.2",
        **extra,
    )
    if database_url:
        env["ORCHESTRATOR_DATABASE_URL"] = database_url
    return env


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
