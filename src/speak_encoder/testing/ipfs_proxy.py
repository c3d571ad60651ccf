"""A tiny faulty proxy in front of a real Kubo RPC node (for the faults a real node never makes).

Every request is forwarded to ``upstream`` unchanged; the answer is altered by ``fault``:

* ``"wrong-root"``: in an ``add`` answer, the root entry (``Name ""``) gets another CID (the
  empty directory's), as a broken or malicious node would report;
* ``"html"``: every answer is replaced by a 502 HTML error page, as a reverse proxy sends;
* ``None``: a plain pass-through.

``hold_add`` (seconds, settable while running) makes every ``add`` wait that long before it
is forwarded: an upload "in the middle" for crash tests.

Request bodies are read whole (test uploads are tiny); answers are forwarded whole.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from speak_encoder.testing.background import HTTPServerInThread

#: The CID the ``wrong-root`` fault reports (the empty UnixFS directory).
WRONG_ROOT = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
HTML_PAGE = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>\n"


class _Handler(BaseHTTPRequestHandler):
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        proxy.requests.append(self.path)
        if self.path.startswith("/api/v0/add") and proxy.hold_add > 0:
            proxy.holding.set()
            time.sleep(proxy.hold_add)
        if proxy.fault == "html":
            self._reply(502, "text/html", HTML_PAGE)
            return
        headers = {
            key: value
            for key, value in self.headers.items()
            if key.lower() in {"content-type", "content-length"}
        }
        response = httpx.post(
            f"{proxy.upstream}{self.path}", content=body, headers=headers, timeout=120
        )
        content = response.content
        if proxy.fault == "wrong-root" and self.path.startswith("/api/v0/add"):
            content = _rewrite_root(content)
        self._reply(
            response.status_code, response.headers.get("content-type", "text/plain"), content
        )

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _rewrite_root(ndjson: bytes) -> bytes:
    lines = []
    for line in ndjson.splitlines():
        if line.strip():
            entry = json.loads(line)
            if entry.get("Name") == "" and "Hash" in entry:
                entry["Hash"] = WRONG_ROOT
            line = json.dumps(entry).encode()
        lines.append(line)
    return b"\n".join(lines) + b"\n"


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: KuboFaultProxy) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy


class KuboFaultProxy(HTTPServerInThread):
    """See the module docstring. ``with KuboFaultProxy(node.api_url, "wrong-root") as p:``."""

    thread_name = "kubo-fault-proxy"

    def __init__(self, upstream: str, fault: str | None = None) -> None:
        super().__init__()
        if fault not in {None, "wrong-root", "html"}:
            raise ValueError(f"unknown fault {fault!r}")
        self.upstream = upstream.rstrip("/")
        self.fault = fault
        self.requests: list[str] = []
        self.hold_add = 0.0
        self.holding = threading.Event()
        self.httpd = _ProxyServer(self)


__all__ = ["HTML_PAGE", "WRONG_ROOT", "KuboFaultProxy"]
