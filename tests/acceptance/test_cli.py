"""The real CLI in subprocesses against the simulator over HTTP (design §4, issue 4).

The simulator runs in this test process (a thread on loopback) so its ledger --
every batch created, every custom_id submitted, every result line served -- can
be checked against what the orchestrator stored and exported.
"""

from __future__ import annotations

import collections
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.outcomes import RETRYABLE_ERROR_TYPES
from orchestrator.domain.planning import parse_custom_id
from orchestrator.simulator import SimulatorConfig, SimulatorServer
from tests.acceptance.support import SECRET_KEY, clean_env, sim_env
from tests.acceptance.support import cli as _cli

ITEMS = 5000
MAX_ATTEMPTS = 3
ERRORED_SHARE = {
    "invalid_request_error": 0.02,
    "api_error": 0.015,
    "overloaded_error": 0.01,
    "rate_limit_error": 0.005,
}
EXPIRED_SHARE = 0.02

pytestmark = pytest.mark.timeout(300)


def _write_job(root: Path, name: str, items: int) -> Path:
    words = ["great", "terrible", "okay", "love it", "broke", "fine", "refund", "café ☕"]
    with (root / "rows.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(items):
            row = {"id": f"row:{i}/x", "text": f'Review {i}: {words[i % len(words)]}, "quoted"'}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    spec = root / "spec.toml"
    spec.write_text(
        f'name = "{name}"\ninput = "rows.jsonl"\nkey = "id"\n'
        '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 16\n'
        'prompt = "Review: {text}\\nAnswer positive, negative or neutral."\n'
        f"[batching]\nmax_requests = 2000\n[retry]\nmax_attempts = {MAX_ATTEMPTS}\n",
        encoding="utf-8",
    )
    return spec


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(
        processing_seconds=0.5, errored_share=ERRORED_SHARE, expired_share=EXPIRED_SHARE, seed=7
    )
    with SimulatorServer(config) as sim:
        yield sim


def _env(sim: SimulatorServer, db: Path) -> dict[str, str]:
    return sim_env(sim, db)


def _final_rows(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM final_results ORDER BY ordinal")]
    finally:
        conn.close()


def _history(ledger: dict[str, Any]) -> dict[int, list[tuple[int, str, str]]]:
    """item id -> [(attempt, custom_id, result type served)] from the simulator's ledger."""
    served = {line["custom_id"]: line["type"] for line in ledger["served"]}
    history: dict[int, list[tuple[int, str, str]]] = collections.defaultdict(list)
    for custom_id in ledger["submissions"]:
        parts = parse_custom_id(custom_id)
        assert parts is not None, f"a custom_id the orchestrator did not make: {custom_id}"
        history[parts.item_id].append((parts.attempt, custom_id, served.get(custom_id, "")))
    return {k: sorted(v) for k, v in history.items()}


def test_run_5000_items_to_completion_agrees_with_ledger(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    spec = _write_job(tmp_path, "acceptance", ITEMS)
    env = _env(simulator, db)
    assert _cli(env, "db", "upgrade").returncode == 0
    run = _cli(env, "run", str(spec))
    # Invalid requests fail for good: the job ends with failed items (exit 3).
    assert run.returncode == 3, run.stderr[-3000:]
    assert "failed: invalid_request_error" in run.stdout

    rows = _final_rows(db)
    assert len(rows) == ITEMS
    assert len({r["key"] for r in rows}) == ITEMS
    assert {r["status"] for r in rows} <= {"succeeded", "failed"}
    ledger = simulator.state.ledger.to_json()

    # No request was ever sent twice, and each item was sent exactly `attempts` times.
    assert max(ledger["submissions"].values()) == 1
    history = _history(ledger)
    rows_by_id = {r["item_id"]: r for r in rows}
    assert set(history) == set(rows_by_id)
    for item_id, attempts in history.items():
        row = rows_by_id[item_id]
        assert [a for a, _, _ in attempts] == list(range(1, row["attempts"] + 1))
        # The final attempt is the exported custom_id, with the type the simulator served.
        final_attempt, final_custom_id, final_type = attempts[-1]
        assert row["custom_id"] == final_custom_id
        assert row["result_type"] == final_type
        # Retried only where the policy says: every earlier attempt was expired or a
        # server-side error; never after a success or an invalid request.
        for _, _, earlier in attempts[:-1]:
            assert earlier in ("expired", "errored")
        if row["status"] == "failed" and row["error_type"] in RETRYABLE_ERROR_TYPES | {"expired"}:
            assert final_attempt == MAX_ATTEMPTS
        if row["error_type"] == "invalid_request_error":
            assert row["status"] == "failed"

    # Retries happened (the outcome mix guarantees some) and succeeded answers are text.
    assert sum(1 for r in rows if r["attempts"] > 1) > ITEMS * 0.02
    succeeded = [r for r in rows if r["status"] == "succeeded"]
    assert len(succeeded) > ITEMS * 0.95
    assert {r["text"] for r in succeeded} <= {"positive", "negative", "neutral"}
    assert sum(ledger["paid"].values()) == len(succeeded)

    # The export says the same as the view.
    out = tmp_path / "export.jsonl"
    assert _cli(env, "export", "acceptance", "--format", "jsonl", "-o", str(out)).returncode == 0
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(e["key"], e["custom_id"], e["result_type"], e["text"]) for e in exported] == [
        (r["key"], r["custom_id"], r["result_type"], r["text"]) for r in rows
    ]

    # The key never lands in the store, the export or the output.
    assert SECRET_KEY.encode() not in db.read_bytes()
    assert SECRET_KEY not in out.read_text(encoding="utf-8") + run.stdout + run.stderr


def test_killed_run_resumes_without_resending(simulator: SimulatorServer, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    spec = _write_job(tmp_path, "resume", 3000)
    env = _env(simulator, db)
    env["ORCHESTRATOR_POLL_INTERVAL"] = "0.5"
    # The kill may land mid-create: a short create window keeps reconciling it quick.
    env["ORCHESTRATOR_REQUEST_TIMEOUT"] = "5"
    env["ORCHESTRATOR_RECONCILE_SKEW"] = "2"
    simulator.state.configure(processing_seconds=3.0)
    assert _cli(env, "db", "upgrade").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", str(spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not simulator.state.ledger.batches and time.monotonic() < deadline:
        time.sleep(0.05)
    assert simulator.state.ledger.batches, "the run never created a batch"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    again = _cli(env, "run", str(spec))
    assert again.returncode in (0, 3), again.stderr[-3000:]
    assert "resuming" in again.stdout
    ledger = simulator.state.ledger.to_json()
    assert max(ledger["submissions"].values()) == 1
    rows = _final_rows(db)
    assert len(rows) == 3000
    assert all(r["status"] in ("succeeded", "failed") for r in rows)


def test_daemon_finishes_a_submitted_job_and_stops_on_sigterm(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    spec = _write_job(tmp_path, "daemonized", 500)
    env = _env(simulator, db)
    assert _cli(env, "db", "upgrade").returncode == 0
    submitted = _cli(env, "submit", str(spec))
    assert submitted.returncode == 0
    assert "daemonized" in submitted.stdout
    daemon = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "daemon"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = _cli(env, "status", "daemonized")
            if "daemonized (id 1): done" in status.stdout:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the daemon did not finish the job")
    finally:
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err[-2000:]
    assert time.monotonic() - started < 30
    assert "daemon stopped" in err
    assert SECRET_KEY not in err


def test_bad_spec_is_one_clear_line_and_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "bad"\ninput = "rows.jsonl"\nkey = "id"\nunknown_field = 1\n')
    (tmp_path / "rows.jsonl").write_text('{"id": "a", "text": "x"}\n')
    db = tmp_path / "store.db"
    env = clean_env(ORCHESTRATOR_DATABASE_URL=f"sqlite:///{db}", ANTHROPIC_API_KEY="sk-x")
    assert _cli(env, "db", "upgrade").returncode == 0
    result = _cli(env, "submit", str(spec))
    assert result.returncode == 2
    assert "unknown_field" in result.stderr
    assert "Traceback" not in result.stderr
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    finally:
        conn.close()


def test_missing_key_names_the_variable(tmp_path: Path) -> None:
    env = clean_env(ORCHESTRATOR_DATABASE_URL=f"sqlite:///{tmp_path / 's.db'}")
    assert _cli(env, "db", "upgrade").returncode == 0
    result = _cli(env, "batches")
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_store_not_at_head_is_refused(tmp_path: Path) -> None:
    """A SQLite file that is not there is named and left uncreated (a read command
    makes no store); an empty one is refused as not at the head."""
    store = tmp_path / "fresh.db"
    env = clean_env(ORCHESTRATOR_DATABASE_URL=f"sqlite:///{store}")
    result = _cli(env, "status")
    assert result.returncode == 1
    assert "orchestrator db upgrade" in result.stderr
    assert "no such file" in result.stderr
    health = _cli(env, "healthcheck")
    assert health.returncode == 1
    assert not store.exists()

    store.touch()
    empty = _cli(env, "status")
    assert empty.returncode == 1
    assert "is at an empty database" in empty.stderr
    assert "orchestrator db upgrade" in empty.stderr
