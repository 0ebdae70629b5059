"""Every SQL query the README shows runs on SQLite and PostgreSQL after a real job."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text

from orchestrator.steps import StepContext
from tests.integration.conftest import new_job, run_job, write_job

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_queries() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    statements = [s.strip() for block in blocks for s in block.split(";")]
    return [s for s in statements if any(not ln.startswith("--") for ln in s.splitlines())]


def test_the_readme_has_queries() -> None:
    assert len(readme_queries()) >= 4


@pytest.mark.parametrize("sql", readme_queries(), ids=lambda q: q.splitlines()[-1][:40])
def test_a_readme_query_runs(ctx: StepContext, tmp_path: Path, sql: str) -> None:
    rows = [{"id": f"r{i:05d}", "t": f"review {i}"} for i in range(20)]
    run_job(ctx, new_job(ctx, write_job(tmp_path, "review-sentiment", 0, rows=rows)))
    with ctx.store.engine.connect() as conn:
        result = conn.execute(text(sql)).all()
    if "r00012" in sql or "ORDER BY ordinal" in sql or "AS label" in sql:
        assert result, "the query should find the job's rows"
