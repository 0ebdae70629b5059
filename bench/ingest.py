"""Benchmark: ingesting one ended batch's results, beside the floor and the naive way.

A results ``.jsonl`` of ``--lines`` lines (succeeded lines of 1-2 KB, and errored,
canceled and expired ones, shuffled like the API's) is written for a 100,000-item
batch seeded into a store through its own operations, then read three ways, each in
its own child process (so each one's peak RSS is its own, and nothing is warm):

* floor: ``orjson.loads`` of each line of the local file and one ``sqlite3``
  ``executemany`` (WAL) of the same typed rows into the same ``results`` table (with
  ``--postgres``, psycopg's ``executemany`` into PostgreSQL's, or with ``--pg-floor
  copy`` one ``COPY``);
* naive: the official SDK's ``client.messages.batches.results(id)`` over loopback
  HTTP, one SQLAlchemy ORM ``Result`` per line added to a session, one commit;
* ours: the orchestrator's ``ingest_batch`` over loopback HTTP (download, parse,
  route, store, resolve every item), into SQLite or, with ``--postgres``, a
  throwaway PostgreSQL cluster.

The file is served by a bare HTTP server in its own process (``sendfile``), so the
server costs next to nothing. Each contestant gets a fresh copy of the seeded store;
the routes floor and naive need (custom_id -> item) are loaded before their clock
starts, which favours them. ``--memory`` instead writes a 256 MB results file and
reports the peak RSS of the process running our ingest.

    .venv/bin/python bench/ingest.py                      # 100,000 lines, SQLite
    .venv/bin/python bench/ingest.py --postgres           # all three on PostgreSQL
    .venv/bin/python bench/ingest.py --postgres --pg-floor copy   # the floor by COPY
    .venv/bin/python bench/ingest.py --memory             # peak RSS, 256 MB file
    .venv/bin/python bench/ingest.py --only ours --py-spy out.txt   # profile ours
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from _common import BENCH_KEY, REPO, ChildRun, free_port, median, postgres, run_child

#: The outcome mix of the generated file (the rest is succeeded).
ERRORED_SHARE = 0.06
CANCELED_SHARE = 0.03
EXPIRED_SHARE = 0.03
MODEL = "claude-haiku-4-5"
#: What a succeeded line's size is drawn from, in bytes (default run / ``--memory``).
LINE_BYTES = (1024, 2048)
MEMORY_FILE_BYTES = 256 * 1024 * 1024
MEMORY_LINES = 100_000
ERROR_MESSAGES = {
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "invalid_request_error": "messages.0.content: text content blocks must be non-empty",
}
#: Text the answers are cut from: words, punctuation, escapes and non-ASCII letters.
_WORDS = (
    "the product arrived on time and works as described although the manual is thin "
    "quality is good for the price but the colour differs from the photo "
    'naïve café déjà-vu Straße 東京 “quoted” "escaped" tab\tand newline\n '
    "shipping was fast support answered within a day would buy again maybe "
).split(" ")


# -- the results file ------------------------------------------------------------------


def text_pool(seed: int, size: int = 1 << 20) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def result_line(
    custom_id: str, rng: random.Random, pool: str, line_bytes: tuple[int, int]
) -> bytes:
    """One results line as the API writes it (§2.5, §2.6), newline included."""
    draw = rng.random()
    result: dict[str, Any]
    if draw < ERRORED_SHARE:
        error_type = rng.choice(sorted(ERROR_MESSAGES))
        error = {"type": error_type, "message": ERROR_MESSAGES[error_type]}
        result = {"type": "errored", "error": {"type": "error", "error": error, "request_id": None}}
    elif draw < ERRORED_SHARE + CANCELED_SHARE:
        result = {"type": "canceled"}
    elif draw < ERRORED_SHARE + CANCELED_SHARE + EXPIRED_SHARE:
        result = {"type": "expired"}
    else:
        # The envelope is about 560 bytes; the text fills the rest of the drawn size
        # (a few characters are 2-3 bytes in UTF-8 or escaped, so lines vary a little).
        target = rng.randint(*line_bytes) - 560
        start = rng.randrange(0, len(pool) - target)
        text = pool[start : start + max(target, 1)]
        cached = rng.random() < 0.3
        result = {
            "type": "succeeded",
            "message": {
                "id": "msg_" + hashlib.blake2b(custom_id.encode(), digest_size=12).hexdigest(),
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": rng.randint(50, 400),
                    "output_tokens": len(text) // 4 + 1,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 1024 if cached else 0,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": 0,
                        "ephemeral_1h_input_tokens": 0,
                    },
                    "service_tier": "batch",
                    "server_tool_use": None,
                    "inference_geo": "us",
                },
            },
        }
    line = {"custom_id": custom_id, "result": result}
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


def write_results(
    path: Path, custom_ids: Sequence[str], line_bytes: tuple[int, int], seed: int = 7
) -> int:
    """The results file, lines shuffled (§5.2: not in request order); its size."""
    rng = random.Random(seed)
    order = list(custom_ids)
    rng.shuffle(order)
    pool = text_pool(seed)
    with path.open("wb") as fh:
        for custom_id in order:
            fh.write(result_line(custom_id, rng, pool, line_bytes))
    return path.stat().st_size


def memory_line_bytes(lines: int) -> tuple[int, int]:
    """Succeeded-line sizes that make ``lines`` lines come to about 256 MB."""
    small = 250 * (ERRORED_SHARE + CANCELED_SHARE + EXPIRED_SHARE)
    mean = (MEMORY_FILE_BYTES / lines - small) / (
        1 - ERRORED_SHARE - CANCELED_SHARE - EXPIRED_SHARE
    )
    return int(mean * 0.75), int(mean * 1.25)


# -- the seeded store ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Draft:
    """A dataset row as the store records it (``records.ItemLike``)."""

    ordinal: int
    key: str
    line: int
    params_json: bytes
    params_hash: str
    input_json: bytes | None = None
    columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Seeded:
    batch_id: int
    remote_id: str
    custom_ids: list[str]


def seed_store(url: str, items: int, base_url: str, tag: str = "bench") -> Seeded:
    """A job of ``items`` items in one batch the API has ended, with its results_url on
    ``base_url``; built through the store's own operations, as the steps would. Every
    store gets the same ``tag`` (custom_ids are tagged per store), so one results file
    serves them all."""
    from sqlalchemy import text

    from orchestrator.domain.planning import make_custom_id
    from orchestrator.domain.states import BatchStatus, ProcessingStatus
    from orchestrator.steps.context import utcnow
    from orchestrator.store.engine import make_engine, upgrade
    from orchestrator.store.queries import Store
    from orchestrator.store.records import PlannedRequest, RemoteState

    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO orchestrator_meta (key, value) VALUES ('store_tag', :tag)"),
            {"tag": tag},
        )
    engine.dispose()
    store = Store.open(url)
    try:
        now = utcnow()
        drafts = (_draft(i) for i in range(items))
        job = store.create_job(_new_job(items), drafts, now=now)
        lease = store.claim_job(job.id, "bench", now, 600)
        assert lease is not None
        tag = store.store_tag()
        requests: list[PlannedRequest] = []
        body_bytes = 0
        after = 0
        while page := store.pending_items(job.id, after, 10_000):
            for p in page:
                requests.append(PlannedRequest(p.id, 1, make_custom_id(tag, p.id, 1)))
                body_bytes += len(p.params_json)
            after = page[-1].id
        batch_id = store.add_planned_batch(lease, requests, body_bytes, now)
        assert batch_id is not None
        store.release_job(lease)
        (batch,) = store.claim_batches([BatchStatus.PLANNED], "bench", now, 600, 1)
        assert store.mark_creating(batch, now, base_url)
        remote_id = f"msgbatch_bench{batch_id:06d}"
        state = RemoteState(
            remote_id=remote_id,
            status=BatchStatus.ENDED,
            processing_status=ProcessingStatus.ENDED,
            created_at=now,
            expires_at=now + timedelta(days=1),
            ended_at=now,
            results_url=f"{base_url}/v1/messages/batches/{remote_id}/results",
            succeeded=0,
            errored=0,
            canceled=0,
            expired=0,
        )
        assert store.record_created(batch, state, now)
        store.release_batch(batch)
        return Seeded(batch_id, remote_id, [r.custom_id for r in requests])
    finally:
        store.close()


def _draft(i: int) -> Draft:
    body = orjson.dumps(
        {
            "max_tokens": 512,
            "messages": [{"content": f"Review {i}: label it.", "role": "user"}],
            "model": MODEL,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return Draft(i, f"r{i}", i + 1, body, hashlib.sha256(body).hexdigest())


def _new_job(items: int) -> Any:
    from orchestrator.domain.contract import MAX_BATCH_BYTES
    from orchestrator.store.records import NewJob

    return NewJob(
        name="bench-ingest",
        content_hash="0" * 64,
        spec_path="bench.toml",
        spec={"name": "bench-ingest"},
        max_attempts=3,
        max_requests=max(items, 1),
        max_bytes=MAX_BATCH_BYTES,
        use_cache=False,
        budget_usd=None,
        schedule=None,
        api_version="2023-06-01",
    )


def seed_in_child(
    urls: Sequence[str], lines: int, base_url: str, results: Path, line_bytes: tuple[int, int]
) -> Seeded:
    """Seed every store and write the results file, in a child process."""
    spec = {
        "urls": list(urls),
        "lines": lines,
        "base_url": base_url,
        "results": str(results),
        "line_bytes": list(line_bytes),
    }
    args = [sys.executable, __file__, "--child", "seed", json.dumps(spec)]
    child = run_child(args, _env())
    if child.returncode != 0:
        raise SystemExit(f"seeding exited {child.returncode}:\n{child.stderr[-3000:]}")
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    return Seeded(int(answer["batch_id"]), answer["remote_id"], [])


def child_seed(spec: dict[str, Any]) -> dict[str, Any]:
    first: Seeded | None = None
    for url in spec["urls"]:
        seeded = seed_store(url, int(spec["lines"]), spec["base_url"])
        if first is None:
            first = seeded
        elif seeded != first:
            raise SystemExit("the stores were seeded differently")
    assert first is not None
    low, high = spec["line_bytes"]
    write_results(Path(spec["results"]), first.custom_ids, (int(low), int(high)))
    return {"batch_id": first.batch_id, "remote_id": first.remote_id}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def own_peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM: unlike ``ru_maxrss``, not inherited from
    the parent across fork and exec)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Databases:
    """Fresh copies of the seeded store: a file copy on SQLite, ``CREATE DATABASE ...
    TEMPLATE`` on PostgreSQL."""

    def __init__(self, root: Path, server: str | None) -> None:
        self.root = root
        self.server = server
        self.n = 0
        self.seed_url = self._name("seed")

    def _name(self, name: str) -> str:
        if self.server is None:
            return f"sqlite:///{self.root / f'{name}.db'}"
        import psycopg

        with psycopg.connect(self._plain(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE bench_{name}" + self._template(name))
        return self.server.rsplit("/", 1)[0] + f"/bench_{name}"

    def _template(self, name: str) -> str:
        return "" if name == "seed" else " TEMPLATE bench_seed"

    def _plain(self) -> str:
        assert self.server is not None
        return self.server.replace("postgresql+psycopg://", "postgresql://")

    def sqlite_copy(self) -> Path:
        self.n += 1
        path = self.root / f"copy-{self.n}.db"
        shutil.copyfile(self.root / "seed.db", path)
        return path

    def fresh(self) -> str:
        if self.server is None:
            return f"sqlite:///{self.sqlite_copy()}"
        self.n += 1
        return self._name(f"copy_{self.n}")


# -- the file server -------------------------------------------------------------------


def serve(path: Path, remote_id: str, lines: int, port: int) -> None:
    """Answer the retrieve the SDK makes first, and the results download (sendfile)."""
    batch = {
        "id": remote_id,
        "type": "message_batch",
        "processing_status": "ended",
        "request_counts": {
            "processing": 0,
            "succeeded": lines,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        "created_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-02T00:00:00Z",
        "ended_at": "2026-01-01T00:10:00Z",
        "cancel_initiated_at": None,
        "archived_at": None,
        "results_url": f"http://127.0.0.1:{port}/v1/messages/batches/{remote_id}/results",
    }
    body = orjson.dumps(batch)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            route = self.path.split("?", 1)[0]
            if route == f"/v1/messages/batches/{remote_id}":
                self._head("application/json", len(body))
                self.wfile.write(body)
            elif route == f"/v1/messages/batches/{remote_id}/results":
                self._head("application/binary", path.stat().st_size)
                with path.open("rb") as fh:
                    self.connection.sendfile(fh)
            else:
                self._head("application/json", 2)
                self.wfile.write(b"{}")

        def _head(self, kind: str, length: int) -> None:
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(length))
            self.send_header("request-id", "req_bench")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


@contextmanager
def file_server(path: Path, remote_id: str, lines: int, port: int) -> Iterator[None]:
    args = [sys.executable, __file__, "--serve", str(path), remote_id, str(lines), str(port)]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    try:
        import httpx

        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the file server did not start") from None
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


# -- the contestants (each runs in its own child process) -------------------------------


def _routes(url: str, batch_id: int) -> dict[str, tuple[int, int]]:
    from sqlalchemy import text

    from orchestrator.store.engine import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT custom_id, item_id, attempt FROM batch_requests WHERE batch_id = :b"),
            {"b": batch_id},
        ).all()
    engine.dispose()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


_FLOOR_INSERT = (
    "INSERT INTO results (batch_id, item_id, custom_id, attempt, result_type, message_id, "
    "model, stop_reason, stop_sequence, text, content, input_tokens, output_tokens, "
    "cache_creation_input_tokens, cache_read_input_tokens, cache_creation_5m_input_tokens, "
    "cache_creation_1h_input_tokens, service_tier, inference_geo, error_type, error_message, "
    "cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _floor_rows(
    path: Path, routes: dict[str, tuple[int, int]], batch_id: int
) -> Iterator[tuple[Any, ...]]:
    loads, dumps = orjson.loads, orjson.dumps
    with path.open("rb") as fh:
        for raw in fh:
            line = loads(raw)
            custom_id = line["custom_id"]
            item_id, attempt = routes[custom_id]
            result = line["result"]
            kind = result["type"]
            head = (batch_id, item_id, custom_id, attempt, kind)
            if kind == "succeeded":
                m = result["message"]
                u = m["usage"]
                split = u.get("cache_creation") or {}
                content = m["content"]
                text = "".join(b["text"] for b in content if b.get("type") == "text")
                cost = (u["input_tokens"] * 0.5 + u["output_tokens"] * 2.5) / 1e6
                yield (
                    *head,
                    m["id"],
                    m["model"],
                    m.get("stop_reason"),
                    m.get("stop_sequence"),
                    text,
                    dumps(content).decode(),
                    u["input_tokens"],
                    u["output_tokens"],
                    u.get("cache_creation_input_tokens"),
                    u.get("cache_read_input_tokens"),
                    split.get("ephemeral_5m_input_tokens"),
                    split.get("ephemeral_1h_input_tokens"),
                    u.get("service_tier"),
                    u.get("inference_geo"),
                    None,
                    None,
                    cost,
                )
            else:
                error = result["error"]["error"] if kind == "errored" else {}
                yield (*head, *(None,) * 14, error.get("type"), error.get("message"), None)


def child_floor(spec: dict[str, Any]) -> dict[str, Any]:
    path, batch_id = Path(spec["file"]), int(spec["batch_id"])
    if spec["db"].startswith("postgresql"):
        return _postgres_floor(spec["db"], path, batch_id, spec.get("pg_floor") == "copy")
    routes = _routes(f"sqlite:///{spec['db']}", batch_id)
    conn = sqlite3.connect(spec["db"], isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(_FLOOR_INSERT, _floor_rows(path, routes, batch_id))
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    stored = conn.execute("SELECT count(*) FROM results").fetchone()[0]
    conn.close()
    return {"seconds": seconds, "stored": stored}


def _postgres_floor(url: str, path: Path, batch_id: int, copy_rows: bool) -> dict[str, Any]:
    """The floor on PostgreSQL: the same typed rows in one transaction, by psycopg's
    ``executemany`` (pipelined), as the issue defines the floor, or with ``copy_rows``
    by ``COPY``, PostgreSQL's fastest bulk path."""
    import psycopg

    routes = _routes(url, batch_id)
    columns = _FLOOR_INSERT.split("(", 1)[1].split(")", 1)[0]
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur:
            rows = _floor_rows(path, routes, batch_id)
            if copy_rows:
                with cur.copy(f"COPY results ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                cur.executemany(_FLOOR_INSERT.replace("?", "%s"), rows)
        conn.commit()
        seconds = time.perf_counter() - started
        stored = conn.execute("SELECT count(*) FROM results").fetchone()
    return {"seconds": seconds, "stored": stored[0] if stored else 0}


def child_naive(spec: dict[str, Any]) -> dict[str, Any]:
    import anthropic
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from orchestrator.store.engine import make_engine
    from orchestrator.store.tables import Result

    batch_id = int(spec["batch_id"])
    routes = _routes(spec["db"], batch_id)
    engine = make_engine(spec["db"])
    client = anthropic.Anthropic(api_key=BENCH_KEY, base_url=spec["base_url"], max_retries=0)
    started = time.perf_counter()
    with Session(engine) as session:
        for entry in client.messages.batches.results(spec["remote_id"]):
            item_id, attempt = routes[entry.custom_id]
            row = Result(
                batch_id=batch_id,
                item_id=item_id,
                custom_id=entry.custom_id,
                attempt=attempt,
                result_type=entry.result.type,
            )
            if entry.result.type == "succeeded":
                m = entry.result.message
                row.message_id = m.id
                row.model = m.model
                row.stop_reason = m.stop_reason
                row.stop_sequence = m.stop_sequence
                row.text = "".join(b.text for b in m.content if b.type == "text")
                row.content = json.dumps([b.model_dump() for b in m.content])
                row.input_tokens = m.usage.input_tokens
                row.output_tokens = m.usage.output_tokens
                row.cache_creation_input_tokens = m.usage.cache_creation_input_tokens
                row.cache_read_input_tokens = m.usage.cache_read_input_tokens
                row.service_tier = m.usage.service_tier
                row.inference_geo = m.usage.inference_geo
                row.cost_usd = (m.usage.input_tokens * 0.5 + m.usage.output_tokens * 2.5) / 1e6
            elif entry.result.type == "errored":
                row.error_type = entry.result.error.error.type
                row.error_message = entry.result.error.error.message
            session.add(row)
        session.commit()
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(Result)).scalar_one()
    engine.dispose()
    return {"seconds": seconds, "stored": int(stored)}


def child_ours(spec: dict[str, Any]) -> dict[str, Any]:
    from orchestrator.api.client import BatchesClient
    from orchestrator.domain.states import BatchStatus
    from orchestrator.settings import load_settings
    from orchestrator.steps.context import StepContext, utcnow
    from orchestrator.steps.ingest import ingest_batch
    from orchestrator.store.queries import Store

    settings = load_settings(
        api_key=BENCH_KEY, base_url=spec["base_url"], database_url=spec["db"], lease_ttl_s=600
    )
    store = Store.open(settings.database_url)
    api = BatchesClient(api_key=BENCH_KEY, base_url=settings.base_url, max_retries=0)
    ctx = StepContext(store=store, api=api, settings=settings)
    (lease,) = store.claim_batches([BatchStatus.ENDED], ctx.owner, utcnow(), ctx.ttl_s, 1)
    gc.freeze()  # as the orchestrator's commands do once their imports are done (cli.main)
    before_mb = own_peak_rss_mb()
    started = time.perf_counter()
    outcome = ingest_batch(ctx, lease)
    seconds = time.perf_counter() - started
    report = store.job_report(store.job_of_batch(lease.row_id).id)
    api.close()
    store.close()
    return {
        "seconds": seconds,
        "outcome": str(outcome),
        "stored": sum(report.results.values()),
        "items": {str(k): v for k, v in report.items.items()},
        "rss_before_mb": before_mb,
    }


CHILDREN = {"floor": child_floor, "naive": child_naive, "ours": child_ours}
_HELPERS = {"seed": child_seed}


@dataclass(frozen=True)
class Run:
    kind: str
    store: str
    seconds: float
    peak_rss_mb: float
    answer: dict[str, Any]


def run_contestant(kind: str, spec: dict[str, Any], store: str, py_spy: str | None = None) -> Run:
    args = [sys.executable, __file__, "--child", kind, json.dumps(spec)]
    if py_spy:
        spy = str(Path(sys.executable).parent / "py-spy")
        args = [spy, "record", "-r", "50", "--idle", "-f", "raw", "-o", py_spy, "--", *args]
    child: ChildRun = run_child(args, _env())
    if child.returncode != 0:
        raise SystemExit(f"{kind} exited {child.returncode}:\n{child.stderr[-3000:]}")
    # The last JSON line (py-spy, when it records, prints its own lines too).
    answer = json.loads([x for x in child.stdout.splitlines() if x.startswith("{")][-1])
    return Run(kind, store, float(answer["seconds"]), float(answer["own_peak_rss_mb"]), answer)


# -- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1, help="rounds (medians over them)")
    parser.add_argument("--postgres", action="store_true", help="all three on PostgreSQL")
    parser.add_argument(
        "--pg-floor",
        choices=("executemany", "copy"),
        default="executemany",
        help="how the floor stores its rows on PostgreSQL",
    )
    parser.add_argument("--memory", action="store_true", help="peak RSS on a 256 MB file")
    parser.add_argument("--only", choices=sorted(CHILDREN), action="append", help="repeatable")
    parser.add_argument("--py-spy", metavar="OUT", help="record ours with py-spy (raw format)")
    parser.add_argument("--keep", action="store_true", help="keep the stores and the file")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        answer = {**CHILDREN, **_HELPERS}[args.child[0]](json.loads(args.child[1]))
        print(json.dumps({**answer, "own_peak_rss_mb": own_peak_rss_mb()}))
        return
    if args.serve:
        path, remote_id, lines, port = args.serve
        serve(Path(path), remote_id, int(lines), int(port))
        return
    lines = MEMORY_LINES if args.memory else args.lines
    kinds = args.only or (["ours"] if args.memory else ["floor", "naive", "ours"])
    line_bytes = memory_line_bytes(lines) if args.memory else LINE_BYTES
    with ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
        if args.keep:
            print(f"keeping {root}")
        else:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        server = stack.enter_context(postgres()) if args.postgres else None
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        sqlite_dbs = _Databases(root / "sqlite", None)
        (root / "sqlite").mkdir()
        pg_dbs = _Databases(root, server) if server is not None else None
        results = root / "results.jsonl"
        # Seeded in a child: a process's peak RSS is inherited by the children it
        # starts (Linux keeps the high-water mark across fork and exec), so this
        # process stays small for the children's figures to be their own.
        seeded = seed_in_child(
            [sqlite_dbs.seed_url] + ([pg_dbs.seed_url] if pg_dbs else []),
            lines,
            base_url,
            results,
            line_bytes,
        )
        size = results.stat().st_size
        print(
            f"{lines:,} lines, {size / 1e6:,.1f} MB ({size / lines:,.0f} B a line); "
            f"seeded in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        stack.enter_context(file_server(results, seeded.remote_id, lines, port))
        runs: list[Run] = []
        for n in range(args.rounds):
            for kind in kinds:
                dbs = pg_dbs if pg_dbs is not None else sqlite_dbs
                store = "postgresql" if dbs is pg_dbs else "sqlite"
                spec = {
                    "file": str(results),
                    "batch_id": seeded.batch_id,
                    "remote_id": seeded.remote_id,
                    "base_url": base_url,
                    # The SQLite floor opens a file; everything else takes a URL.
                    "db": str(dbs.sqlite_copy())
                    if kind == "floor" and store == "sqlite"
                    else dbs.fresh(),
                    "pg_floor": args.pg_floor,
                }
                spy = args.py_spy if kind == "ours" else None
                # Each starts on a quiet disk: the write-back of the previous one's
                # hundreds of MB would otherwise slow this one's commits.
                os.sync()
                time.sleep(1.0)
                run = run_contestant(kind, spec, store, spy)
                runs.append(run)
                _check(run, lines)
                print(
                    f"round {n + 1}: {kind:5} ({store}) {run.seconds:6.2f} s "
                    f"{lines / run.seconds:9,.0f} lines/s, peak RSS {run.peak_rss_mb:5.0f} MB"
                    + _extra(run),
                    flush=True,
                )
        _summary(runs, lines, size, args.memory)


def _check(run: Run, lines: int) -> None:
    if run.answer["stored"] != lines:
        raise SystemExit(f"{run.kind} stored {run.answer['stored']} of {lines} lines")


def _extra(run: Run) -> str:
    if run.kind != "ours":
        return ""
    return f" (before ingest {run.answer['rss_before_mb']:.0f} MB), items {run.answer['items']}"


def _summary(runs: list[Run], lines: int, size: int, memory: bool) -> None:
    rates = {
        kind: lines / median([r.seconds for r in runs if r.kind == kind])
        for kind in dict.fromkeys(r.kind for r in runs)
    }
    print(f"\nmedians over {len(runs) // max(len(rates), 1)} round(s):")
    for kind, rate in rates.items():
        peak = max(r.peak_rss_mb for r in runs if r.kind == kind)
        print(f"  {kind:5} {rate:9,.0f} lines/s   peak RSS {peak:5.0f} MB")
    if "ours" in rates and "floor" in rates:
        print(f"  ours/floor {rates['ours'] / rates['floor']:.2f}  (target >= 0.60)")
    if "ours" in rates and "naive" in rates:
        print(f"  ours/naive {rates['ours'] / rates['naive']:.2f}  (target >= 3)")
    if memory:
        peak = max(r.peak_rss_mb for r in runs if r.kind == "ours")
        print(f"  peak RSS ingesting {size / 1e6:,.0f} MB: {peak:.0f} MB  (target <= 150 MB)")


if __name__ == "__main__":
    main()
