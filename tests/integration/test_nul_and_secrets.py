"""NUL characters in results, and secrets that never leak, on SQLite and PostgreSQL.

* PostgreSQL text can't hold NUL; the API may send ``\\u0000`` inside a JSON string
  (a model can produce it) and, broken, a raw NUL byte. A job whose results carry
  both must still ingest: the text stored with NUL replaced, ``results.content``
  keeping the exact value JSON-escaped, the unparseable line quarantined; another
  job in the same store finishes all the same.
* The API key (and a PostgreSQL password) never reach the store, the logs (at
  DEBUG), the output of any command or an export, whatever goes wrong.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from orchestrator.domain.planning import parse_custom_id
from orchestrator.simulator import SimulatorConfig, SimulatorServer
from orchestrator.steps import run_cycle
from orchestrator.store.results import NUL_REPLACEMENT
from orchestrator.store.tables import Item, Quarantine, Result
from tests.integration.conftest import (
    JOB_DEADLINE_S,
    MakeCtx,
    assert_job_complete,
    assert_no_double_spend,
    new_job,
    write_job,
)

SECRET_KEY = "sk-ant-api03-LEAKCHECK-9f8e7d6c5b4a"
SECRET_PASSWORD = "PgPw-LEAKCHECK-4b5c6d7e"
#: Appended to the text of every answer of the poisoned job, NUL included.
NUL_SUFFIX = "\x00after-nul"
ERROR_WITH_NUL = "bad\x00input"

_names = count()


# -- 1. NUL characters in results ---------------------------------------------------------


class _NulResults(httpx.BaseTransport):
    """Rewrites the results of one job's items as they are downloaded.

    Every succeeded answer gets ``\\u0000`` (JSON-escaped, as the API sends it) in its
    text; the first line seen gets a raw NUL byte inside a JSON string instead (not
    JSON: unparseable); the second becomes an errored result whose message holds
    ``\\u0000``. The choice sticks to the custom_id, so a download read again is the same.
    """

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.items: set[int] = set()
        self.raw_nul: str | None = None
        self.errored: str | None = None
        self.rewritten = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method != "GET" or not request.url.path.endswith("/results"):
            return response
        if response.status_code != 200:
            return response
        try:
            body = response.read()
        finally:
            response.close()
        lines = [self._rewrite(line) for line in body.split(b"\n")]
        headers = {"content-type": response.headers.get("content-type", "application/x-jsonl")}
        return httpx.Response(200, headers=headers, content=b"\n".join(lines), request=request)

    def _rewrite(self, line: bytes) -> bytes:
        if not line.strip():
            return line
        obj = json.loads(line)
        custom_id = obj["custom_id"]
        parts = parse_custom_id(custom_id)
        if parts is None or parts.item_id not in self.items:
            return line
        result = obj["result"]
        if result["type"] != "succeeded":
            return line
        self.rewritten += 1
        if self.raw_nul is None:
            self.raw_nul = custom_id
        elif self.errored is None and custom_id != self.raw_nul:
            self.errored = custom_id
        if custom_id == self.errored:
            obj["result"] = {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": ERROR_WITH_NUL},
                },
            }
            return json.dumps(obj).encode()
        for block in result["message"]["content"]:
            if block.get("type") == "text":
                block["text"] += NUL_SUFFIX
        escaped = json.dumps(obj).encode()  # ensure_ascii: NUL is sent as \u0000
        assert b"\\u0000" in escaped
        if custom_id == self.raw_nul:
            return escaped.replace(b"\\u0000", b"\x00")
        return escaped

    def close(self) -> None:
        self.inner.close()


@pytest.mark.timeout(90)
def test_nul_in_results_is_stored_and_the_other_job_finishes(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    transport = _NulResults()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with make_ctx(transport=transport) as ctx:
        poisoned = new_job(ctx, write_job(tmp_path / "a", "poisoned", 60, max_requests=20))
        other_rows = [{"id": f"b{i}", "t": f"other {i}"} for i in range(40)]
        other = new_job(
            ctx, write_job(tmp_path / "b", "other", 40, max_requests=20, rows=other_rows)
        )
        with ctx.store.engine.connect() as conn:
            transport.items.update(
                conn.execute(select(Item.id).where(Item.job_id == poisoned)).scalars()
            )

        # One worker for every job (as the daemon): the poisoned job must not hold up
        # the other one, and both end.
        stop_at = time.monotonic() + JOB_DEADLINE_S
        while {ctx.store.job_report(j).job.status.value for j in (poisoned, other)} != {"done"}:
            if time.monotonic() > stop_at:
                pytest.fail(
                    f"jobs not done after {JOB_DEADLINE_S} s: "
                    f"{ctx.store.job_report(poisoned)} / {ctx.store.job_report(other)}"
                )
            run_cycle(ctx)
            time.sleep(0.05)

        assert transport.raw_nul is not None
        assert transport.errored is not None
        assert transport.rewritten >= 60

        other_rows_out = assert_job_complete(ctx, other)
        assert all(r["status"] == "succeeded" for r in other_rows_out)
        assert not any(NUL_REPLACEMENT in (r["text"] or "") for r in other_rows_out)
        assert_no_double_spend(ctx, sim, poisoned)

        rows = assert_job_complete(ctx, poisoned)
        by_custom_id = {r["custom_id"]: r for r in rows}
        # The raw-NUL line: quarantined verbatim (NUL replaced), its item failed, not re-sent.
        unreadable = by_custom_id[transport.raw_nul]
        assert unreadable["status"] == "failed"
        assert unreadable["error_type"] == "unreadable_result"
        with ctx.store.engine.connect() as conn:
            quarantined = conn.execute(
                select(Quarantine.custom_id, Quarantine.raw, Quarantine.error)
            ).all()
            stored = conn.execute(
                select(Result.custom_id, Result.text, Result.content, Result.error_message)
            ).all()
        assert [q.custom_id for q in quarantined] == [transport.raw_nul]
        raw = quarantined[0].raw
        assert "\x00" not in raw
        assert NUL_REPLACEMENT + "after-nul" in raw
        assert transport.raw_nul in raw
        assert "\x00" not in quarantined[0].error

        # The errored line: its message stored with NUL replaced; the item failed with it.
        failed = by_custom_id[transport.errored]
        assert failed["status"] == "failed"
        assert failed["error_type"] == "invalid_request_error"
        assert failed["error_message"] == ERROR_WITH_NUL.replace("\x00", NUL_REPLACEMENT)

        # Every other answer: text with NUL replaced, content with the exact value.
        answered = [r for r in rows if r["custom_id"] not in (transport.raw_nul, transport.errored)]
        assert len(answered) == 58
        assert all(r["status"] == "succeeded" for r in answered)
        results = {r.custom_id: r for r in stored}
        for row in answered:
            stored_row = results[row["custom_id"]]
            assert row["text"].endswith(NUL_REPLACEMENT + "after-nul"), row
            assert stored_row.text == row["text"]
            assert "\x00" not in stored_row.content
            assert "\\u0000" in stored_row.content
            blocks = json.loads(stored_row.content)
            texts = "".join(b["text"] for b in blocks if b.get("type") == "text")
            assert texts.endswith(NUL_SUFFIX)
            assert texts.replace("\x00", NUL_REPLACEMENT) == row["text"]


# -- 2. secrets never leak ----------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "ORCHESTRATOR_"))}
    env.update(extra)
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _run_with_faults(
    env: dict[str, str], spec: Path, sim: SimulatorServer, logs: Path
) -> subprocess.CompletedProcess[str]:
    """``run SPEC``; once its first batches are out, the next API calls answer 500/529.

    Output goes to files (a DEBUG log would fill a pipe nobody reads yet)."""
    out_path, err_path = logs / "run.stdout", logs / "run.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", str(spec)],
            env=env,
            stdout=out,
            stderr=err,
        )
        try:
            stop_at = time.monotonic() + 60
            while len(sim.state.ledger.batches) < 3 and proc.poll() is None:
                assert time.monotonic() < stop_at, "the run created no batch"
                time.sleep(0.02)
            sim.state.faults.inject(500, 500, 529, 500)
            proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        out_path.read_text(encoding="utf-8", errors="replace"),
        err_path.read_text(encoding="utf-8", errors="replace"),
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _admin(server_url: str, *statements: str) -> None:
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def secret_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store; on PostgreSQL owned by a role with a recognisable password,
    given as a plain ``postgresql://user:password@host/db`` URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    server = make_url(request.getfixturevalue("postgres_server"))
    suffix = f"{os.getpid()}_{next(_names)}"
    role, database = f"leak_role_{suffix}", f"leak_db_{suffix}"
    superuser = server.render_as_string(hide_password=False)
    _admin(
        superuser,
        f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET_PASSWORD}'",
        f"CREATE DATABASE {database} OWNER {role}",
    )
    yield f"postgresql://{role}:{SECRET_PASSWORD}@{server.host}:{server.port}/{database}"
    _admin(superuser, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)", f"DROP ROLE {role}")


def _store_dump(url: str, root: Path) -> bytes:
    """Everything the store holds: the SQLite files' bytes, or every row of every
    PostgreSQL table as text (read as the superuser, not with the secret URL)."""
    if url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in sorted(root.glob("store.db*")))
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"), poolclass=NullPool)
    try:
        chunks: list[str] = []
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names() + inspect(conn).get_view_names()
            assert {"jobs", "items", "batches", "results", "quarantine"} <= set(tables)
            for table in tables:
                rows = conn.execute(text(f'SELECT t::text FROM "{table}" t')).scalars()
                chunks.extend(str(row) for row in rows)
        return "\n".join(chunks).encode()
    finally:
        engine.dispose()


@pytest.mark.timeout(120)
def test_the_key_and_the_database_password_never_leak(secret_store: str, tmp_path: Path) -> None:
    config = SimulatorConfig(
        processing_seconds=0.3,
        processing_jitter=0.0,
        fault_500_share=0.02,  # and a few 500/529 injected below, whatever the draws
        cut_results_share=0.15,
        errored_share={"api_error": 0.05, "invalid_request_error": 0.03},
        expired_share=0.03,
        api_keys=frozenset({SECRET_KEY}),
        seed=13,
    )
    runs: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    with SimulatorServer(config) as sim:
        env = _clean_env(
            ANTHROPIC_API_KEY=SECRET_KEY,
            ANTHROPIC_BASE_URL=sim.base_url,
            ORCHESTRATOR_DATABASE_URL=secret_store,
            ORCHESTRATOR_LOG_LEVEL="DEBUG",
            ORCHESTRATOR_POLL_INTERVAL="0.2",
            ORCHESTRATOR_MAX_RETRIES="2",
            ORCHESTRATOR_RECONCILE_SKEW="2",
        )
        spec = write_job(tmp_path, "leaky", 60, max_requests=20, max_attempts=2)

        def run(what: str, *args: str, environment: dict[str, str] = env) -> None:
            runs.append((what, _cli(environment, *args)))

        run("db upgrade", "db", "upgrade")
        (tmp_path / "logs").mkdir()
        runs.append(("run", _run_with_faults(env, spec, sim, tmp_path / "logs")))
        run("status", "status")
        run("status job", "status", "leaky")
        jsonl, csv = tmp_path / "out.jsonl", tmp_path / "out.csv"
        run("export jsonl", "export", "leaky", "--format", "jsonl", "-o", str(jsonl))
        run("export csv", "export", "leaky", "--format", "csv", "-o", str(csv))
        run("batches", "batches")
        served = sim.state.ledger.to_json()

    nowhere = {
        **env,
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{_free_port()}",
        "ORCHESTRATOR_MAX_RETRIES": "0",
        "ORCHESTRATOR_UNREACHABLE_TIMEOUT": "2",
    }
    (tmp_path / "later").mkdir()
    later = write_job(tmp_path / "later", "unreachable", 5)
    run("run unreachable", "run", str(later), environment=nowhere)
    if secret_store.startswith("postgresql"):
        # The same URL, password included, on a port where no server listens.
        gone = make_url(secret_store).set(port=_free_port())
        run(
            "status, store gone",
            "status",
            environment={**env, "ORCHESTRATOR_DATABASE_URL": gone.render_as_string(False)},
        )

    codes = {what: result.returncode for what, result in runs}
    expected = {
        "db upgrade": 0,
        "status": 0,
        "status job": 0,
        "export jsonl": 0,
        "export csv": 0,
        "batches": 0,
        "run unreachable": 1,
    }
    if secret_store.startswith("postgresql"):
        expected["status, store gone"] = 1
    assert codes.pop("run") in (0, 3), runs[1][1].stderr[-3000:]
    assert codes == expected, {w: r.stderr[-1500:] for w, r in runs if r.returncode}
    # The run really was faulty, and DEBUG logging really was on.
    assert served["responses"].get("results 200", 0) > 0
    assert any(key.endswith(" 500") for key in served["responses"]), served["responses"]
    assert "DEBUG" in runs[1][1].stderr + runs[1][1].stdout
    if secret_store.startswith("postgresql"):
        assert "***" in runs[-1][1].stderr  # the URL is shown, masked

    artefacts: dict[str, bytes] = {}
    for what, result in runs:
        artefacts[f"{what} stdout"] = result.stdout.encode()
        artefacts[f"{what} stderr"] = result.stderr.encode()
    artefacts["export jsonl"] = jsonl.read_bytes()
    artefacts["export csv"] = csv.read_bytes()
    artefacts["store"] = _store_dump(secret_store, tmp_path)
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file():
            artefacts[f"file {path.name}"] = path.read_bytes()
    assert len(artefacts["store"]) > 10_000
    assert b"leaky" in artefacts["export csv"]

    for secret in (SECRET_KEY, SECRET_PASSWORD):
        # The key is also looked for in part: a log that cuts or masks it halfway still leaks.
        needles = {secret.encode(), secret[-12:].encode()}
        leaks = [what for what, data in artefacts.items() if any(n in data for n in needles)]
        assert leaks == [], f"{secret} found in {leaks}"


# -- 3. the simulator checks the key --------------------------------------------------------


@pytest.fixture
def keyed_sim() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(processing_seconds=0.2, api_keys=frozenset({SECRET_KEY}))
    with SimulatorServer(config) as server:
        yield server


def _get(sim: SimulatorServer, path: str, headers: dict[str, str]) -> httpx.Response:
    base = {"anthropic-version": "2023-06-01"}
    return httpx.get(f"{sim.base_url}{path}", headers={**base, **headers}, timeout=10)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "sk-wrong"}, {"authorization": "Bearer sk-wrong"}],
    ids=["no key", "wrong x-api-key", "wrong bearer"],
)
def test_the_simulator_refuses_requests_without_a_valid_key(
    keyed_sim: SimulatorServer, headers: dict[str, str]
) -> None:
    for path in ("/v1/messages/batches", "/v1/messages/batches/msgbatch_x/results"):
        answer = _get(keyed_sim, path, headers)
        assert answer.status_code == 401, (path, answer.text)
        assert answer.json()["error"]["type"] == "authentication_error"
    assert _get(keyed_sim, "/v1/messages/batches", {"x-api-key": SECRET_KEY}).status_code == 200


@pytest.mark.timeout(30)
def test_the_simulator_ledger_needs_a_key(keyed_sim: SimulatorServer) -> None:
    answer = _get(keyed_sim, "/_simulator/ledger", {})
    assert answer.status_code == 401, answer.text[:500]
