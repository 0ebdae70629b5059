"""Helpers for the reliability tests: processes killed at chosen moments, and the checks
of a store against the simulator's ledger (what a user would notice: an item lost or
answered twice, a request paid twice, a batch of somebody else's taken for ours)."""

from __future__ import annotations

import collections
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.domain.planning import parse_custom_id
from orchestrator.simulator import SimulatorServer
from tests.acceptance.support import SECRET_KEY, clean_env, query

#: Seconds between looks at the ledger or the store while waiting for a moment to kill.
WATCH_S = 0.005
#: How long a first `run` (or daemon) may take to make its first create.
FIRST_CREATE_S = 60.0


def default_env(sim: SimulatorServer, db: Path, poll_interval: str = "0.3") -> dict[str, str]:
    """DEFAULT settings (leases, create timeout, skew, log level...) except a short poll."""
    return clean_env(
        ANTHROPIC_API_KEY=SECRET_KEY,
        ANTHROPIC_BASE_URL=sim.base_url,
        ORCHESTRATOR_DATABASE_URL=f"sqlite:///{db}",
        ORCHESTRATOR_POLL_INTERVAL=poll_interval,
    )


def write_job(root: Path, name: str, items: int, *, max_requests: int, prefix: str = "") -> Path:
    """A sentiment-labelling spec over ``items`` rows (texts start with ``prefix``, so
    two jobs with different prefixes never answer each other from the response cache)."""
    words = ["great", "terrible", "okay", "love it", "broke", "fine", "refund", "meh"]
    data = root / f"{name}.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for i in range(items):
            row = {"id": f"k{i}", "text": f"{prefix}review {i}: {words[i % len(words)]}"}
            fh.write(json.dumps(row) + "\n")
    spec = root / f"{name}.toml"
    spec.write_text(
        f'name = "{name}"\ninput = "{data.name}"\nkey = "id"\n'
        '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 8\n'
        'prompt = "Review: {text}\\nAnswer positive, negative or neutral."\n'
        f"[batching]\nmax_requests = {max_requests}\n",
        encoding="utf-8",
    )
    return spec


# -- processes -------------------------------------------------------------------------


@dataclass
class Proc:
    """One CLI process, its output in files (a pipe nobody reads would fill and block)."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    started: float

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Procs:
    """Every process a test started, so ``finally`` can end the leftovers."""

    logs: Path
    started: list[Proc] = field(default_factory=list)

    def start(self, env: dict[str, str], *args: str) -> Proc:
        n = len(self.started)
        out = self.logs / f"{n:03d}-{args[0]}.out"
        err = self.logs / f"{n:03d}-{args[0]}.err"
        with out.open("wb") as fo, err.open("wb") as fe:
            popen = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", *args], env=env, stdout=fo, stderr=fe
            )
        proc = Proc(popen, out, err, time.monotonic())
        self.started.append(proc)
        return proc

    def end_all(self) -> None:
        """SIGKILL whatever is still running (only processes started here)."""
        for proc in self.started:
            if proc.popen.poll() is None:
                proc.popen.kill()
        for proc in self.started:
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck zombie
                pass

    def tracebacks(self) -> list[str]:
        """The stderr tails of every process that printed a traceback or IntegrityError."""
        return [
            f"{p.err.name}: {p.stderr()[-3000:]}"
            for p in self.started
            if "Traceback" in p.stderr() or "IntegrityError" in p.stderr()
        ]


SEEN, TIMED_OUT, EXITED = "seen", "timed out", "exited"


def _watch(proc: Proc, until: float, seen: Callable[[], bool]) -> str:
    """Wait until ``seen()`` (SEEN), ``until`` (TIMED_OUT) or the process's end (EXITED)."""
    while time.monotonic() < until:
        if not proc.alive():
            return EXITED
        if seen():
            return SEEN
        time.sleep(WATCH_S)
    return TIMED_OUT if proc.alive() else EXITED


def _count(db: Path, sql: str) -> int:
    """A count read from the store as it is now (0 while there is no store yet)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return 0
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:  # no schema yet, or busy: nothing seen
        return 0
    finally:
        conn.close()


CREATE_LANDED = "create landed"
CREATING_ROW = "creating row"
UNKNOWN_ROW = "unknown row"
RESULTS_STORED = "results stored"
RANDOM = "random"

#: Moments watched in the store: a count, and whether it must grow (else be non-zero).
_STORE_MOMENTS = {
    CREATING_ROW: ("SELECT count(*) FROM batches WHERE status = 'creating'", False),
    UNKNOWN_ROW: ("SELECT count(*) FROM batches WHERE status = 'unknown'", False),
    RESULTS_STORED: ("SELECT count(*) FROM results", True),
}


def kill_at_a_moment(
    proc: Proc, moment: str, rng: random.Random, sim: SimulatorServer, db: Path
) -> str:
    """SIGKILL ``proc`` at ``moment``; returns the moment it was killed at, or EXITED if
    it ended by itself first.

    * CREATE_LANDED: the simulator's ledger shows a new batch (the create was made; its
      answer may not have been read or recorded yet);
    * CREATING_ROW: the store shows a batch ``creating`` (intent committed, the POST
      maybe on the wire);
    * UNKNOWN_ROW: a create of unknown outcome is being reconciled (killed a random
      0 to 0.5 s later, mid-reconciliation or adoption);
    * RESULTS_STORED: a results chunk was just committed (mid-ingest);
    * RANDOM: a seeded delay after the start (which takes a second or two).

    A watched moment that does not come within a few seconds of the start falls back to
    a random one (but the very first create is waited for).
    """
    if moment == RANDOM:
        watched = _watch(proc, proc.started + rng.uniform(0.5, 3.5), lambda: False)
    else:
        until = proc.started + rng.uniform(2.5, 5.0)
        if moment == CREATE_LANDED:
            before = len(sim.state.ledger.batches)
            if not before:  # the first create comes after the items are recorded
                until = proc.started + FIRST_CREATE_S
            watched = _watch(proc, until, lambda: len(sim.state.ledger.batches) > before)
        else:
            sql, grows = _STORE_MOMENTS[moment]
            floor = _count(db, sql) if grows else 0
            watched = _watch(proc, until, lambda: _count(db, sql) > floor)
        if watched == SEEN and moment == UNKNOWN_ROW:
            pause = rng.uniform(0.0, 0.5)
            if _watch(proc, time.monotonic() + pause, lambda: False) == EXITED:
                watched = EXITED
    if watched == EXITED:
        proc.popen.wait(timeout=60)
        return EXITED
    proc.popen.send_signal(signal.SIGKILL)
    proc.popen.wait(timeout=30)
    return moment if watched == SEEN or moment == RANDOM else f"{RANDOM} ({moment} not seen)"


# -- the store against the ledger -------------------------------------------------------


def store_tag(db: Path) -> str:
    return str(query(db, "SELECT value FROM orchestrator_meta WHERE key = 'store_tag'")[0][0])


def job_status(db: Path, name: str) -> str | None:
    try:
        rows = query(db, "SELECT status FROM jobs WHERE name = ?", name)
    except sqlite3.Error:
        return None
    return str(rows[0][0]) if rows else None


def assert_items_terminal_once(db: Path, job: str, items: int) -> None:
    """Every item of ``job`` appears once in final_results, succeeded or failed."""
    rows = query(db, "SELECT key, status FROM final_results WHERE job_name = ?", job)
    assert len(rows) == items, f"{job}: {len(rows)} final rows for {items} items"
    assert len({key for key, _ in rows}) == items, f"{job}: an item appears twice"
    statuses = collections.Counter(status for _, status in rows)
    assert set(statuses) <= {"succeeded", "failed"}, f"{job}: not all terminal: {statuses}"


def assert_no_duplicate_results(db: Path) -> None:
    total, distinct = query(
        db, "SELECT count(*), count(DISTINCT batch_id || '/' || custom_id) FROM results"
    )[0]
    assert total == distinct, f"{total - distinct} result rows stored twice"


def assert_sent_once(ledger: dict[str, Any]) -> None:
    submissions: dict[str, int] = ledger["submissions"]
    twice = {cid: n for cid, n in submissions.items() if n > 1}
    assert not twice, f"custom_ids submitted more than once: {sorted(twice)[:10]}"


def assert_attempts_match_ledger(ledger: dict[str, Any], db: Path) -> None:
    """For every item, the custom_ids the API received for it number its ``attempts``."""
    tag = store_tag(db)
    sent: collections.Counter[int] = collections.Counter()
    for custom_id in ledger["submissions"]:
        parts = parse_custom_id(custom_id)
        if parts is not None and parts.store_tag == tag:
            sent[parts.item_id] += 1
    rows = query(db, "SELECT id, attempts FROM items WHERE NOT cached")
    wrong = [(item_id, attempts, sent[item_id]) for item_id, attempts in rows]
    wrong = [w for w in wrong if w[1] != w[2]]
    assert not wrong, f"(item, attempts in the store, custom_ids sent) differ: {wrong[:10]}"
    assert set(sent) <= {item_id for item_id, _ in rows}, "sent for items the store lacks"


def assert_remote_batches_match(ledger: dict[str, Any], db: Path) -> None:
    """Every remote batch holding this store's custom_ids is held by exactly one local
    batch, whose requests are exactly that batch's custom_ids; every remote id the store
    holds is such a batch (nothing of somebody else's adopted, nothing made and orphaned).
    """
    tag = store_tag(db)
    local: dict[str, set[str]] = collections.defaultdict(set)
    for remote_id, custom_id in query(
        db,
        "SELECT b.remote_id, r.custom_id FROM batches b "
        "JOIN batch_requests r ON r.batch_id = b.id WHERE b.remote_id IS NOT NULL",
    ):
        local[str(remote_id)].add(str(custom_id))
    holders = collections.Counter(
        str(r[0]) for r in query(db, "SELECT remote_id FROM batches WHERE remote_id IS NOT NULL")
    )
    ours: set[str] = set()
    for batch in ledger["batches"]:
        tags = {getattr(parse_custom_id(cid), "store_tag", None) for cid in batch["custom_ids"]}
        if tag not in tags:
            continue
        ours.add(batch["id"])
        assert tags == {tag}, f"remote {batch['id']} mixes stores' requests: {tags}"
        assert holders[batch["id"]] == 1, (
            f"remote {batch['id']} ({batch['request_count']} requests, created "
            f"{batch['created_at']}, response lost: {batch['response_lost']}) is held by "
            f"{holders[batch['id']]} local batches"
        )
        assert local[batch["id"]] == set(batch["custom_ids"]), (
            f"remote {batch['id']} does not hold the requests of the local batch that has it"
        )
    strangers = set(holders) - ours
    assert not strangers, f"the store holds remote batches that are not its own: {strangers}"


def assert_store_agrees_with_ledger(ledger: dict[str, Any], db: Path) -> None:
    assert_no_duplicate_results(db)
    assert_attempts_match_ledger(ledger, db)
    assert_remote_batches_match(ledger, db)


# -- a neighbour on the same key, at the worst moment -------------------------------------

#: The store tag of the neighbour's custom_ids (any other store's would do).
NEIGHBOUR_TAG = "neighbour"


class NeighbourAtTheFirstCreate:
    """Script the simulator (``create_500_share=1`` and ``create_500_made_share=1`` at
    the start) so that, deterministically:

    1. the first create (X) is answered 500 but made (RX); an instant before RX is made,
       a neighbour sharing the key makes a batch of the same size (RF), so RF is the
       listed batch closest to X's intent;
    2. the next create (Y, the same size) is answered 500 and made nothing;
    3. every later create succeeds.

    The neighbour's custom_ids carry another store's tag, so RF's results prove it is
    not ours; RX holds X's requests and nothing else.
    """

    def __init__(self, sim: SimulatorServer) -> None:
        self.state = sim.state
        self.neighbour: list[str] = []
        self.made: list[str] = []
        self._create = sim.state.create_batch
        self._record = sim.state.ledger.record_response
        self._create_500s = 0
        sim.state.create_batch = self._on_create  # type: ignore[method-assign,assignment]
        sim.state.ledger.record_response = self._on_response  # type: ignore[method-assign]

    def _on_create(
        self, pairs: list[tuple[str, dict[str, Any]]], betas: frozenset[str], *rest: Any
    ) -> Any:
        if not self.made:
            theirs = [(f"{NEIGHBOUR_TAG}-{n}-1", params) for n, (_, params) in enumerate(pairs, 1)]
            self.neighbour.append(self._create(theirs, betas, *rest).id)
            self.state.configure(create_500_made_share=0.0)
        batch = self._create(pairs, betas, *rest)
        self.made.append(batch.id)
        return batch

    def _on_response(self, endpoint: str, status: int) -> None:
        self._record(endpoint, status)
        if endpoint == "create" and status == 500:
            self._create_500s += 1
            if self._create_500s == 2:
                self.state.configure(create_500_share=0.0)
