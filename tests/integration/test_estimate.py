"""The estimate: a whole spec validated, planned and costed before anything is sent, its
input tokens counted with the count-tokens endpoint on a sample and extrapolated."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.api.client import BatchesClient
from orchestrator.domain.pricing import PriceTable
from orchestrator.domain.spec import iter_items, load_spec
from orchestrator.errors import APIConnectionError, SpecError
from orchestrator.estimate import estimate
from orchestrator.simulator import SimulatorServer
from orchestrator.simulator.tokens import count_input_tokens
from tests.acceptance.support import SECRET_KEY, cli, sim_env
from tests.integration.conftest import ledger

ROWS = 10_000


def big_spec(root: Path, rows: int = ROWS, *, extra: str = "") -> Path:
    """Reviews of very different lengths (5 to 400 words), so a sample can miss."""
    rng = random.Random(7)
    words = ["great", "poor", "kettle", "arrived", "late", "früh", "😀", "sturdy", "quiet"]
    with (root / "rows.jsonl").open("w", encoding="utf-8") as out:
        for n in range(rows):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 400)))
            out.write(json.dumps({"id": f"k{n}", "text": text}, ensure_ascii=False) + "\n")
    spec = root / "spec.toml"
    spec.write_text(
        f'name = "big"\ninput = "rows.jsonl"\nkey = "id"\n{extra}\n'
        '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 32\n'
        'system = "Label the review."\nprompt = "Review: {text}"\n'
        "[batching]\nmax_requests = 3000\n",
        encoding="utf-8",
    )
    return spec


@pytest.fixture
def api(sim: SimulatorServer) -> Iterator[BatchesClient]:
    """A client of the simulator (the estimate needs no store)."""
    with BatchesClient(api_key="sk-estimate", base_url=sim.base_url) as client:
        yield client


def test_a_sampled_estimate_is_within_five_percent_and_sends_no_create(
    api: BatchesClient, sim: SimulatorServer, tmp_path: Path
) -> None:
    loaded = load_spec(big_spec(tmp_path))
    prices = PriceTable.load()

    found = estimate(
        loaded,
        prices=prices,
        api_version="2026-10-21",
        count_tokens=api.count_tokens,
        sample=200,
    )

    truth = sum(count_input_tokens(item.params) for item in iter_items(loaded))
    assert (found.items, found.batches, found.counted) == (ROWS, 4, 200)
    assert found.method == "count_tokens"
    assert not found.exact
    assert abs(found.input_tokens - truth) <= 0.05 * truth, (found.input_tokens, truth)
    assert 0 < found.input_margin < 0.05 * truth
    assert found.output_ceiling == 32 * ROWS
    assert 0 < found.usd_low < found.usd_high
    assert ledger(sim)["batches"] == []
    assert ledger(sim)["calls"].get("count_tokens") == 200


def test_a_small_job_is_counted_exactly(api: BatchesClient, tmp_path: Path) -> None:
    loaded = load_spec(big_spec(tmp_path, rows=50))
    found = estimate(
        loaded,
        prices=PriceTable.load(),
        api_version="2026-10-21",
        count_tokens=api.count_tokens,
    )
    assert found.exact
    assert found.input_margin == 0
    assert found.input_tokens == sum(count_input_tokens(i.params) for i in iter_items(loaded))


def test_offline_it_approximates_and_says_so(tmp_path: Path) -> None:
    loaded = load_spec(big_spec(tmp_path, rows=20))
    found = estimate(loaded, prices=PriceTable.load(), api_version="2026-10-21", count_tokens=None)
    assert (found.method, found.counted, found.items, found.batches) == ("bytes", 0, 20, 1)


def test_every_bad_row_is_reported_before_anything_is_counted(tmp_path: Path) -> None:
    spec = big_spec(tmp_path, rows=5)
    with (tmp_path / "rows.jsonl").open("a") as out:
        out.write('{"id": "bad"}\nnot json\n')
    with pytest.raises(SpecError, match="2 bad rows"):
        estimate(
            load_spec(spec),
            prices=PriceTable.load(),
            api_version="2026-10-21",
            count_tokens=lambda _params: pytest.fail("counted before the spec was valid"),
        )


def test_the_cli_estimates_and_run_dry_run_sends_nothing(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    spec = big_spec(tmp_path, rows=120, extra="budget_usd = 0.000001")
    db = tmp_path / "store.db"
    env = sim_env(sim, db, COLUMNS="200")  # one table row per line

    shown = cli(env, "estimate", str(spec), "--sample", "50")
    dry = cli(env, "run", str(spec), "--dry-run")
    over = cli(env, "run", str(spec))

    assert shown.returncode == 0, shown.stderr
    assert "estimate for big (nothing sent)" in shown.stdout
    assert "extrapolated from 50 requests" in shown.stdout
    assert "OVER" in shown.stdout
    assert dry.returncode == 0, dry.stderr
    assert "counted with the count-tokens endpoint (120 requests: exact)" in dry.stdout
    assert over.returncode != 0
    assert "budget_usd is 0.00 but the estimate is up to" in over.stderr
    assert ledger(sim)["batches"] == []
    # `run` reads the rows once, recording them and counting the estimate together; the
    # job over budget is rolled back (the new store it created stays, with no job in it).
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (0,)
    assert SECRET_KEY not in shown.stdout + dry.stdout + over.stdout + over.stderr


@pytest.mark.parametrize("budget", ["", "budget_usd = 50"])
def test_run_shows_a_new_jobs_estimate_before_sending_and_not_when_resuming(
    sim: SimulatorServer, tmp_path: Path, budget: str
) -> None:
    """With or without a budget (checked inside the job's transaction, or shown once
    the job is committed), the counted estimate comes before the job is recorded and
    sent; the run matches the estimate's items; a second run resumes without one."""
    spec = big_spec(tmp_path, rows=60, extra=budget)
    env = sim_env(sim, tmp_path / "store.db", COLUMNS="200")

    first = cli(env, "run", str(spec), "--sample", "20")
    again = cli(env, "run", str(spec))

    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "extrapolated from 20 requests" in out
    assert out.index("estimate for big (nothing sent)") < out.index("job big (id 1) recorded")
    assert "job big (id 1) recorded: 60 items" in out
    assert len(ledger(sim)["batches"]) == 1
    assert again.returncode == 0, again.stderr
    assert "estimate for" not in again.stdout
    assert "job big (id 1) resuming: 60 items" in again.stdout


def test_an_unreachable_endpoint_falls_back_to_bytes_and_says_why(tmp_path: Path) -> None:
    def refused(_params: Mapping[str, Any]) -> int:
        raise APIConnectionError("POST /v1/messages/count_tokens failed (connection refused)")

    found = estimate(
        load_spec(big_spec(tmp_path, rows=20)),
        prices=PriceTable.load(),
        api_version="2026-10-21",
        count_tokens=refused,
    )

    assert (found.method, found.counted, found.items) == ("bytes", 0, 20)
    assert found.approximated_because is not None
    assert "count-tokens endpoint failed" in found.approximated_because
    assert "connection refused" in found.approximated_because
