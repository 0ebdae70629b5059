"""Where the Alembic migrations and the example jobs are, installed or in a checkout.

Both folders live at the top of the repository (``migrations/``, ``jobs/``) and are
shipped inside the package as ``orchestrator.migrations`` and ``orchestrator.jobs``
(the ``package-dir`` mapping in pyproject.toml). They are found through the package,
so a wheel install works from any directory; a source tree that is not installed
(or an editable install whose import hook does not map these data-only packages)
falls back to the folders beside the ``orchestrator`` package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The repository root when running from a source checkout.
_CHECKOUT = Path(__file__).resolve().parent.parent


def _locate(package: str, folder: str, marker: str) -> Path:
    """The directory holding ``marker`` in ``package``, else the checkout's ``folder``.

    Alembic needs a real directory, so only a file-system location counts (not a
    zip import). ``joinpath`` on a namespace package (these folders have no
    ``__init__.py``) yields a plain ``Path`` inside the portion that has ``marker``.
    """
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        return _CHECKOUT / folder
    candidate = root.joinpath(marker)
    if isinstance(candidate, Path) and candidate.is_file():
        return candidate.parent
    return _CHECKOUT / folder


def migrations_dir() -> Path:
    """The Alembic script directory (env.py, script.py.mako, versions/)."""
    return _locate("orchestrator.migrations", "migrations", "env.py")


def jobs_dir() -> Path:
    """The example job specs and their datasets (jobs/README.md)."""
    return _locate("orchestrator.jobs", "jobs", "README.md")
