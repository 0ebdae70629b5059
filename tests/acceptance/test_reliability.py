"""Reliability as a user would notice it: kill ``run`` or the daemon at any moment, let
the API fail and cut downloads, share a store or a key, and the answers are still all
there, each request paid once, each remote batch ours.

The CLI runs in subprocesses with DEFAULT settings (but a short poll interval); the
simulator runs in this process, so its ledger (every batch created, every custom_id
submitted) is checked against the SQLite stores.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.simulator import SimulatorConfig, SimulatorServer
from tests.acceptance.reliability_support import (
    CREATE_LANDED,
    CREATING_ROW,
    EXITED,
    RANDOM,
    RESULTS_STORED,
    UNKNOWN_ROW,
    NeighbourAtTheFirstCreate,
    Procs,
    assert_items_terminal_once,
    assert_sent_once,
    assert_store_agrees_with_ledger,
    default_env,
    job_status,
    kill_at_a_moment,
    write_job,
)
from tests.acceptance.support import RELIABILITY_SUITE, cli, query

pytestmark = RELIABILITY_SUITE


#: The job the kill tests run: ~10 batches of 1,000, then retries.
KILL_ITEMS = 10_000
KILL_MAX_REQUESTS = 1000
KILLS = 10
#: How much longer than an uninterrupted run a run killed KILLS times may take.
KILL_SLACK_S = 180.0


def _faulty_config(seed: int, processing_seconds: float) -> SimulatorConfig:
    """Faults everywhere: 429s and 500s on any call, creates answered 500 (half of them
    made anyway), cut downloads, and results that are errored or expired."""
    return SimulatorConfig(
        seed=seed,
        processing_seconds=processing_seconds,
        fault_429_share=0.03,
        fault_500_share=0.03,
        # Every create answered 500 that made nothing holds the job ~15 s (the listing's
        # settle time) before it is planned again; 5 % keeps a run within one or two minutes.
        create_500_share=0.05,
        cut_results_share=0.2,
        expired_share=0.02,
        errored_share={"api_error": 0.02, "invalid_request_error": 0.01},
    )


#: Where `run` is killed, kill after kill: the instant a create lands on the API, with a
#: ``creating`` row (its POST most likely not sent yet: that create holds the job's next
#: creates for the create timeout, ~45 s by default, so only once), mid-reconciliation,
#: mid-ingest, at random.
RUN_KILLS = (
    CREATE_LANDED,
    CREATING_ROW,
    UNKNOWN_ROW,
    RESULTS_STORED,
    RANDOM,
    CREATE_LANDED,
    RESULTS_STORED,
    RANDOM,
    CREATE_LANDED,
    RANDOM,
)
DAEMON_KILLS = (CREATE_LANDED, RANDOM, RESULTS_STORED, UNKNOWN_ROW)
#: Batches of the `run` kill test take 8 s, so the job outlasts ten kills. A kill comes
#: every 1.5-3 s, and the job waits for each round of its batches (the first, then the
#: retries of errored and expired requests, usually their retries too). At 1 s a fast
#: run ended by itself after nine kills in 17 s; at 8 s a probe that kept killing made
#: 21 kills before the job ended.
RUN_PROCESSING_S = 8.0
#: The daemon resumes faster than `run` (no spec to read again): batches that take 2 s
#: keep its job going through ten kills.
DAEMON_PROCESSING_S = 2.0
#: Seeds of the kill moments and of the simulators (module constants, so a probe can vary them).
RUN_KILL_SEED = 20240601
DAEMON_KILL_SEED = 77
SIM_SEED = 17
#: Simulator seeds of the shared-store and shared-key tests: each makes some creates
#: answered 500 (made or not) without many that made nothing (each holds creates ~15 s).
SHARED_STORE_SEED = 6
SHARED_KEY_SEED = 67


def _store_state(db: Path) -> str:
    """What the store shows, for a failure message."""
    try:
        batches = query(db, "SELECT status, count(*) FROM batches GROUP BY status")
        items = query(db, "SELECT status, count(*) FROM items GROUP BY status")
        errors = query(
            db, "SELECT id, status, last_error FROM batches WHERE last_error IS NOT NULL"
        )
    except sqlite3.Error as exc:
        return f"store unreadable: {exc}"
    return f"batches {batches}; items {items}; batch errors {errors[-5:]}"


def _final_answers(db: Path, job: str) -> dict[str, tuple[Any, ...]]:
    rows = query(
        db, "SELECT key, status, result_type, text FROM final_results WHERE job_name = ?", job
    )
    return {str(r[0]): tuple(r[1:]) for r in rows}


# -- 1. kill `run` at random moments ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_run_killed_ten_times_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(RUN_KILL_SEED)
    # An uninterrupted run of the same job, for the time it takes.
    clean_root = tmp_path / "clean"
    clean_root.mkdir()
    with SimulatorServer(_faulty_config(SIM_SEED, RUN_PROCESSING_S)) as sim:
        clean_db = clean_root / "store.db"
        spec = write_job(clean_root, "kill", KILL_ITEMS, max_requests=KILL_MAX_REQUESTS)
        started = time.monotonic()
        clean = cli(default_env(sim, clean_db), "run", str(spec), timeout=300)
        clean_s = time.monotonic() - started
    assert clean.returncode in (0, 3), clean.stderr[-3000:]

    root = tmp_path / "killed"
    root.mkdir()
    procs = Procs(root)
    with SimulatorServer(_faulty_config(SIM_SEED, RUN_PROCESSING_S)) as sim:
        db = root / "store.db"
        spec = write_job(root, "kill", KILL_ITEMS, max_requests=KILL_MAX_REQUESTS)
        env = default_env(sim, db)
        moments: list[str] = []
        try:
            started = time.monotonic()
            while len(moments) < KILLS:
                proc = procs.start(env, "run", str(spec))
                moment = kill_at_a_moment(proc, RUN_KILLS[len(moments)], rng, sim, db)
                if moment == EXITED:
                    assert proc.popen.returncode in (0, 3), proc.stderr()[-3000:]
                    break
                moments.append(moment)
            last = procs.start(env, "run", str(spec))
            budget = clean_s + KILL_SLACK_S - (time.monotonic() - started)
            try:
                last.popen.wait(timeout=max(budget, 1.0))
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"killed {len(moments)} times ({moments}), the run did not finish within "
                    f"{KILL_SLACK_S:.0f} s of the clean run's {clean_s:.0f} s: {_store_state(db)}"
                )
            elapsed = time.monotonic() - started
        finally:
            procs.end_all()
        ledger = sim.state.ledger.to_json()

    print(f"clean run {clean_s:.1f} s; killed at {moments}; killed run {elapsed:.1f} s")
    assert len(moments) >= KILLS, f"the job finished after only {len(moments)} kills"
    assert CREATE_LANDED in moments
    assert last.popen.returncode in (0, 3), last.stderr()[-3000:]
    assert elapsed <= clean_s + KILL_SLACK_S
    assert not procs.tracebacks()
    assert_items_terminal_once(db, "kill", KILL_ITEMS)
    assert_sent_once(ledger)
    assert_store_agrees_with_ledger(ledger, db)


# -- 2. the same with the daemon ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_daemon_killed_ten_times_loses_nothing_and_stops_on_sigterm(tmp_path: Path) -> None:
    rng = random.Random(DAEMON_KILL_SEED)
    procs = Procs(tmp_path)
    with SimulatorServer(_faulty_config(SIM_SEED + 1, DAEMON_PROCESSING_S)) as sim:
        db = tmp_path / "store.db"
        spec = write_job(tmp_path, "daemonized", KILL_ITEMS, max_requests=KILL_MAX_REQUESTS)
        env = default_env(sim, db)
        submitted = cli(env, "submit", str(spec))
        assert submitted.returncode == 0, submitted.stderr
        moments: list[str] = []
        try:
            while len(moments) < KILLS and job_status(db, "daemonized") != "done":
                proc = procs.start(env, "daemon")
                moment = kill_at_a_moment(
                    proc, DAEMON_KILLS[len(moments) % len(DAEMON_KILLS)], rng, sim, db
                )
                assert moment != EXITED, f"the daemon exited by itself: {proc.stderr()[-2000:]}"
                moments.append(moment)
            last = procs.start(env, "daemon")
            deadline = time.monotonic() + 240
            while job_status(db, "daemonized") != "done":
                assert last.alive(), f"the daemon exited: {last.stderr()[-3000:]}"
                if time.monotonic() > deadline:
                    pytest.fail(f"the daemon did not finish the job: {_store_state(db)}")
                time.sleep(0.2)
            signaled = time.monotonic()
            last.popen.send_signal(signal.SIGTERM)
            try:
                last.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail("the daemon did not exit within 10 s of SIGTERM")
            stopped_s = time.monotonic() - signaled
        finally:
            procs.end_all()
        ledger = sim.state.ledger.to_json()

    print(f"daemon killed at {moments}; stopped {stopped_s:.1f} s after SIGTERM")
    assert len(moments) >= KILLS, f"the job finished after only {len(moments)} kills"
    assert CREATE_LANDED in moments
    assert last.popen.returncode == 0, last.stderr()[-3000:]
    assert stopped_s < 10
    assert "daemon stopped" in last.stderr()
    assert not procs.tracebacks()
    assert_items_terminal_once(db, "daemonized", KILL_ITEMS)
    assert_sent_once(ledger)
    assert_store_agrees_with_ledger(ledger, db)


# -- 3. faults don't change the answers ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_transient_faults_and_cut_downloads_do_not_change_the_answers(tmp_path: Path) -> None:
    answers: list[dict[str, tuple[Any, ...]]] = []
    faults: dict[str, Any] = {"fault_500_share": 0.1, "fault_429_share": 0.1}
    for name, extra in (("clean", {}), ("faulty", {**faults, "cut_results_share": 0.3})):
        root = tmp_path / name
        root.mkdir()
        config = SimulatorConfig(seed=41, processing_seconds=0.5, **extra)
        with SimulatorServer(config) as sim:
            db = root / "store.db"
            spec = write_job(root, "answers", 2000, max_requests=500)
            result = cli(default_env(sim, db), "run", str(spec), timeout=200)
            ledger = sim.state.ledger.to_json()
        assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr
        assert_sent_once(ledger)
        faulted = sum(n for k, n in ledger["responses"].items() if k.endswith((" 429", " 500")))
        assert bool(faulted) == bool(extra), f"{name}: {ledger['responses']}"
        answers.append(_final_answers(db, "answers"))
    clean, faulty = answers
    assert len(clean) == 2000
    assert {status for status, _, _ in clean.values()} == {"succeeded"}
    assert faulty == clean


# -- 4. two jobs in one store, creates answered 500 ---------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_daemon_and_run_on_one_store_keep_their_batches_apart(tmp_path: Path) -> None:
    procs = Procs(tmp_path)
    config = SimulatorConfig(seed=SHARED_STORE_SEED, processing_seconds=1.0, create_500_share=0.2)
    with SimulatorServer(config) as sim:
        db = tmp_path / "store.db"
        env = default_env(sim, db)
        job_a = write_job(tmp_path, "job-a", 3000, max_requests=500, prefix="a ")
        job_b = write_job(tmp_path, "job-b", 3000, max_requests=500, prefix="b ")
        submitted = cli(env, "submit", str(job_a))
        assert submitted.returncode == 0, submitted.stderr
        try:
            daemon = procs.start(env, "daemon")
            run = procs.start(env, "run", str(job_b))
            run.popen.wait(timeout=240)
            deadline = time.monotonic() + 120
            while job_status(db, "job-a") != "done":
                assert daemon.alive(), f"the daemon exited: {daemon.stderr()[-3000:]}"
                if time.monotonic() > deadline:
                    pytest.fail(f"the daemon did not finish job-a: {_store_state(db)}")
                time.sleep(0.2)
            daemon.popen.send_signal(signal.SIGTERM)
            daemon.popen.wait(timeout=30)
        finally:
            procs.end_all()
        ledger = sim.state.ledger.to_json()

    assert run.popen.returncode == 0, run.stderr()[-3000:]
    assert daemon.popen.returncode == 0, daemon.stderr()[-3000:]
    assert not procs.tracebacks()
    assert ledger["responses"].get("create 500"), "no create was answered 500"
    assert_items_terminal_once(db, "job-a", 3000)
    assert_items_terminal_once(db, "job-b", 3000)
    assert_sent_once(ledger)
    assert_store_agrees_with_ledger(ledger, db)


# -- 5. two stores sharing one key ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_stores_on_one_key_never_take_each_others_batches(tmp_path: Path) -> None:
    procs = Procs(tmp_path)
    config = SimulatorConfig(seed=SHARED_KEY_SEED, processing_seconds=1.0, create_500_share=0.2)
    stores = {"left": tmp_path / "left.db", "right": tmp_path / "right.db"}
    with SimulatorServer(config) as sim:
        runs = {}
        try:
            for name, db in stores.items():
                spec = write_job(tmp_path, f"job-{name}", 3000, max_requests=500)
                runs[name] = procs.start(default_env(sim, db), "run", str(spec))
            for proc in runs.values():
                proc.popen.wait(timeout=240)
        finally:
            procs.end_all()
        ledger = sim.state.ledger.to_json()

    for name, proc in runs.items():
        assert proc.popen.returncode == 0, f"{name}: {proc.stderr()[-3000:]}"
    assert not procs.tracebacks()
    assert ledger["responses"].get("create 500"), "no create was answered 500"
    assert_sent_once(ledger)
    for name, db in stores.items():
        assert_items_terminal_once(db, f"job-{name}", 3000)
        assert_store_agrees_with_ledger(ledger, db)


# -- 6. the same, made deterministic: a neighbour's batch at the worst moment -----------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_neighbours_batch_taken_for_ours_costs_no_second_send(tmp_path: Path) -> None:
    """The first create is answered 500 but made, and a neighbour on the same key made a
    batch of the same size an instant earlier; the second create is answered 500 and made
    nothing (see NeighbourAtTheFirstCreate). Every request must still be sent once."""
    config = SimulatorConfig(
        seed=5, processing_seconds=3.0, create_500_share=1.0, create_500_made_share=1.0
    )
    with SimulatorServer(config) as sim:
        neighbour = NeighbourAtTheFirstCreate(sim)
        db = tmp_path / "store.db"
        spec = write_job(tmp_path, "neighbourly", 1000, max_requests=500)
        result = cli(default_env(sim, db), "run", str(spec), timeout=150)
        ledger = sim.state.ledger.to_json()

    assert neighbour.neighbour, "the scripted neighbour never made its batch"
    assert ledger["responses"].get("create 500") == 2
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert_items_terminal_once(db, "neighbourly", 1000)
    assert_sent_once(ledger)
    assert_store_agrees_with_ledger(ledger, db)
