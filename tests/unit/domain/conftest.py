"""Helpers for writing a job spec and its data into a temporary directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

TEMPLATE_SPEC = """\
name = "t"
input = "rows.jsonl"
key = "id"
[request]
model = "claude-haiku-4-5"
max_tokens = 16
prompt = "Review: {text}"
"""
ROWS = '{"id": "a", "text": "great"}\n{"id": "b", "text": "bad"}\n'

WriteSpec = Callable[..., Path]


@pytest.fixture
def write_spec(tmp_path: Path) -> WriteSpec:
    """Write ``spec.toml`` plus data files (default: rows.jsonl) and return the spec path."""

    def write(spec: str = TEMPLATE_SPEC, files: dict[str, str] | None = None) -> Path:
        for name, text in (files if files is not None else {"rows.jsonl": ROWS}).items():
            (tmp_path / name).write_text(text, encoding="utf-8")
        path = tmp_path / "spec.toml"
        path.write_text(spec, encoding="utf-8")
        return path

    return write
