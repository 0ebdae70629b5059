"""A local Message Batches API that the official ``anthropic`` SDK cannot tell apart.

Use it in-process (``create_app`` + ``httpx.ASGITransport``), in a background thread
(``with SimulatorServer(config) as sim: ... sim.base_url``) or in the foreground
(``serve`` / ``orchestrator simulate``). Behaviour follows
``/work/shared/api/message-batches.md``; section numbers in comments refer to it.
"""

from __future__ import annotations

from .app import create_app
from .clock import Clock, ManualClock, RealClock
from .config import SimulatorConfig
from .ledger import Ledger, LedgerBatch, ServedLine
from .server import SimulatorServer, serve
from .state import SimulatorState

__all__ = [
    "Clock",
    "Ledger",
    "LedgerBatch",
    "ManualClock",
    "RealClock",
    "ServedLine",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorState",
    "create_app",
    "serve",
]
