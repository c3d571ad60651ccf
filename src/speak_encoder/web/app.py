"""The operator server: ``/health``, ``/ready`` and ``/metrics`` (the dashboard joins later).

Served by ``speak-encoder run`` on ``DASHBOARD_HOST:DASHBOARD_PORT`` (``127.0.0.1:3001`` by
default) inside the node's event loop, like the Direct API (:func:`serve_web`).

* ``GET /health`` — liveness: 200 ``{"status":"ok", …}`` while the process serves requests.
* ``GET /ready`` — readiness: 200 when the node takes jobs, else 503 with the failed checks:
  ``store`` (the job store answers within :data:`READY_STORE_TIMEOUT_S`), ``scheduler``
  (accepting jobs, or busy with every slot taken — not paused for memory or disk), ``running``
  (started and not stopping).
* ``GET /metrics`` — Prometheus text format 0.0.4 (:mod:`speak_encoder.web.metrics`).

The dashboard adds its own routes through ``routes`` of :func:`create_web_app` (they share the
app's ``state.node``). No OpenAPI/docs pages; every answer is ``Cache-Control: no-store`` and
``X-Content-Type-Options: nosniff``.

Hostile clients (:mod:`speak_encoder.asgi_server`): a request for a Host other than
``DASHBOARD_HOST``, loopback, ``localhost`` or ``ALLOWED_HOSTS`` gets 400 (DNS rebinding);
headers and bodies have read deadlines and the server holds at most ``HTTP_MAX_CONNECTIONS``
connections, so ``/health`` keeps answering while idle sockets pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from speak_encoder import __version__, asgi_server
from speak_encoder.node.metrics import REGISTRY, Registry
from speak_encoder.proc import run_capture
from speak_encoder.web.metrics import (
    CONTENT_TYPE,
    NodeLike,
    StoreFigures,
    exposition,
    read_store_figures,
)

log = logging.getLogger(__name__)

#: Where the operator server listens by default (config: DASHBOARD_HOST / DASHBOARD_PORT).
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 3001
#: Seconds the job store may take to answer a readiness probe or a scrape.
READY_STORE_TIMEOUT_S: Final = 2.0
#: Seconds ``ffmpeg -version`` may take (asked once, for build_info).
FFMPEG_VERSION_TIMEOUT_S: Final = 10.0

_SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


async def ffmpeg_version(ffmpeg: str) -> str:
    """``ffmpeg -version``'s number, or ``unknown`` (never raises, never hangs)."""
    try:
        done = await run_capture(
            [ffmpeg, "-hide_banner", "-version"], timeout=FFMPEG_VERSION_TIMEOUT_S
        )
    except Exception:
        return "unknown"
    match = re.search(rb"ffmpeg version (\S+)", done.stdout)
    return match.group(1).decode("utf-8", "replace") if match else "unknown"


def readiness(node: NodeLike, store_ok: bool, stopping: bool) -> dict[str, Any]:
    """The readiness checks as data (``ready`` is the AND of the three)."""
    scheduler = node.scheduler
    busy = scheduler.free_slots == 0 and not scheduler.pause_reasons
    if scheduler.accepting or busy:
        intake = "ok"
    elif scheduler.pause_reasons:
        intake = "intake paused: " + "; ".join(sorted(scheduler.pause_reasons))
    else:
        intake = "not accepting jobs"
    running = "stopping" if stopping else ("ok" if node.ready else "starting")
    checks = {
        "store": "ok" if store_ok else "the job store does not answer",
        "scheduler": intake,
        "running": running,
    }
    return {"ready": all(v == "ok" for v in checks.values()), "checks": checks}


def create_web_app(
    node: NodeLike,
    *,
    registry: Registry = REGISTRY,
    stopping: Callable[[], bool] | None = None,
    routes: Sequence[BaseRoute] = (),
    lifespan: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ffmpeg_version_of: Callable[[str], Awaitable[str]] = ffmpeg_version,
) -> Starlette:
    """The operator app over ``node`` (the running :class:`Service`).

    Plain Starlette, not FastAPI: three routes need no OpenAPI machinery, and an idle node
    stays ~6 MB smaller. ``stopping`` says whether shutdown began (the service's
    ``stop.is_set``); ``routes`` are added as they are (the dashboard); ``lifespan`` (the
    dashboard's) owns the background work of those routes: it is entered when the server
    starts and left when it stops (Starlette's lifespan, which :func:`serve_web` runs around
    the serving).
    """
    versions: dict[str, str] = {}

    def is_stopping() -> bool:
        return stopping() if stopping is not None else False

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "uptime_s": round(max(0.0, time.time() - node.started_at), 1),
            }
        )

    async def ready(request: Request) -> Response:
        try:
            await asyncio.wait_for(asyncio.to_thread(node.store.counts), READY_STORE_TIMEOUT_S)
            store_ok = True
        except Exception:
            store_ok = False
        state = readiness(node, store_ok, is_stopping())
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    async def metrics(request: Request) -> Response:
        ffmpeg = node.settings.ffmpeg_path
        if ffmpeg not in versions:
            versions[ffmpeg] = await ffmpeg_version_of(ffmpeg)
        try:
            figures = await asyncio.wait_for(
                asyncio.to_thread(read_store_figures, node), READY_STORE_TIMEOUT_S
            )
        except TimeoutError:
            figures = StoreFigures(jobs=None, outbox=None, pins=None)
        text = exposition(node, figures, registry=registry, ffmpeg_version=versions[ffmpeg])
        return PlainTextResponse(text, media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def app_lifespan(_app: Starlette) -> AsyncIterator[None]:
        if lifespan is None:
            yield
            return
        async with lifespan():
            yield

    app = Starlette(
        lifespan=app_lifespan,
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            *routes,
        ],
        middleware=[
            Middleware(_SecurityHeaders),
            Middleware(
                asgi_server.HostGuard,
                allowed=asgi_server.allowed_hosts(node.settings, node.settings.dashboard_host),
            ),
        ],
    )
    app.state.node = node
    app.state.http_limits = asgi_server.HttpLimits.from_settings(node.settings)
    app.state.registry = registry
    return app


class _SecurityHeaders:
    """Adds :data:`_SECURITY_HEADERS` to every answer (pure ASGI, no buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def bind_web_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (a :class:`ConfigError` naming the settings)."""
    return asgi_server.bind_socket(host, port, settings_names="DASHBOARD_HOST/DASHBOARD_PORT")


async def serve_web(
    app: Starlette,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    stop: asyncio.Event | None = None,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` (or ``sock``) inside this event loop until ``stop``."""
    stop = stop if stop is not None else asyncio.Event()
    if sock is None:
        sock = bind_web_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    log.info("📊 operator server on http://%s:%s (/health /ready /metrics)", bound_host, bound_port)
    limits = getattr(app.state, "http_limits", None)
    # The app's lifespan (Starlette's) around the serving: its background tasks end with it.
    async with app.router.lifespan_context(app):
        await asgi_server.serve_app(app, sock, stop=stop, name="operator server", limits=limits)


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "READY_STORE_TIMEOUT_S",
    "bind_web_socket",
    "create_web_app",
    "ffmpeg_version",
    "readiness",
    "serve_web",
]
