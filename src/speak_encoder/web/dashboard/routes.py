"""The dashboard as one object: its routes over the node and its part of the server's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from speak_encoder.asgi_server import client_of
from speak_encoder.logs import RingBufferHandler, current_ring
from speak_encoder.web.dashboard.actions import Actions
from speak_encoder.web.dashboard.auth import OperatorAuth
from speak_encoder.web.dashboard.events import (
    EVENT_INTERVAL_S,
    MAX_STREAM_S,
    StreamSlots,
    snapshot_events,
)
from speak_encoder.web.dashboard.ipfs import IpfsProbe
from speak_encoder.web.dashboard.node import DashboardNode, UpdateNotice, update_notice_of
from speak_encoder.web.dashboard.snapshot import identity_did, snapshot
from speak_encoder.web.dashboard.store_files import STORE_TYPES, store_file

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; worker-src 'none'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class Dashboard:
    """The dashboard's routes over ``node`` (see the package docstring).

    ``ring`` is the live log (default: the one :func:`~speak_encoder.logs.setup_logging`
    installed); ``stopping`` (the service's ``stop.is_set``) ends the event streams once the
    node stops, so the server's graceful shutdown need not wait for them; ``update_notice``
    says whether a gateway announced a newer version (default: the node's gateway poller).
    Its background work (the IPFS check) belongs to :meth:`lifespan`, which the operator app
    runs (``create_web_app(…, lifespan=dashboard.lifespan)``).
    """

    def __init__(
        self,
        node: DashboardNode,
        *,
        ring: RingBufferHandler | Callable[[], RingBufferHandler | None] = current_ring,
        update_notice: Callable[[], UpdateNotice] | None = None,
        stopping: Callable[[], bool] | None = None,
        interval: float = EVENT_INTERVAL_S,
        max_stream_s: float = MAX_STREAM_S,
    ) -> None:
        self.node = node
        self.settings = node.settings
        self._ring = ring
        self._update_notice = update_notice
        self.stopping = stopping
        self.interval = interval
        self.max_stream_s = max_stream_s
        self.did = identity_did(self.settings)
        self.auth = OperatorAuth(self.settings)
        self.ipfs = IpfsProbe(self.settings)
        self.streams = StreamSlots()
        self.actions = Actions(node, self.auth)

    # --- the data ----------------------------------------------------------------------------

    def ring(self) -> RingBufferHandler | None:
        ring = self._ring
        return ring if isinstance(ring, RingBufferHandler) else ring()

    def update_notice(self) -> UpdateNotice:
        if self._update_notice is not None:
            return self._update_notice()
        return update_notice_of(self.node)

    def take(self, log_after: int, ipfs: dict[str, Any]) -> dict[str, Any]:
        """One snapshot (blocking: run it in a thread)."""
        return snapshot(
            self.node, did=self.did, update=self.update_notice(), ring=self.ring(),
            log_after=log_after, ipfs=ipfs,
        )  # fmt: skip

    # --- endpoints ---------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return FileResponse(
            STATIC_DIR / "index.html",
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": CSP},
        )

    async def state(self, request: Request) -> Response:
        await self.ipfs.refresh(wait=True)
        after = _int(request.query_params.get("after"))
        data = await asyncio.to_thread(self.take, after, self.ipfs.current())
        return JSONResponse(data)

    async def events(self, request: Request) -> Response:
        client = client_of(request.scope)
        refused = self.streams.refusal(client)
        if refused is not None:
            return refused
        self.streams.take(client)
        ipfs = self.ipfs
        stream = snapshot_events(
            request,
            after=_int(request.headers.get("last-event-id")),
            take=lambda after: self.take(after, ipfs.current()),
            before_each=lambda: ipfs.refresh(wait=False),
            done=lambda: self.streams.give_back(client),
            interval=self.interval,
            max_stream_s=self.max_stream_s,
            stopping=self.stopping,
        )
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no", "Content-Security-Policy": CSP},
        )

    async def stored(self, request: Request) -> Response:
        cid, path = str(request.path_params["cid"]), str(request.path_params["path"])
        target = await asyncio.to_thread(store_file, self.settings, cid, path)
        if target is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(target, media_type=STORE_TYPES[target.suffix.lower()])

    # --- wiring ------------------------------------------------------------------------------

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/api/state", self.state, methods=["GET"]),
            Route("/api/events", self.events, methods=["GET"]),
            *self.actions.routes(),
            Route("/store/{cid}/{path:path}", self.stored, methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """The dashboard's part of the operator server's lifespan (its IPFS check ends with
        the server)."""
        async with self.ipfs.lifespan():
            yield


def dashboard_routes(
    node: DashboardNode,
    *,
    ring: RingBufferHandler | Callable[[], RingBufferHandler | None] = current_ring,
    update_notice: Callable[[], UpdateNotice] | None = None,
    stopping: Callable[[], bool] | None = None,
    interval: float = EVENT_INTERVAL_S,
    max_stream_s: float = MAX_STREAM_S,
) -> list[BaseRoute]:
    """The routes of a :class:`Dashboard` over ``node`` (without its lifespan)."""
    return Dashboard(
        node, ring=ring, update_notice=update_notice, stopping=stopping, interval=interval,
        max_stream_s=max_stream_s,
    ).routes  # fmt: skip


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


__all__ = ["CSP", "STATIC_DIR", "Dashboard", "dashboard_routes"]
