"""What starting the CLI imports: every command pays for it, ``status`` as much as
``run``. The simulator's web server (starlette, uvicorn) is imported only by
``simulate`` and by code that asks for it; jsonschema (0.05-0.08 s) only by a job
with ``[output]``; Alembic only by a command that migrates a store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.store.engine import downgrade, make_engine

SERVER_MODULES = ("starlette", "uvicorn", "orchestrator.simulator.app")
SCHEMA_MODULES = ("jsonschema",)
MIGRATION_MODULES = ("alembic",)


def _imported_after(statement: str, modules: tuple[str, ...] = SERVER_MODULES) -> set[str]:
    """The modules of ``modules`` a fresh interpreter holds after ``statement``."""
    report = f"print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))"
    out = subprocess.run(
        [sys.executable, "-c", f"import json, sys\n{statement}\n{report}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(json.loads(out))


def test_starting_the_cli_leaves_the_simulators_server_unimported() -> None:
    assert _imported_after("import orchestrator.cli") == set()


def test_the_simulators_names_are_still_there_when_asked_for() -> None:
    statement = "from orchestrator.simulator import SimulatorServer, create_app"
    assert _imported_after(statement) == set(SERVER_MODULES)


def test_starting_the_cli_leaves_jsonschema_unimported() -> None:
    assert _imported_after("import orchestrator.cli", SCHEMA_MODULES) == set()


def test_a_job_with_an_output_schema_still_checks_it() -> None:
    statement = (
        "from orchestrator.domain.output import Output, OutputMode, OutputSchemaError\n"
        "Output.checked({'type': 'object', 'properties': {'label': {'type': 'string'}}}, "
        "OutputMode.TOOL)\n"
        "try:\n"
        "    bad = {'type': 'object', 'properties': {'a': {'type': 7}}}\n"
        "    Output.checked(bad, OutputMode.TOOL)\n"
        "except OutputSchemaError as exc:\n"
        "    assert 'is not a valid JSON Schema' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('a bad schema passed')"
    )
    assert _imported_after(statement, SCHEMA_MODULES) == set(SCHEMA_MODULES)


def test_making_or_opening_a_store_at_the_head_leaves_alembic_unimported(
    tmp_path: Path,
) -> None:
    """A new SQLite store is made from its schema file and checking a store's revision
    reads Alembic's table without Alembic (0.1 s of every command's start); a store
    behind the head is still refused, and migrating one imports Alembic."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    made = f"from orchestrator.store.bootstrap import create_if_new\ncreate_if_new({url!r})"
    assert _imported_after(made, MIGRATION_MODULES) == set()
    opened = (
        f"from orchestrator.store.queries import Store\nstore = Store.open({url!r})\nstore.close()"
    )
    assert _imported_after(opened, MIGRATION_MODULES) == set()
    engine = make_engine(url)
    downgrade(engine, "0008")
    engine.dispose()
    refused = (
        "from orchestrator.errors import StoreNotAtHeadError\n"
        "from orchestrator.store.queries import Store\n"
        "try:\n"
        f"    Store.open({url!r})\n"
        "except StoreNotAtHeadError as exc:\n"
        "    assert 'run `orchestrator db upgrade`' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('a store behind the head was opened')"
    )
    assert _imported_after(refused, MIGRATION_MODULES) == set()
    migrated = (
        f"from orchestrator.store.engine import make_engine, upgrade\nupgrade(make_engine({url!r}))"
    )
    assert _imported_after(migrated, MIGRATION_MODULES) == set(MIGRATION_MODULES)
