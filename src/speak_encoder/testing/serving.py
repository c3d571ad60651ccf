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
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Literal, Self

import uvicorn

from speak_encoder.testing.background import BackgroundServer

#: Seconds a ``timeout`` fault holds the request before answering.
DEFAULT_HANG_S: Final = 60.0
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


class _Uvicorn(uvicorn.Server):
    """uvicorn that says when it accepts connections (``on_started``)."""

    on_started: Callable[[], None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started()


class ReferenceServer(BackgroundServer):
    """A Starlette app (``self.app``, set by the subclass) served on ``host:port``."""

    thread_name = "reference-server"

    def __init__(self, *, host: str, port: int, hang_seconds: float = DEFAULT_HANG_S) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.hang_seconds = hang_seconds
        self.app: Any = None
        self.faults = FaultQueue()
        self._server: _Uvicorn | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail_next(self, route: str, fault: Fault, times: int = 1) -> None:
        """The next ``times`` requests of ``route`` (``"*"`` = any route) get ``fault``."""
        self.faults.add(route, fault, times)

    # --- lifecycle (start / stop / with: testing.background) ---------------------------------

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(LISTEN_BACKLOG)
        sock.set_inheritable(False)
        self.port = sock.getsockname()[1]
        return sock

    def _make_server(self) -> _Uvicorn:
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=1,
            lifespan="off",
        )  # fmt: skip
        return _Uvicorn(config)

    def bind(self) -> Self:
        """Bind the socket now (the port is known); :meth:`start` serves on it."""
        if self._socket is None:
            self._socket = self._bind()
        return self

    def start(self) -> Self:
        """Serve on a background thread; returns once the server accepts connections."""
        self.bind()
        self._server = self._make_server()
        return super().start()

    def _serve_in_thread(self, ready: Callable[[], None]) -> None:
        server, sock = self._server, self._socket
        assert server is not None and sock is not None

        server.on_started = ready
        asyncio.run(server.serve(sockets=[sock]))

    def _request_stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C."""
        self.bind()
        self._server = self._make_server()
        sock = self._socket
        assert sock is not None
        asyncio.run(self._server.serve(sockets=[sock]))

    def stop(self) -> None:
        super().stop()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
        self._socket = None


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
