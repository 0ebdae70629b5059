"""Serving the simulator with uvicorn: in a background thread, or blocking.

Both bind the listening socket first, so the real port is known before the server
starts (``port=0`` picks a free one) and ``base_url`` is exact.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import uvicorn

from .app import create_app
from .clock import Clock
from .config import SimulatorConfig
from .state import SimulatorState

#: How long SimulatorServer waits for uvicorn to start / stop, in seconds.
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
#: What uvicorn logs when a response is dropped on purpose (lost create, cut results).
_INTENTIONAL_DROP = "ASGI callable returned without completing response"


class _HideIntentionalDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_INTENTIONAL_DROP)


def _quiet_uvicorn() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideIntentionalDrops) for f in logger.filters):
        logger.addFilter(_HideIntentionalDrops())


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # No Nagle delay: a small response on a kept-alive connection otherwise waits for the
    # client's delayed ACK, about 40 ms per call (accepted sockets inherit this on Linux).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_server(app: object, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level=log_level,
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
        loop="asyncio",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


class SimulatorServer:
    """``with SimulatorServer(config) as sim:`` runs the simulator on ``sim.base_url``."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        log_level: str = "warning",
    ) -> None:
        self.app = create_app(config or SimulatorConfig(), clock)
        self.state: SimulatorState = self.app.state.simulator
        self._host, self._port, self._log_level = host, port, log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.base_url = ""

    @property
    def clock(self) -> Clock:
        return self.state.clock

    def start(self) -> None:
        """Bind, start uvicorn in a daemon thread and wait until it accepts connections."""
        _quiet_uvicorn()
        self._socket = _bind(self._host, self._port)
        self.base_url = _url(self._socket)
        self._server = _uvicorn_server(self.app, self._log_level)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            daemon=True,
            name="simulator",
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the simulator did not start on {self.base_url}")
            time.sleep(0.005)

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for the thread and close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8765,
    clock: Clock | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the simulator in the foreground until interrupted (Ctrl-C)."""
    _quiet_uvicorn()
    sock = _bind(host, port)
    try:
        if on_ready is not None:
            on_ready(_url(sock))
        _uvicorn_server(create_app(config, clock), "info").run(sockets=[sock])
    finally:
        sock.close()
