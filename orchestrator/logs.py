"""Logging for the commands: one rich console, so log lines never garble progress bars.

Each command picks its default level (``run`` shows warnings, the daemon narrates
at INFO); ``ORCHESTRATOR_LOG_LEVEL`` overrides it. Libraries that narrate every
call (httpx, alembic, APScheduler, uvicorn) stay at WARNING unless DEBUG is asked.
"""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

#: Loggers of libraries that log on every request, migration or timer tick, and the
#: level they keep unless DEBUG is asked (APScheduler warns of every coalesced tick).
CHATTY_LIBRARIES = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "alembic": logging.WARNING,
    "apscheduler": logging.ERROR,
    "uvicorn": logging.WARNING,
    "sqlalchemy": logging.WARNING,
}


def configure_logging(console: Console, level: str | None, default: str) -> None:
    """Route every log record through ``console`` at ``level`` (or ``default``)."""
    chosen = getattr(logging, (level or default).upper())
    handler = RichHandler(
        console=console,
        show_path=False,
        rich_tracebacks=False,
        markup=False,
        log_time_format="%H:%M:%S",
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(chosen)
    for name, quiet in CHATTY_LIBRARIES.items():
        logging.getLogger(name).setLevel(logging.DEBUG if chosen <= logging.DEBUG else quiet)
