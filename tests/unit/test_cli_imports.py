"""What starting the CLI imports: every command pays for it, ``status`` as much as
``run``. The simulator's web server (starlette, uvicorn) is imported only by
``simulate`` and by code that asks for it; jsonschema (0.05-0.08 s) only by a job
with ``[output]``."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_MODULES = ("starlette", "uvicorn", "orchestrator.simulator.app")
SCHEMA_MODULES = ("jsonschema",)


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
