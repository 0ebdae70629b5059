"""A SQL-backed orchestrator for Anthropic's Message Batches API.

The Python API (docs/python-api.md)::

    from orchestrator import Orchestrator, JobEventHandler

    orch = Orchestrator()
    job = orch.submit(name="reviews", rows=rows, request={...}, output=Label, key="id")
    job.until_done(handler=JobEventHandler())
    df = job.to_pandas()

Names are loaded on first use, so ``import orchestrator`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from orchestrator.errors import (
        JobConflictError,
        OrchestratorError,
        SpecError,
    )
    from orchestrator.events import (
        BatchChanged,
        Ended,
        Event,
        ItemFinished,
        JobEventHandler,
        Progress,
    )
    from orchestrator.python_api import Job, Orchestrator, Result
    from orchestrator.store.records import JobReport

_HOMES = {
    "Orchestrator": "orchestrator.python_api",
    "Job": "orchestrator.python_api",
    "Result": "orchestrator.python_api",
    "JobEventHandler": "orchestrator.events",
    "Event": "orchestrator.events",
    "ItemFinished": "orchestrator.events",
    "BatchChanged": "orchestrator.events",
    "Progress": "orchestrator.events",
    "Ended": "orchestrator.events",
    "JobReport": "orchestrator.store.records",
    "OrchestratorError": "orchestrator.errors",
    "JobConflictError": "orchestrator.errors",
    "SpecError": "orchestrator.errors",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)


__all__ = [
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
