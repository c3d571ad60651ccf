"""Serving an ASGI app inside the node's own event loop (the Direct API, the operator server).

uvicorn runs without its signal handlers (the service's lifespan owns SIGTERM/SIGINT), without
an access log (request headers and query strings never reach a log), and on a socket bound
before the service starts, so a taken port fails the start with a message naming the settings
instead of uvicorn's ``sys.exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from speak_encoder.errors import ConfigError

log = logging.getLogger(__name__)

#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_S = 5
#: Seconds in-flight requests get when the server stops.
GRACEFUL_SHUTDOWN_S = 5


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int, *, settings_names: str) -> socket.socket:
    """A TCP socket bound to ``host:port``; failure is a ConfigError naming the settings."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"{settings_names}: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.setblocking(False)
    return sock


async def serve_app(app: Any, sock: socket.socket, *, stop: asyncio.Event, name: str) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set (or this task is cancelled)."""
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        proxy_headers=False,
        http="h11",
        ws="none",
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]), name=name)
    stopping = asyncio.create_task(stop.wait(), name=f"{name}-stop")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        try:
            await serving
        finally:
            sock.close()
            log.info("%s stopped", name)
