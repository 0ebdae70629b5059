"""The public surface is ``orchestrator.__all__`` (docs/python-api.md): pinned here, so a
name is added or removed on purpose, and each name really is importable."""

from __future__ import annotations

import subprocess
import sys

import pytest

import orchestrator

PUBLIC = [
    "BatchChanged",
    "Ended",
    "Event",
    "ItemFinished",
    "Job",
    "JobConflictError",
    "JobEventHandler",
    "JobReport",
    "Orchestrator",
    "OrchestratorError",
    "Progress",
    "Result",
    "SpecError",
    "__version__",
]


def test_the_public_names_are_pinned() -> None:
    assert sorted(orchestrator.__all__) == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_imports(name: str) -> None:
    assert getattr(orchestrator, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = orchestrator.Nope


def test_importing_the_package_loads_no_store_or_api_code() -> None:
    """``import orchestrator`` stays cheap (the CLI imports it on every command)."""
    code = "import orchestrator, sys; print(sorted(m for m in sys.modules if 'sqlalchemy' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_docs_name_every_public_name() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "python-api.md").read_text()
    missing = [n for n in PUBLIC if n != "__version__" and f"`{n}" not in doc]
    assert missing == []
