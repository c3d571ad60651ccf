"""What the reference servers share: serving a Starlette app on a background thread, and faults.

:class:`ReferenceServer` is the base of the reference 3Speak gateway
(:mod:`speak_encoder.testing.gateway`) and of the reference embed server
(:mod:`speak_encoder.testing.embed_server`). It binds ``host:port`` (``127.0.0.1`` and a free
port by default) before it serves, so :attr:`~ReferenceServer.url` is known at once, and serves
the subclass's ``app`` with uvicorn on a background thread with its own event loop
(:meth:`~ReferenceServer.start` / :meth:`~ReferenceServer.stop`, or ``with server: …``), or in
the calling thread (:meth:`~ReferenceServer.serve_forever`, for ``speak-encoder dev-gateway``).

:class:`FaultQueue` holds the faults queued per route by ``fail_next(route, fault, times)``
(``"*"`` = any route); each server decides what a fault answers (its own error bodies).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import deque
from types import TracebackType
from typing import Any, Final, Literal, Self

import uvicorn

#: Seconds a ``timeout`` fault holds the request before answering.
DEFAULT_HANG_S: Final = 60.0
#: Seconds :meth:`ReferenceServer.start` waits for the server to accept connections.
START_TIMEOUT_S: Final = 10.0
#: Seconds :meth:`ReferenceServer.stop` waits for the serving thread.
STOP_TIMEOUT_S: Final = 10.0
#: Connections waiting to be accepted.
LISTEN_BACKLOG: Final = 128

Fault = Literal["500", "timeout", "malformed", "html", "404", "401"]
FAULTS: Final = ("500", "timeout", "malformed", "html", "404", "401")
#: The HTML page of the ``html`` fault (what a proxy in front of a server answers).
HTML_PAGE: Final = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>502 Bad Gateway</h1><hr><center>nginx</center></body></html>"
)


class FaultQueue:
    """Faults queued per route; thread-safe. ``"*"`` matches any route (after the route's own)."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[str]] = {}
        self._lock = threading.Lock()

    def add(self, route: str, fault: Fault, times: int = 1) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
        with self._lock:
            self._queues.setdefault(route, deque()).extend([fault] * times)

    def take(self, route: str) -> str | None:
        """The next fault for ``route`` (consumed), or ``None``."""
        with self._lock:
            for key in (route, "*"):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
        return None


class ReferenceServer:
    """A Starlette app (``self.app``, set by the subclass) served on ``host:port``."""

    thread_name = "reference-server"

    def __init__(self, *, host: str, port: int, hang_seconds: float = DEFAULT_HANG_S) -> None:
        self.host = host
        self.port = port
        self.hang_seconds = hang_seconds
        self.app: Any = None
        self.faults = FaultQueue()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail_next(self, route: str, fault: Fault, times: int = 1) -> None:
        """The next ``times`` requests of ``route`` (``"*"`` = any route) get ``fault``."""
        self.faults.add(route, fault, times)

    # --- lifecycle ---------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(LISTEN_BACKLOG)
        sock.set_inheritable(False)
        self.port = sock.getsockname()[1]
        return sock

    def _make_server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=1,
            lifespan="off",
        )  # fmt: skip
        return uvicorn.Server(config)

    def bind(self) -> Self:
        """Bind the socket now (the port is known); :meth:`start` serves on it."""
        if self._socket is None:
            self._socket = self._bind()
        return self

    def start(self) -> Self:
        """Serve on a background thread; returns once the server accepts connections."""
        self.bind()
        self._server = self._make_server()
        server, sock = self._server, self._socket
        assert sock is not None

        def serve() -> None:
            asyncio.run(server.serve(sockets=[sock]))

        self._thread = threading.Thread(target=serve, name=self.thread_name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started and time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError(f"the {self.thread_name} failed to start")
            time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C."""
        self.bind()
        self._server = self._make_server()
        sock = self._socket
        assert sock is not None
        asyncio.run(self._server.serve(sockets=[sock]))

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
        self._thread = None
        self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class AsgiServer(ReferenceServer):
    """Any ASGI app on a background thread (e.g. a node's Direct API app in a test)."""

    thread_name = "asgi-server"

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.app = app


__all__ = [
    "DEFAULT_HANG_S",
    "FAULTS",
    "HTML_PAGE",
    "AsgiServer",
    "Fault",
    "FaultQueue",
    "ReferenceServer",
]
