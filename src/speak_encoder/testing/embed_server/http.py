"""How the embed server answers every route: one request in, a handler's :class:`Outcome`
out, logged as an :class:`EmbedCall`; queued faults (``fail_next``) answered instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from speak_encoder.testing.embed_server.protocol import (
    BAD_JWS,
    GATEWAY_ROUTES,
    HEADERS_OF_INTEREST,
    HOLD_POLL_S,
    JOB_NOT_FOUND,
    NOT_REGISTERED,
    SERVER_ERROR,
    UNAUTHORIZED,
    Outcome,
)
from speak_encoder.testing.embed_server.records import EmbedCall
from speak_encoder.testing.embed_server.state import EmbedState
from speak_encoder.testing.express import BadJson, express_json, express_page, parse_answer
from speak_encoder.testing.serving import HTML_PAGE


class HttpServing(EmbedState):
    """Answering a request: the call log, holds and delays, faults, Express's 400."""

    async def _serve(
        self,
        request: Request,
        route: str,
        handler: Callable[[Any, dict[str, str]], Outcome],
        *,
        delay: float = 0.0,
    ) -> Response:
        received, wall = time.monotonic(), time.time()
        headers = {k: v for k in HEADERS_OF_INTEREST if (v := request.headers.get(k)) is not None}
        body = express_json(await request.body(), request.headers.get("content-type", ""))
        with self._cond:
            self._in_flight[route] = self._in_flight.get(route, 0) + 1
            gate = self._holds.get(route)
            self._changed()
        try:
            fault = self.faults.take(route)
            outcome: Outcome | None = None
            if fault is not None:
                response = await self._fault_response(route, fault, request)
            elif isinstance(body, BadJson):
                response = express_page(400, "Bad Request")
            else:
                # the gate is opened by the test's thread: a threading.Event, polled
                while gate is not None and not gate.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(HOLD_POLL_S)
                if delay > 0:
                    await asyncio.sleep(delay)
                outcome = handler(body, headers)
                response = JSONResponse(outcome.body, status_code=outcome.status)
        finally:
            with self._cond:
                self._in_flight[route] -= 1
        self._record(
            EmbedCall(
                route, request.method, request.url.path, "in", headers,
                None if isinstance(body, BadJson) else body,
                response.status_code,
                outcome.body if outcome is not None else parse_answer(bytes(response.body)),
                received, time.monotonic(), wall,
                did=outcome.did if outcome else None,
                payload=outcome.payload if outcome else None, fault=fault,
            )
        )  # fmt: skip
        return response

    async def _fault_response(self, route: str, fault: str, request: Request) -> Response:
        gateway = route in GATEWAY_ROUTES
        if fault == "500":
            return JSONResponse(SERVER_ERROR, status_code=500)
        if fault == "401":
            return JSONResponse(BAD_JWS if gateway else UNAUTHORIZED, status_code=401)
        if fault == "404":
            if gateway:
                return JSONResponse(NOT_REGISTERED, status_code=404)
            if route == "webhook/progress":
                return JSONResponse(JOB_NOT_FOUND, status_code=404)
            return express_page(404, f"Cannot {request.method} {request.url.path}")
        if fault == "malformed":
            return Response('{"success":true,"job":{"owner":', media_type="application/json")
        if fault == "html":
            return Response(HTML_PAGE, status_code=502, media_type="text/html")
        await asyncio.sleep(self.hang_seconds)  # timeout: the proxy in front gives up
        return Response(HTML_PAGE.replace("502 Bad Gateway", "504 Gateway Time-out"),
                        status_code=504, media_type="text/html")  # fmt: skip


__all__ = ["HttpServing"]
