"""Recording a job from its spec, on SQLite and PostgreSQL (README, guarantee 4): a rejected
spec leaves nothing half-written; the same spec again resumes its job; another
spec under a name in use is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import BudgetExceededError, JobConflictError, SpecError
from orchestrator.steps import StepContext
from orchestrator.steps.jobs import resolve_job
from tests.integration.conftest import rows_in_store, submit_job, write_job

#: More rows than the store writes per chunk, so the bad row comes after a flushed chunk.
ROWS = 1500


def test_duplicate_key_on_a_late_line_names_it_and_writes_nothing(
    ctx: StepContext, tmp_path: Path
) -> None:
    rows = [{"id": f"k{i}", "t": f"text {i}"} for i in range(ROWS)]
    rows[1300] = {"id": "k5", "t": "again"}
    spec = write_job(tmp_path, "dupes", ROWS, rows=rows)

    with pytest.raises(SpecError) as caught:
        submit_job(ctx, spec)

    assert "duplicate key 'k5'" in str(caught.value)
    assert "line 1301" in str(caught.value)
    assert rows_in_store(ctx) == (0, 0)


def test_row_that_cannot_render_names_its_line_and_writes_nothing(
    ctx: StepContext, tmp_path: Path
) -> None:
    rows = [{"id": f"k{i}", "t": f"text {i}"} for i in range(ROWS)]
    rows[1200] = {"id": "k1200", "other": "no t field"}
    spec = write_job(tmp_path, "unrenderable", ROWS, rows=rows)

    with pytest.raises(SpecError) as caught:
        submit_job(ctx, spec)

    assert ":1201" in str(caught.value)
    assert rows_in_store(ctx) == (0, 0)


def test_over_budget_is_refused_before_any_row_is_kept(ctx: StepContext, tmp_path: Path) -> None:
    spec = write_job(tmp_path, "pricey", 50, options="budget_usd = 0.00001")

    with pytest.raises(BudgetExceededError, match="budget_usd"):
        submit_job(ctx, spec)

    assert rows_in_store(ctx) == (0, 0)


def test_budget_with_an_unpriced_model_is_refused(ctx: StepContext, tmp_path: Path) -> None:
    # allow_unknown_models: an unknown model is refused by validation unless allowed (see
    # test_validation.py); this test is about the budget check for an allowed one.
    options = "budget_usd = 100.0\nallow_unknown_models = true"
    spec = write_job(tmp_path, "unpriced", 5, options=options)
    spec.write_text(spec.read_text().replace("claude-haiku-4-5", "claude-future-9"))

    with pytest.raises(BudgetExceededError, match="no price"):
        submit_job(ctx, spec)

    assert rows_in_store(ctx) == (0, 0)


def test_same_spec_resumes_and_another_spec_under_its_name_is_refused(
    ctx: StepContext, tmp_path: Path
) -> None:
    spec = write_job(tmp_path, "once", 20)
    job_id, created = submit_job(ctx, spec)
    assert created

    assert submit_job(ctx, spec) == (job_id, False)  # idempotent: same job, nothing new
    assert rows_in_store(ctx) == (1, 20)

    data = tmp_path / "rows.jsonl"
    data.write_text(data.read_text() + json.dumps({"id": "k20", "t": "one more"}) + "\n")
    with pytest.raises(JobConflictError, match="once"):
        submit_job(ctx, spec)
    assert rows_in_store(ctx) == (1, 20)


def test_an_all_digit_job_name_resubmits_idempotently(ctx: StepContext, tmp_path: Path) -> None:
    """A job named like another job's id is a name: resubmitting it resumes it (it once
    matched the other job by id and was refused as a conflicting spec)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first_id, _ = submit_job(ctx, write_job(tmp_path / "a", "first", 3))
    digits = write_job(tmp_path / "b", str(first_id), 4)
    digits_id, created = submit_job(ctx, digits)
    assert created
    assert digits_id != first_id
    assert submit_job(ctx, digits) == (digits_id, False)
    assert submit_job(ctx, digits) == (digits_id, False)
    assert resolve_job(ctx.store, str(first_id)).id == digits_id  # the name wins
    assert resolve_job(ctx.store, "first").id == first_id
    assert resolve_job(ctx.store, str(digits_id)).id == digits_id  # no such name: an id
    assert rows_in_store(ctx) == (2, 7)
