"""The bad input corpus (tests/corpus/specs): every mistake is refused in the CLI with
exit 2, a message naming what to fix, no traceback, and nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.acceptance.support import clean_env, cli, query

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "specs"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def test_the_corpus_is_there() -> None:
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", CASES)
def test_a_bad_spec_is_refused_clearly(case: str, tmp_path: Path) -> None:
    work = tmp_path / case
    shutil.copytree(CORPUS / case, work)
    db = tmp_path / "store.db"
    env = clean_env(ANTHROPIC_API_KEY="sk-corpus", ORCHESTRATOR_DATABASE_URL=f"sqlite:///{db}")
    result = cli(env, "submit", str(work / "spec.toml"), timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "error: " in result.stderr
    for expected in (work / "expect.txt").read_text().split("\n"):
        if expected:
            assert expected in result.stderr, f"{case}: {expected!r} not in {result.stderr!r}"
    if db.exists():
        assert query(db, "SELECT count(*) FROM jobs") == [(0,)]
        assert query(db, "SELECT count(*) FROM items") == [(0,)]
