"""A job end to end over real HTTP, on SQLite and PostgreSQL: outcome mix, retries,
the response cache (design §1, §5.1-§5.3; anchors B4 scenario 11).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from orchestrator.domain.states import ItemStatus
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import StepContext
from orchestrator.steps.jobs import resolve_job
from orchestrator.store.tables import Item, Result
from tests.integration.conftest import (
    assert_job_complete,
    assert_no_double_spend,
    ledger,
    new_job,
    run_job,
    write_job,
)

ITEMS = 300
MAX_ATTEMPTS = 3
RETRIED_TYPES = ("api_error", "overloaded_error")


def test_mixed_outcomes_retry_only_what_may_succeed(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    sim.state.configure(
        errored_share={"invalid_request_error": 0.03, "api_error": 0.03, "overloaded_error": 0.02},
        expired_share=0.03,
    )
    spec = write_job(tmp_path, "mixed", ITEMS, max_requests=100, max_attempts=MAX_ATTEMPTS)
    job_id = new_job(ctx, spec)

    report = run_job(ctx, job_id)

    rows = assert_job_complete(ctx, job_id)
    assert_no_double_spend(ctx, sim, job_id)
    assert report.items[ItemStatus.SUCCEEDED] > ITEMS * 0.9
    assert report.retried_items > 0
    by_key = {r["key"]: r for r in rows}
    with ctx.store.engine.connect() as conn:
        results = conn.execute(
            select(Result.attempt, Result.result_type, Result.error_type, Item.key)
            .join(Item, Item.id == Result.item_id)
            .where(Item.job_id == job_id)
        ).all()
    invalid = [r for r in results if r.error_type == "invalid_request_error"]
    assert invalid, "the outcome mix should have produced invalid requests"
    for r in invalid:  # poison: failed at once, never sent again
        assert by_key[r.key]["status"] == "failed"
        assert by_key[r.key]["attempts"] == r.attempt
        assert by_key[r.key]["error_type"] == "invalid_request_error"
    assert any(r.attempt == 1 for r in invalid)
    retryable = [r for r in results if r.result_type == "expired" or r.error_type in RETRIED_TYPES]
    assert retryable, "the outcome mix should have produced server errors and expiries"
    for r in retryable:
        item = by_key[r.key]
        if r.attempt < MAX_ATTEMPTS:
            assert item["attempts"] > r.attempt, f"{r.key}: a retryable result was not retried"
        else:
            assert item["status"] == "failed"
            assert item["attempts"] == MAX_ATTEMPTS
    assert any(by_key[r.key]["attempts"] > 1 for r in retryable)
    assert max(r["attempts"] for r in rows) <= MAX_ATTEMPTS
    succeeded = [r for r in rows if r["status"] == "succeeded"]
    assert all(r["result_type"] == "succeeded" and r["text"] for r in succeeded)


def test_response_cache_answers_a_second_job_without_sending(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    first = new_job(ctx, write_job(tmp_path, "first", 30, max_requests=10))
    run_job(ctx, first)
    batches_before = len(ledger(sim)["batches"])

    second = new_job(ctx, write_job(tmp_path, "second", 30, max_requests=10))
    report = run_job(ctx, second)

    rows = assert_job_complete(ctx, second)
    assert report.items == {"succeeded": 30}
    assert resolve_job(ctx.store, "second").cache_hits == 30
    assert all(r["cached"] and r["cost_usd"] == 0 and r["text"] for r in rows)
    assert len(ledger(sim)["batches"]) == batches_before  # nothing sent, nothing paid

    third = new_job(ctx, write_job(tmp_path, "third", 30, max_requests=30, options="cache = false"))
    run_job(ctx, third)
    rows = assert_job_complete(ctx, third)
    assert not any(r["cached"] for r in rows)
    assert len(ledger(sim)["batches"]) == batches_before + 1
    assert_no_double_spend(ctx, sim, third)


def test_identical_requests_in_a_job_are_sent_once_and_share_the_answer(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    # 60 rows, 6 distinct texts: 6 requests go out, 60 items get an answer.
    rows = [{"id": f"k{i}", "t": f"text {i % 6}"} for i in range(60)]
    job_id = new_job(ctx, write_job(tmp_path, "repeats", 60, max_requests=4, rows=rows))

    report = run_job(ctx, job_id)

    final = assert_job_complete(ctx, job_id)
    assert report.items == {"succeeded": 60}
    assert sum(ledger(sim)["submissions"].values()) == 6
    assert_no_double_spend(ctx, sim, job_id)
    by_text: dict[str, set[str]] = {}
    for row, source in zip(sorted(final, key=lambda r: int(r["key"][1:])), rows, strict=True):
        by_text.setdefault(source["t"], set()).add(row["text"])
    assert all(len(answers) == 1 for answers in by_text.values())  # one answer per request
    assert sum(1 for r in final if r["cached"]) == 54
    assert resolve_job(ctx.store, "repeats").cache_hits == 54

    again = new_job(
        ctx,
        write_job(
            tmp_path,
            "each",
            60,
            max_requests=60,
            rows=rows,
            options="cache = false\ndedupe = false",
        ),
    )
    run_job(ctx, again)
    assert sum(ledger(sim)["submissions"].values()) == 6 + 60  # dedupe = false: each sent
