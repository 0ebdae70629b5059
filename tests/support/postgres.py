"""A throwaway PostgreSQL cluster for the test session.

Started with the server binaries on the machine (initdb + pg_ctl in a temp
directory, as the ``postgres`` user when running as root, since PostgreSQL
refuses to run as root), listening on loopback only, and stopped at the end.
``ORCHESTRATOR_TEST_PG_URL`` points the tests at an existing server instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (or they could not start)."""


def _bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresUnavailable("no initdb found (install the PostgreSQL server package)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as_owner(args: list[str], owner: str | None) -> None:
    cmd = ["runuser", "-u", owner, "--", *args] if owner else args
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise PostgresUnavailable(f"{' '.join(args[:2])} failed: {result.stderr.strip()[-2000:]}")


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Yield a superuser URL to a fresh cluster; stop and delete it afterwards."""
    bindir = _bin_dir()
    owner = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="orch-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if owner:
        shutil.chown(root, owner)
        shutil.chown(sock, owner)
    port = _free_port()
    _run_as_owner(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "orch",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        owner,
    )
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run_as_owner(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ],
        owner,
    )
    try:
        yield f"postgresql+psycopg://orch@127.0.0.1:{port}/postgres"
    finally:
        _run_as_owner(
            [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], owner
        )
        shutil.rmtree(root, ignore_errors=True)


class ManagedCluster:
    """A throwaway cluster that a test controls: its data directory, and a restart on
    the same port (``pg_ctl restart -m fast``, run as the cluster's owner)."""

    def __init__(self, bindir: Path, root: Path, owner: str | None, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.owner = owner
        self.port = port

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "log"

    @property
    def url(self) -> str:
        """Superuser URL of the ``postgres`` database."""
        return f"postgresql+psycopg://orch@127.0.0.1:{self.port}/postgres"

    def _options(self) -> str:
        sock = self.root / "sock"
        return f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args]
        _run_as_owner(command, self.owner)

    def start(self) -> None:
        self._pg_ctl("-o", self._options(), "-l", str(self.log_file), "-w", "start")

    def restart(self) -> None:
        """Stop fast (every session is terminated) and start again on the same port."""
        self._pg_ctl("-o", self._options(), "-l", str(self.log_file), "-m", "fast", "-w", "restart")

    def stop(self, mode: str = "immediate") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")


@contextmanager
def managed_cluster() -> Iterator[ManagedCluster]:
    """Like :func:`throwaway_cluster`, but yields the cluster itself (to restart it)."""
    bindir = _bin_dir()
    owner = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="orch-pg-managed-"))
    (root / "sock").mkdir()
    if owner:
        shutil.chown(root, owner)
        shutil.chown(root / "sock", owner)
    cluster = ManagedCluster(bindir, root, owner, _free_port())
    try:
        _run_as_owner(
            [
                str(bindir / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-U",
                "orch",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            owner,
        )
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
