"""Several daemons on one PostgreSQL store, through the real CLI, while things break:
a daemon is SIGKILLed, PostgreSQL is restarted (``pg_ctl restart -m fast``), the
simulator answers some calls 500 and cuts some downloads, and creates are answered
500 whether or not they made the batch (README, guarantees 2, 3 and 5).

The module starts its own cluster (not the session's) so it can restart it. The
simulator runs in this process; its ledger is checked against the store.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from orchestrator.simulator import SimulatorConfig, SimulatorServer
from tests.acceptance.support import RELIABILITY_SUITE, SECRET_KEY, clean_env, cli, write_spec
from tests.support.postgres import ManagedCluster, PostgresUnavailable, managed_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow, RELIABILITY_SUITE]

#: How long the daemons get to finish the jobs, in seconds.
FINISH_DEADLINE_S = 90.0
#: SIGTERM must stop a daemon within this many seconds, with exit code 0.
STOP_DEADLINE_S = 10.0
#: A lease that a running daemon holds this long on a row that does not change is
#: stuck (a step holds a batch for one create or one download: seconds at most here).
STUCK_LEASE_S = 15.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[ManagedCluster]:
    try:
        with managed_cluster() as started:
            yield started
    except PostgresUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")


_databases = iter(range(1_000_000))


def _new_database(cluster: ManagedCluster) -> str:
    """A fresh, empty database in the module's cluster; returns a plain postgresql:// URL."""
    name = f"daemons_{next(_databases)}"
    admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return f"postgresql://orch@127.0.0.1:{cluster.port}/{name}"


def _rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run one query on a fresh connection, retrying while the server restarts."""
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"), poolclass=NullPool)
    try:
        for _ in range(100):
            try:
                with engine.connect() as conn:
                    return [tuple(r) for r in conn.execute(text(sql), params)]
            except DBAPIError:
                time.sleep(0.1)
        raise AssertionError(f"the store stayed unreachable for: {sql}")
    finally:
        engine.dispose()


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    stderr: IO[bytes]

    def log(self) -> str:
        self.stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[[dict[str, str], int], list[Daemon]]]:
    """``start(env, n)``: n daemons, each logging to its own file; all killed at the end."""
    started: list[Daemon] = []

    def start(env: dict[str, str], count: int) -> list[Daemon]:
        batch: list[Daemon] = []
        for _ in range(count):
            name = f"daemon-{len(started)}"
            path = tmp_path / f"{name}.stderr"
            handle = path.open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "daemon"],
                env={**env, "ORCHESTRATOR_WORKER_ID": name},
                stdout=subprocess.DEVNULL,
                stderr=handle,
            )
            daemon = Daemon(name, proc, path, handle)
            started.append(daemon)
            batch.append(daemon)
        return batch

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)
        daemon.stderr.close()


def _env(sim: SimulatorServer, url: str) -> dict[str, str]:
    return clean_env(
        ANTHROPIC_API_KEY=SECRET_KEY,
        ANTHROPIC_BASE_URL=sim.base_url,
        ORCHESTRATOR_DATABASE_URL=url,
        ORCHESTRATOR_POLL_INTERVAL="0.2",
        ORCHESTRATOR_LEASE_TTL="3",
        ORCHESTRATOR_CREATE_TIMEOUT="5",
        ORCHESTRATOR_REQUEST_TIMEOUT="10",
        ORCHESTRATOR_CONNECT_TIMEOUT="2",
        ORCHESTRATOR_RECONCILE_SKEW="2",
        ORCHESTRATOR_CREATES_PER_MINUTE="600",
        ORCHESTRATOR_LOG_LEVEL="INFO",
    )


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float) -> None:
    stop_at = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > stop_at:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def _wait_started(everyone: list[Daemon]) -> None:
    """Every daemon is past its start-up (store opened and checked, timers running)."""

    def started() -> bool:
        for daemon in everyone:
            code = daemon.proc.poll()
            assert code is None, f"{daemon.name} exited {code}:\n{daemon.log()[-3000:]}"
        return all(f"daemon {d.name} started" in d.log() for d in everyone)

    _wait_for(started, "the daemons to start", 60)


def _jobs_done(url: str) -> bool:
    return {status for (status,) in _rows(url, "SELECT status FROM jobs")} == {"done"}


def _leases(url: str, names: set[str]) -> dict[tuple[str, int], tuple[str, str, int]]:
    """(table, id) -> (status, owner, lease version) of every row leased by one of ``names``."""
    rows = _rows(
        url,
        "SELECT 'batch', id, status, lease_owner, lease_version FROM batches "
        "WHERE lease_owner IS NOT NULL UNION ALL "
        "SELECT 'job', id, status, lease_owner, lease_version FROM jobs "
        "WHERE lease_owner IS NOT NULL",
    )
    return {
        (str(kind), int(row_id)): (str(status), str(owner), int(version))
        for kind, row_id, status, owner, version in rows
        if owner in names
    }


def _wait_done(url: str, running: list[Daemon]) -> None:
    """Wait for every job to be done; fail early when a running daemon keeps a lease
    on a row that does not change (nobody else may take it while it is renewed)."""
    names = {d.name for d in running}
    since: dict[tuple[str, int], tuple[tuple[str, str, int], float]] = {}
    stuck: list[str] = []

    def done() -> bool:
        for daemon in running:
            code = daemon.proc.poll()
            assert code is None, f"{daemon.name} exited {code}:\n{daemon.log()[-3000:]}"
        if _jobs_done(url):
            return True
        now = time.monotonic()
        current = _leases(url, names)
        for key, state in current.items():
            first = since.get(key)
            if first is None or first[0] != state:
                since[key] = (state, now)
            elif now - first[1] > STUCK_LEASE_S:
                stuck.append(f"{key[0]} {key[1]} ({state[0]}) held by {state[1]}")
        for key in set(since) - set(current):
            del since[key]
        return bool(stuck)

    try:
        _wait_for(done, "every job to be done", FINISH_DEADLINE_S)
    except pytest.fail.Exception:
        stuck.append(f"none; just not done after {FINISH_DEADLINE_S:.0f} s")
    if stuck:
        batches = _rows(
            url,
            "SELECT id, status, remote_id, lease_owner, last_error FROM batches ORDER BY id",
        )
        logs = "\n".join(f"--- {d.name}\n{d.log()[-2500:]}" for d in running)
        pytest.fail(
            f"jobs not done; leases held by running daemons without any change for "
            f"{STUCK_LEASE_S:.0f} s: {', '.join(stuck)}\nbatches {batches}\n{logs}"
        )


def _stop(running: list[Daemon]) -> None:
    """SIGTERM each daemon; each exits 0 within STOP_DEADLINE_S."""
    started = time.monotonic()
    for daemon in running:
        daemon.proc.send_signal(signal.SIGTERM)
    for daemon in running:
        left = max(0.1, STOP_DEADLINE_S - (time.monotonic() - started))
        try:
            code = daemon.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{daemon.name} still running {STOP_DEADLINE_S} s after SIGTERM")
        assert code == 0, f"{daemon.name} exited {code}:\n{daemon.log()[-3000:]}"


def _assert_clean_logs(everyone: list[Daemon], *needles: str) -> None:
    for daemon in everyone:
        log = daemon.log()
        for needle in ("Traceback", *needles):
            assert needle not in log, f"{needle} in {daemon.name}'s stderr:\n{log[-4000:]}"
        assert SECRET_KEY not in log


def _assert_store_matches_ledger(url: str, sim: SimulatorServer) -> None:
    """Batches created == batches planned, each holding exactly its local requests;
    nothing submitted twice; nothing stored twice; no batch ingested beyond its size."""
    book = sim.state.ledger.to_json()
    batches = _rows(url, "SELECT id, status, remote_id, request_count FROM batches ORDER BY id")
    assert batches, "no batch was planned"
    not_ingested = [(b[0], b[1]) for b in batches if b[1] != "ingested"]
    assert not_ingested == [], f"batches left unfinished: {not_ingested}"
    local_remote = {int(b[0]): str(b[2]) for b in batches}
    assert all(local_remote.values()), "an ingested batch without a remote id"
    assert len(set(local_remote.values())) == len(local_remote), "a remote batch used twice"

    remote = {b["id"]: b for b in book["batches"]}
    assert len(remote) == len(book["batches"])
    unknown_to_store = sorted(set(remote) - set(local_remote.values()))
    assert unknown_to_store == [], f"remote batches the store does not know: {unknown_to_store}"
    assert len(book["batches"]) == len(batches), "batches created != batches planned"

    requests: dict[int, list[str]] = collections.defaultdict(list)
    for batch_id, custom_id in _rows(url, "SELECT batch_id, custom_id FROM batch_requests"):
        requests[int(batch_id)].append(str(custom_id))
    sizes = {int(b[0]): int(b[3]) for b in batches}
    for batch_id, remote_id in local_remote.items():
        sent = sorted(remote[remote_id]["custom_ids"])
        assert sent == sorted(requests[batch_id]), (
            f"remote {remote_id} does not hold exactly the requests of local batch {batch_id}"
        )
        assert remote[remote_id]["request_count"] == sizes[batch_id]

    resent = {cid: n for cid, n in book["submissions"].items() if n != 1}
    assert resent == {}, f"custom_ids submitted more than once: {resent}"

    doubles = _rows(
        url,
        "SELECT batch_id, custom_id, count(*) FROM results "
        "GROUP BY batch_id, custom_id HAVING count(*) > 1",
    )
    assert doubles == []
    stored = dict(_rows(url, "SELECT batch_id, count(*) FROM results GROUP BY batch_id"))
    over = {b: n for b, n in stored.items() if n > sizes[int(b)]}
    assert over == {}, f"batches with more results than requests: {over}"


def _assert_ingested_once(everyone: list[Daemon]) -> None:
    """No two workers (or one worker twice) finished the ingest of the same batch."""
    finished = collections.Counter(
        match
        for daemon in everyone
        for match in re.findall(r"^.*?batch (\d+): ingested", daemon.log(), re.MULTILINE)
    )
    twice = {batch: n for batch, n in finished.items() if n > 1}
    assert twice == {}, f"batches ingested more than once: {twice}"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("count", [2, 4])
def test_daemons_survive_a_killed_peer_and_a_postgres_restart(
    cluster: ManagedCluster,
    daemons: Callable[[dict[str, str], int], list[Daemon]],
    tmp_path: Path,
    count: int,
) -> None:
    url = _new_database(cluster)
    config = SimulatorConfig(
        processing_seconds=0.5,
        fault_500_share=0.03,
        cut_results_share=0.1,
        expired_share=0.02,
        seed=20 + count,
    )
    with SimulatorServer(config) as sim:
        env = _env(sim, url)
        upgraded = cli(env, "db", "upgrade", timeout=60)
        assert upgraded.returncode == 0, upgraded.stderr
        spec = write_spec(tmp_path, "pg-daemons", 4000, extra="[batching]\nmax_requests = 250\n")
        submitted = cli(env, "submit", str(spec), timeout=60)
        assert submitted.returncode == 0, submitted.stderr

        everyone = daemons(env, count)
        names = {d.name for d in everyone}
        _wait_started(everyone)

        # Midway 1: SIGKILL a daemon while it holds a lease (its leases must expire).
        holders: list[str] = []

        def someone_at_work() -> bool:
            holders[:] = sorted(owner for _, owner, _ in _leases(url, names).values())
            return bool(holders) and len(sim.state.ledger.batches) >= 2

        _wait_for(someone_at_work, "a daemon to hold a lease", 60)
        victim = next(d for d in everyone if d.name == holders[0])
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        survivors = [d for d in everyone if d is not victim]

        # Midway 2: restart PostgreSQL while a surviving daemon is at work (holds leases).
        alive = {d.name for d in survivors}
        _wait_for(lambda: bool(_leases(url, alive)), "a surviving daemon to hold a lease", 60)
        cluster.restart()

        _wait_done(url, survivors)
        _stop(survivors)

        _assert_clean_logs(everyone)
        _assert_store_matches_ledger(url, sim)
        _assert_ingested_once(everyone)
        items = _rows(url, "SELECT status, count(*) FROM items GROUP BY status")
        assert sum(int(n) for _, n in items) == 4000
        assert {str(s) for s, _ in items} <= {"succeeded", "failed"}


@pytest.mark.timeout(150)
def test_two_jobs_two_daemons_creates_answered_500(
    cluster: ManagedCluster,
    daemons: Callable[[dict[str, str], int], list[Daemon]],
    tmp_path: Path,
) -> None:
    """Equal-sized batches of two jobs: a create answered 500 (made or not) must be
    reconciled to its own remote batch, never to the other job's."""
    url = _new_database(cluster)
    # The simulator's coin for each create comes from one seeded sequence that only
    # creates and results downloads draw from: with this seed, and no batch ending
    # before the creates are out, the 1st create is answered 500 but made anyway and
    # the 9th is answered 500 and not made.
    config = SimulatorConfig(
        processing_seconds=2.0, create_500_share=0.2, create_500_made_share=0.5, seed=29
    )
    with SimulatorServer(config) as sim:
        env = _env(sim, url)
        assert cli(env, "db", "upgrade", timeout=60).returncode == 0
        for name in ("left", "right"):
            (tmp_path / name).mkdir()
            # Same rows and size in both: batches of equal request counts, nothing cached.
            extra = "cache = false\n[batching]\nmax_requests = 100\n"
            spec = write_spec(tmp_path / name, name, 500, extra=extra)
            submitted = cli(env, "submit", str(spec), timeout=60)
            assert submitted.returncode == 0, submitted.stderr

        everyone = daemons(env, 2)
        _wait_done(url, everyone)
        _stop(everyone)

        _assert_clean_logs(everyone, "IntegrityError")
        _assert_store_matches_ledger(url, sim)
        _assert_ingested_once(everyone)
        book = sim.state.ledger.to_json()
        # The scenario happened: some creates were answered 500.
        assert book["responses"].get("create 500", 0) >= 1, book["responses"]
        assert len(book["batches"]) == 10
        per_job = _rows(
            url,
            "SELECT j.name, count(DISTINCT b.remote_id) FROM batches b "
            "JOIN jobs j ON j.id = b.job_id GROUP BY j.name ORDER BY j.name",
        )
        assert [name for name, _ in per_job] == ["left", "right"]
        # Every remote batch's requests belong to one job only.
        mixed = _rows(
            url,
            "SELECT b.remote_id FROM batches b JOIN batch_requests r ON r.batch_id = b.id "
            "JOIN items i ON i.id = r.item_id GROUP BY b.remote_id "
            "HAVING count(DISTINCT i.job_id) > 1",
        )
        assert mixed == []
