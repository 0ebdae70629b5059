"""Every SQL query the README shows runs on SQLite and PostgreSQL after a real job."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from orchestrator.steps import StepContext
from tests.integration.conftest import new_job, run_job, write_job

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE = README.parent / "jobs" / "review-labels"


def readme_queries() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    statements = [s.strip() for block in blocks for s in block.split(";")]
    return [s for s in statements if any(not ln.startswith("--") for ln in s.splitlines())]


def test_the_readme_has_queries() -> None:
    assert len(readme_queries()) >= 4


def labels_job(root: Path) -> Path:
    """The README's labeling job (jobs/review-labels) over its first 20 reviews."""
    work = root / "labels"
    work.mkdir()
    shutil.copy(EXAMPLE / "spec.toml", work)
    shutil.copy(EXAMPLE / "label.schema.json", work)
    lines = (EXAMPLE / "reviews.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (work / "reviews.csv").write_text("".join(lines[:21]), encoding="utf-8")
    return work / "spec.toml"


@pytest.mark.parametrize("sql", readme_queries(), ids=lambda q: q.splitlines()[-1][:40])
def test_a_readme_query_runs(ctx: StepContext, tmp_path: Path, sql: str) -> None:
    rows = [{"id": f"r{i:05d}", "t": f"review {i}"} for i in range(20)]
    run_job(ctx, new_job(ctx, write_job(tmp_path, "review-sentiment", 0, rows=rows)))
    run_job(ctx, new_job(ctx, labels_job(tmp_path)))
    with ctx.store.engine.connect() as conn:
        result = conn.execute(text(sql)).all()
    if "r00012" in sql or "ORDER BY ordinal" in sql or "AS label" in sql:
        assert result, "the query should find the job's rows"
    if "job_review_labels" in sql and "invalid_output" not in sql:
        assert result, "the query should find the labeling job's answers"
