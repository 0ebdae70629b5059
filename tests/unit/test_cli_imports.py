"""What starting the CLI imports: every command pays for it, ``status`` as much as
``run``. The simulator's web server (starlette, uvicorn) is imported only by
``simulate`` and by code that asks for it."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_MODULES = ("starlette", "uvicorn", "orchestrator.simulator.app")


def _imported_after(statement: str) -> set[str]:
    """The modules of ``SERVER_MODULES`` a fresh interpreter holds after ``statement``."""
    report = f"print(json.dumps([m for m in {list(SERVER_MODULES)!r} if m in sys.modules]))"
    out = subprocess.run(
        [sys.executable, "-c", f"import json, sys; {statement}; {report}"],
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
