"""The package's shape rules, checked on its source: each rule has one home.

* every state name lives in ``domain/states.py``: elsewhere the members and the
  named sets are used, never a string literal (a renamed state would otherwise
  silently stop matching);
* the schema (``store/tables.py``) is private to ``store/`` and ``migrations/``;
* modules stay small enough to read (600 lines; the simulator is its own world).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.domain import states

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"
STATES_MODULE = PACKAGE / "domain" / "states.py"
MAX_MODULE_LINES = 600
STATE_ENUMS = (
    states.JobStatus,
    states.ItemStatus,
    states.BatchStatus,
    states.ResultType,
    states.ProcessingStatus,
)
STATE_NAMES = frozenset(member.value for enum in STATE_ENUMS for member in enum)


def _product_modules() -> Iterator[Path]:
    """Every module of the package but the simulator (which imports nothing of it)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if "simulator" not in path.relative_to(PACKAGE).parts:
            yield path


def _string_constants(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_state_is_spelled_outside_the_states_module() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {value!r}"
        for path in _product_modules()
        if path != STATES_MODULE
        for line, value in _string_constants(path)
        if value in STATE_NAMES
    ]
    assert found == [], "use the enums and sets of orchestrator/domain/states.py"


def test_the_check_sees_a_spelled_state(tmp_path: Path) -> None:
    """The scan above is not vacuous: it finds a literal where one is written."""
    module = tmp_path / "m.py"
    module.write_text('def f(s):\n    return s == "in_progress"\n', encoding="utf-8")
    assert [v for _, v in _string_constants(module) if v in STATE_NAMES] == ["in_progress"]


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_the_schema_is_imported_only_by_the_store() -> None:
    store = PACKAGE / "store"
    offenders = [
        str(path.relative_to(ROOT))
        for path in _product_modules()
        if store not in path.parents and "orchestrator.store.tables" in set(_imports(path))
    ]
    assert offenders == []


@pytest.mark.parametrize("path", list(_product_modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_readable(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines: split it by what it is about"
