"""The CLI tells the truth: first run, exit codes, summaries, progress, waiting reasons,
the cache per endpoint, one job per ``run``, one-line errors and the small things.

Each test drives the real ``orchestrator`` command in a subprocess against a
simulator on loopback, as a user would.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.simulator import SimulatorConfig, SimulatorServer
from orchestrator.store.engine import make_engine, upgrade
from tests.acceptance.support import clean_env, cli, query, sim_env, write_spec

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(processing_seconds=0.3, seed=3)) as server:
        yield server


def _calls(sim: SimulatorServer, kind: str) -> int:
    return int(sim.state.ledger.to_json()["calls"].get(kind, 0))


# -- 1. installs as a package (the wheel itself is checked by `make wheel-check`) ---------


def test_version() -> None:
    result = cli(clean_env(), "--version")
    assert result.returncode == 0
    assert re.fullmatch(r"orchestrator \d+\.\d+\.\d+\S*\n", result.stdout)


# -- 2. first run needs no extra step ------------------------------------------------------


def test_run_on_a_never_initialised_sqlite_path_finishes(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    db = tmp_path / "new" / "store.db"
    db.parent.mkdir()
    spec = write_spec(tmp_path, "first", 40)
    result = cli(sim_env(sim, db), "run", str(spec))
    assert result.returncode == 0, result.stderr
    assert re.search(r"created the job store sqlite:///\S+store\.db \(schema \w+\)", result.stderr)
    assert query(db, "SELECT count(*) FROM final_results WHERE status = 'succeeded'") == [(40,)]
    again = cli(sim_env(sim, db), "submit", str(spec))
    assert "created the job store" not in again.stderr


def test_an_older_store_is_refused_not_migrated(sim: SimulatorServer, tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine, "0001")
    engine.dispose()
    result = cli(sim_env(sim, db), "run", str(write_spec(tmp_path, "old", 3)))
    assert result.returncode == 1
    assert "orchestrator db upgrade" in result.stderr
    assert query(db, "SELECT version_num FROM alembic_version") == [("0001",)]


# -- 3. the response cache never crosses endpoints -----------------------------------------


def test_the_cache_is_per_endpoint(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    config = SimulatorConfig(processing_seconds=0.2)
    with SimulatorServer(config) as first, SimulatorServer(config) as second:
        assert first.base_url != second.base_url
        ran = cli(sim_env(first, db), "run", str(write_spec(tmp_path, "on-first", 30)))
        assert ran.returncode == 0, ran.stderr
        elsewhere = cli(sim_env(second, db), "run", str(write_spec(tmp_path, "on-second", 30)))
        assert elsewhere.returncode == 0, elsewhere.stderr
        assert "answered from cache" not in elsewhere.stdout
        assert len(second.state.ledger.to_json()["submissions"]) == 30
        again = cli(sim_env(first, db), "run", str(write_spec(tmp_path, "first-again", 30)))
        assert again.returncode == 0, again.stderr
        assert "answered from cache" in again.stdout
        assert len(first.state.ledger.to_json()["submissions"]) == 30  # nothing sent again


# -- 4. exit codes and summaries -----------------------------------------------------------


def test_failed_items_exit_3_with_failures_grouped(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    errors = {"invalid_request_error": 0.2, "permission_error": 0.1}
    with SimulatorServer(SimulatorConfig(processing_seconds=0.2, errored_share=errors)) as sim:
        result = cli(sim_env(sim, db), "run", str(write_spec(tmp_path, "mixed", 100)))
        listing = cli(sim_env(sim, db), "status")
        one = cli(sim_env(sim, db), "status", "mixed")
    assert result.returncode == 3, result.stderr
    failed = query(db, "SELECT count(*) FROM final_results WHERE status = 'failed'")[0][0]
    assert failed > 0
    assert re.search(r"failed: invalid_request_error\s*│\s*\d+\s+e\.g\. \S", result.stdout)
    assert re.search(r"failed: permission_error\s*│\s*\d+\s+e\.g\. \S", result.stdout)
    # `status` never counts failures as done: succeeded and failed are apart.
    assert re.search(
        rf"mixed\s*│\s*done\s*│\s*100\s*│\s*{100 - failed}\s*│\s*{failed}\s*│", listing.stdout
    )
    assert "failed: invalid_request_error" in one.stdout


def test_every_item_succeeded_exits_0(sim: SimulatorServer, tmp_path: Path) -> None:
    result = cli(sim_env(sim, tmp_path / "s.db"), "run", str(write_spec(tmp_path, "clean", 20)))
    assert result.returncode == 0, result.stderr


# -- 6. progress that is true; logs that never garble it ----------------------------------


def test_the_rendered_progress_of_a_finished_run(tmp_path: Path) -> None:
    errors = {"api_error": 0.2, "invalid_request_error": 0.05}
    config = SimulatorConfig(processing_seconds=0.2, errored_share=errors, seed=11)
    with SimulatorServer(config) as sim:
        env = sim_env(sim, tmp_path / "s.db")
        result = cli(env, "run", str(write_spec(tmp_path, "bars", 200, extra="")))
        sent = len(sim.state.ledger.to_json()["submissions"])
    assert result.returncode == 3
    out = result.stdout
    # Retries were sent: the "sent" bar counts every request the API accepted.
    assert sent > 200
    assert re.search(rf"requests sent\s.*\b{sent}/{sent}\b", out)
    assert re.search(rf"results stored\s.*\b{sent}/{sent}\b", out)
    failed = query(tmp_path / "s.db", "SELECT count(*) FROM items WHERE status = 'failed'")[0][0]
    assert re.search(rf"items finished\s.*\b200/200\b.*\b{failed} failed\b", out)
    # Library chatter stays out; our own INFO lines come through the same console.
    for noise in ("HTTP Request:", "alembic", "apscheduler", "Running upgrade"):
        assert noise not in out + result.stderr
    assert "batch 1:" in out


def test_the_daemon_logs_changes_not_cycles(sim: SimulatorServer, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    env = sim_env(sim, db)
    assert cli(env, "submit", str(write_spec(tmp_path, "quiet", 30))).returncode == 0
    daemon = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "daemon"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if query(db, "SELECT status FROM jobs") == [("done",)]:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # a few idle cycles
    finally:
        daemon.terminate()
        out, err = daemon.communicate(timeout=30)
    logs = out + err
    assert "every item is finished" in logs
    assert "{'" not in logs  # no dict per cycle
    assert "HTTP Request:" not in logs
    assert len(re.findall(r"batch 1 \(msgbatch_\w+\): ended", logs)) == 1


# -- 7. a waiting job says why; an unreachable API is said so, and `run` gives up ----------


def test_an_unreachable_api_is_reported_and_run_gives_up(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = tmp_path / "s.db"
    env = clean_env(
        ANTHROPIC_API_KEY="sk-x",
        ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}",
        ORCHESTRATOR_DATABASE_URL=f"sqlite:///{db}",
        ORCHESTRATOR_POLL_INTERVAL="0.2",
        ORCHESTRATOR_MAX_RETRIES="0",
        ORCHESTRATOR_UNREACHABLE_TIMEOUT="2",
    )
    started = time.monotonic()
    result = cli(env, "run", str(write_spec(tmp_path, "nowhere", 5)), timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert "could not be reached" in result.stderr
    assert "ConnectError" in result.stderr
    assert "waiting: API unreachable" in result.stdout
    assert "create refused" not in result.stdout + result.stderr
    status = cli(env, "status", "nowhere")
    assert re.search(r"waiting\s*│\s*API unreachable", status.stdout)
    assert "sending again at" in status.stdout


# -- 8. `run SPEC` works on its job only ---------------------------------------------------


def test_run_leaves_other_jobs_to_the_daemon(sim: SimulatorServer, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    env = sim_env(sim, db)
    (tmp_path / "other").mkdir()
    other = write_spec(tmp_path / "other", "other", 10)
    assert cli(env, "submit", str(other)).returncode == 0
    result = cli(env, "run", str(write_spec(tmp_path, "mine", 10)))
    assert result.returncode == 0, result.stderr
    assert query(db, "SELECT count(*) FROM batches WHERE job_id = 1") == [(0,)]
    assert query(db, "SELECT status FROM jobs WHERE name = 'other'") == [("active",)]
    assert len(sim.state.ledger.to_json()["submissions"]) == 10


# -- 9. no tracebacks for user mistakes ----------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("ORCHESTRATOR_DATABASE_URL", "sqlite://tmp/x.db", "ORCHESTRATOR_DATABASE_URL"),
        ("ORCHESTRATOR_DATABASE_URL", "mysql://u:secret@localhost/db", "ORCHESTRATOR_DATABASE_URL"),
        ("ORCHESTRATOR_LOG_LEVEL", "loud", "ORCHESTRATOR_LOG_LEVEL"),
        ("ORCHESTRATOR_API_VERSION", "2020-01-01", "ORCHESTRATOR_API_VERSION"),
        ("ORCHESTRATOR_POLL_INTERVAL", "soon", "ORCHESTRATOR_POLL_INTERVAL"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    tmp_path: Path, variable: str, value: str, named: str
) -> None:
    env = clean_env(ORCHESTRATOR_DATABASE_URL=f"sqlite:///{tmp_path / 's.db'}")
    env[variable] = value
    result = cli(env, "submit", str(write_spec(tmp_path, "x", 1)))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert named in result.stderr
    assert "secret" not in result.stderr


def test_a_simulator_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(clean_env(), "simulate", "--port", str(port), timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"--port {port}" in result.stderr


# -- 10. small truths ------------------------------------------------------------------------


def test_export_names_its_file_and_needs_partial_while_running(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    env = sim_env(sim, db)
    spec = write_spec(tmp_path, "answers", 12)
    assert cli(env, "submit", str(spec)).returncode == 0
    early = cli(env, "export", "answers", cwd=tmp_path)
    assert early.returncode == 2
    assert "--partial" in early.stderr
    partial = cli(env, "export", "answers", "--partial", "-f", "csv", cwd=tmp_path)
    assert partial.returncode == 0
    assert (tmp_path / "answers.csv").read_text().count("\n") == 13  # header + 12 rows
    assert cli(env, "run", str(spec)).returncode == 0
    csv_export = cli(env, "export", "answers", "--format", "csv", cwd=tmp_path)
    assert csv_export.returncode == 0
    assert "wrote 12 rows to answers.csv" in csv_export.stdout
    assert not (tmp_path / "answers.jsonl").exists()
    assert cli(env, "export", "answers", cwd=tmp_path).returncode == 0
    assert (tmp_path / "answers.jsonl").read_text().count("\n") == 12


def test_cancel_says_what_it_did(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with SimulatorServer(SimulatorConfig(processing_seconds=60)) as sim:
        env = sim_env(sim, db)
        spec = write_spec(tmp_path, "slow", 20)
        runner = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", str(spec)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not query_ok(db, "SELECT remote_id FROM batches WHERE remote_id IS NOT NULL"):
                assert time.monotonic() < deadline, "the run never created its batch"
                time.sleep(0.1)
        finally:
            runner.kill()  # nobody polls any more: only `cancel` can send the cancel
            runner.wait(timeout=30)
        result = cli(env, "cancel", "slow")
        assert result.returncode == 0, result.stderr
        assert "1 batch(es) canceling on the API now" in result.stdout
        assert _calls(sim, "cancel") == 1  # sent at once, not at the next cycle
        [(status,)] = query(db, "SELECT processing_status FROM batches")
        assert status == "canceling"
    done = cli(clean_env(ORCHESTRATOR_DATABASE_URL=f"sqlite:///{db}"), "cancel", "slow")
    assert "nothing to cancel" in done.stdout


def query_ok(db: Path, sql: str) -> bool:
    try:
        return bool(query(db, sql))
    except Exception:  # the store is being created by the other process
        return False


def test_batches_piped_prints_whole_ids(sim: SimulatorServer, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    env = sim_env(sim, db)
    assert cli(env, "run", str(write_spec(tmp_path, "ids", 5))).returncode == 0
    [(remote_id,)] = query(db, "SELECT remote_id FROM batches")
    listing = cli(env, "batches")
    assert listing.returncode == 0
    assert f"{remote_id}\tended\t" in listing.stdout
    assert listing.stdout.strip().endswith("\t1")  # owned by job 1


# -- graceful shutdown -------------------------------------------------------------------


def test_sigterm_stops_run_after_its_step_and_frees_its_leases(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with SimulatorServer(SimulatorConfig(processing_seconds=30)) as sim:
        env = sim_env(sim, db)
        runner = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", str(write_spec(tmp_path, "term", 30))],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not query_ok(db, "SELECT 1 FROM batches WHERE remote_id IS NOT NULL"):
                assert time.monotonic() < deadline, "the run never created its batch"
                time.sleep(0.1)
            runner.send_signal(signal.SIGTERM)
            _, err = runner.communicate(timeout=15)
        finally:
            runner.kill()
        assert runner.returncode == 130
        assert "run the same command again" in err
        assert query(db, "SELECT count(*) FROM batches WHERE lease_owner IS NOT NULL") == [(0,)]
        assert query(db, "SELECT count(*) FROM jobs WHERE lease_owner IS NOT NULL") == [(0,)]
