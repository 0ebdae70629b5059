"""What the acceptance tests share: the real CLI in a subprocess, a clean environment,
small job specs, and reading a SQLite store the way a user would (sqlite3)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.simulator import SimulatorServer

SECRET_KEY = "sk-ant-acceptance-SECRET-1234567890"

#: The kill and fault suite (``make reliability``; CI runs it after ``make test``): minutes
#: of SIGKILLs, fault storms and restarted databases, kept out of ``make test`` for time.
RELIABILITY_SUITE = pytest.mark.skipif(
    os.environ.get("ORCHESTRATOR_RELIABILITY_SUITE") != "1",
    reason="the long kill/fault suite runs with ORCHESTRATOR_RELIABILITY_SUITE=1 "
    "(make reliability)",
)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ANTHROPIC_/ORCHESTRATOR_ variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "ORCHESTRATOR_"))}
    env.update(extra)
    return env


def sim_env(sim: SimulatorServer, db: Path, **extra: str) -> dict[str, str]:
    """Settings for a CLI run against ``sim`` with a SQLite store at ``db``."""
    return clean_env(
        ANTHROPIC_API_KEY=SECRET_KEY,
        ANTHROPIC_BASE_URL=sim.base_url,
        ORCHESTRATOR_DATABASE_URL=f"sqlite:///{db}",
        ORCHESTRATOR_POLL_INTERVAL="0.2",
        ORCHESTRATOR_LEASE_TTL="5",
        ORCHESTRATOR_LOG_LEVEL="INFO",
        **extra,
    )


def cli(
    env: dict[str, str], *args: str, timeout: float = 240, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m orchestrator ARGS`` (stdout and stderr captured: a pipe, not a TTY)."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_spec(root: Path, name: str, items: int, *, extra: str = "", data: str = "rows") -> Path:
    """A labeling spec over ``items`` rows written beside it; returns the spec's path."""
    write_rows(root / f"{data}.jsonl", [{"id": f"k{i}", "text": f"text {i}"} for i in range(items)])
    spec = root / f"{name}.toml"
    spec.write_text(
        f'name = "{name}"\ninput = "{data}.jsonl"\nkey = "id"\n{extra}\n'
        '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 8\nprompt = "Say {text}"\n',
        encoding="utf-8",
    )
    return spec


def query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()
