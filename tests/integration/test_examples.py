"""The runnable examples run as documented (examples/, docs/python-api.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.timeout(120)
def test_the_notebook_flow_runs_and_prints_typed_answers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "notebook_flow.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "job notebook-reviews: done" in done.stdout
    assert "r000 desk lamp sentiment=" in done.stdout
    assert (tmp_path / "examples.db").is_file()
