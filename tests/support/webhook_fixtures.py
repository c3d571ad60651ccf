"""A local webhook receiver: a real HTTP server that records every request it gets.

``webhook_receiver`` is a running :class:`WebhookReceiver` on 127.0.0.1. By default it answers
200 ``{"ok":true}``; ``receiver.script(500, 500, 200)`` makes the next non-progress requests
answer those statuses in order (then 200 again), ``receiver.delay = 3`` makes every answer
slow. ``receiver.wait_for(n)`` waits until ``n`` requests (optionally only some kind) arrived.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_progress(self) -> bool:
        return self.path.endswith("/progress")


class WebhookReceiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.delay = 0.0
        self._script: list[int] = []
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                item = Received(
                    method="POST",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    at=time.monotonic(),
                )
                status = receiver._record(item)
                if receiver.delay:
                    time.sleep(receiver.delay)
                payload = b'{"ok":true}' if status < 400 else b'{"error":"scripted"}'
                # A client that gave up waiting (a delayed answer past its timeout) is gone: no
                # answer to write, and no traceback printed by the server thread.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _record(self, item: Received) -> int:
        with self._lock:
            self.requests.append(item)
            status = 200
            if not item.is_progress and self._script:
                status = self._script.pop(0)
            self._lock.notify_all()
            return status

    def hook_url(self, name: str = "hook") -> str:
        return f"{self.url}/{name}"

    def script(self, *statuses: int) -> None:
        with self._lock:
            self._script = list(statuses)

    def received(self, *, progress: bool | None = None) -> list[Received]:
        with self._lock:
            items = list(self.requests)
        if progress is None:
            return items
        return [r for r in items if r.is_progress == progress]

    def wait_for(
        self, count: int, *, progress: bool | None = None, timeout: float = 10.0
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                items = self.received_unlocked(progress)
                if len(items) >= count:
                    return items
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} webhook request(s), got {len(items)}")
                self._lock.wait(left)

    def received_unlocked(self, progress: bool | None) -> list[Received]:
        if progress is None:
            return list(self.requests)
        return [r for r in self.requests if r.is_progress == progress]

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.close()
