"""The dashboard's Server-Sent Events: one snapshot every interval, each with the new log lines.

``id:`` is the log sequence, so a reconnecting ``EventSource`` resumes with ``Last-Event-ID``.
Bounded (:class:`StreamSlots`): at most :data:`MAX_STREAMS` streams at once and
:data:`MAX_STREAMS_PER_CLIENT` per client address (so one client cannot take them all and lock
the operator out; 503 beyond), and ``max_stream_s`` seconds each (the browser reconnects by
itself).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from speak_encoder.logs import redact

#: Seconds between two snapshots of the event stream.
EVENT_INTERVAL_S: Final = 2.0
#: Event streams served at once (each costs a store read every interval), and per client address.
MAX_STREAMS: Final = 16
MAX_STREAMS_PER_CLIENT: Final = 4
#: Seconds one event stream lasts before the server closes it (the browser reconnects).
MAX_STREAM_S: Final = 600.0


class StreamSlots:
    """How many event streams are open, in all and per client address."""

    def __init__(self) -> None:
        self.open = 0
        self.of_client: dict[str, int] = {}

    def refusal(self, client: str) -> Response | None:
        """The 503 to send when ``client`` may not open one more stream, else None."""
        if self.open >= MAX_STREAMS:
            return JSONResponse({"error": "too many event streams"}, status_code=503)
        if self.of_client.get(client, 0) >= MAX_STREAMS_PER_CLIENT:
            return JSONResponse(
                {"error": f"this address has {MAX_STREAMS_PER_CLIENT} event streams open already"},
                status_code=503,
            )
        return None

    def take(self, client: str) -> None:
        self.open += 1
        self.of_client[client] = self.of_client.get(client, 0) + 1

    def give_back(self, client: str) -> None:
        self.open -= 1
        left = self.of_client.get(client, 1) - 1
        if left > 0:
            self.of_client[client] = left
        else:
            self.of_client.pop(client, None)


def event(name: str, data: dict[str, Any], seq: int) -> str:
    """One event of the stream, as text."""
    return f"id: {seq}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def snapshot_events(
    request: Request,
    *,
    after: int,
    take: Callable[[int], dict[str, Any]],
    before_each: Callable[[], Awaitable[None]],
    done: Callable[[], None],
    interval: float,
    max_stream_s: float,
    stopping: Callable[[], bool] | None,
) -> AsyncIterator[str]:
    """The events of one stream: ``take(after)`` (blocking, run in a thread) every ``interval``
    seconds until the client leaves, the node stops or ``max_stream_s`` ran out; ``done`` is
    called once, however the stream ends."""
    try:
        yield f"retry: {int(interval * 1000)}\n\n"
        deadline = time.monotonic() + max_stream_s
        while time.monotonic() < deadline:
            await before_each()
            try:
                data = await asyncio.to_thread(take, after)
            except Exception as exc:  # the store is down: say so, keep streaming
                yield event("error", {"error": redact(str(exc))}, after)
            else:
                after = int(data["log_seq"])
                yield event("snapshot", data, after)
            if await request.is_disconnected() or (stopping is not None and stopping()):
                return
            await asyncio.sleep(interval)
    finally:
        done()


__all__ = [
    "EVENT_INTERVAL_S",
    "MAX_STREAMS",
    "MAX_STREAMS_PER_CLIENT",
    "MAX_STREAM_S",
    "StreamSlots",
    "event",
    "snapshot_events",
]
