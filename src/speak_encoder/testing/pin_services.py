"""Faithful local fakes of the remote persistence services (they are internet services).

Each one runs on 127.0.0.1 (free port) in a background thread, implements the documented API
subset the publisher uses, and does the real pinning on a real IPFS node through its Kubo RPC
(``backing_api``, e.g. a :class:`~speak_encoder.testing.ipfs_node.JsIpfsNode`):

* :class:`FakeIpfsCluster` — IPFS Cluster REST: ``POST /pins/{cid}`` (pins on the backing node),
  ``GET /pins/{cid}`` → ``{"cid", "name", "peer_map": {peer: {"status": "pinned"|…}}}``.
  Optional auth: bearer token or ``user:password`` basic auth.
* :class:`FakePinningService` — IPFS Pinning Service API: ``POST /pins`` → 202 ``PinStatus``
  (``queued``), pinned in the background (``pinning`` → ``pinned`` | ``failed``);
  ``GET /pins/{requestid}``; ``GET /pins?cid=…&status=…`` → ``{"count", "results"}``; bearer
  token required, 401 ``{"error": {"reason", "details"}}`` otherwise.
* :class:`FakeTrafficDirector` — ``GET /`` → ``{"success": true, "data": {"uploadEndpoint":
  "<backing>/api/v0/add"}}`` (the hot node is the backing node itself).

Use them as context managers; ``.url`` is the base URL.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from speak_encoder.testing.background import HTTPServerInThread

#: Seconds the backing node may take to pin.
PIN_TIMEOUT_S = 30


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.server.service.handle(
            self.command, split.path, parse_qs(split.query), dict(self.headers), body
        )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, service: _Service, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.service = service


class _Service(HTTPServerInThread):
    """Base: a threaded HTTP server around ``handle``."""

    thread_name = "pin-service"

    def __init__(self, backing_api: str, *, port: int = 0) -> None:
        super().__init__()
        self.backing_api = backing_api.rstrip("/")
        self.requests: list[tuple[str, str]] = []
        self.httpd = _Server(self, port)  # port 0: a free one

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        raise NotImplementedError

    # --- the backing node ----------------------------------------------------------------

    def _pin(self, cid: str) -> str | None:
        """Pin on the backing node; the error message, or None when pinned."""
        try:
            response = httpx.post(
                f"{self.backing_api}/api/v0/pin/add",
                params={"arg": cid, "timeout": f"{PIN_TIMEOUT_S}s"},
                timeout=PIN_TIMEOUT_S + 5,
            )
        except httpx.HTTPError as exc:
            return f"backing node unreachable: {exc}"
        if response.status_code != 200:
            return response.text[:300]
        return None

    def _pinned(self, cid: str) -> bool:
        try:
            response = httpx.post(
                f"{self.backing_api}/api/v0/pin/ls",
                params={"arg": cid, "timeout": "5s"},
                timeout=10,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeIpfsCluster(_Service):
    """IPFS Cluster REST API (pins subset)."""

    PEER = "12D3KooWFakeClusterPeer"

    def __init__(self, backing_api: str, token: str | None = None, *, port: int = 0) -> None:
        super().__init__(backing_api, port=port)
        self.token = token
        self.pins: dict[str, dict[str, Any]] = {}

    def _authorised(self, headers: dict[str, str]) -> bool:
        if self.token is None:
            return True
        given = headers.get("Authorization", "")
        if ":" in self.token:
            expected = "Basic " + base64.b64encode(self.token.encode()).decode()
            return given == expected
        return given == f"Bearer {self.token}"

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        self.requests.append((method, path))
        if not self._authorised(headers):
            return 401, {"code": 401, "message": "Unauthorized: invalid token"}
        parts = path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "pins":
            return 404, {"code": 404, "message": "not found"}
        cid = parts[1]
        if method == "POST":
            name = (query.get("name") or [""])[0]
            self.pins[cid] = {"name": name, "error": self._pin(cid)}
            return 200, {
                "cid": cid, "name": name, "type": 2, "allocations": [self.PEER],
                "max_depth": -1, "replication_factor_min": -1, "replication_factor_max": -1,
            }  # fmt: skip
        if method == "GET":
            pin = self.pins.get(cid)
            if pin is None:
                status = "unpinned"
            elif self._pinned(cid):
                status = "pinned"
            else:
                status = "pin_error" if pin["error"] else "pinning"
            return 200, {
                "cid": cid,
                "name": pin["name"] if pin else "",
                "peer_map": {
                    self.PEER: {
                        "peername": "fake-cluster-peer",
                        "status": status,
                        "timestamp": _now(),
                        "error": (pin or {}).get("error") or "",
                    }
                },
            }
        return 405, {"code": 405, "message": "method not allowed"}


class FakePinningService(_Service):
    """IPFS Pinning Service API (https://ipfs.github.io/pinning-services-api-spec/)."""

    def __init__(self, backing_api: str, token: str) -> None:
        super().__init__(backing_api)
        self.token = token
        self.statuses: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        self.requests.append((method, path))
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": {"reason": "UNAUTHORIZED", "details": "bad access token"}}
        if path == "/pins" and method == "GET":
            cids = set((query.get("cid") or [""])[0].split(",")) - {""}
            wanted = set((query.get("status") or ["pinned"])[0].split(","))
            with self._lock:
                found = [
                    s
                    for s in self.statuses.values()
                    if (not cids or s["pin"]["cid"] in cids) and s["status"] in wanted
                ]
            return 200, {"count": len(found), "results": found}
        if path == "/pins" and method == "POST":
            try:
                pin = json.loads(body)
                cid = str(pin["cid"])
            except (ValueError, KeyError, TypeError):
                return 400, {"error": {"reason": "BAD_REQUEST", "details": "cid is required"}}
            request_id = uuid.uuid4().hex
            status: dict[str, Any] = {
                "requestid": request_id,
                "status": "queued",
                "created": _now(),
                "pin": {"cid": cid, "name": pin.get("name"), "origins": [], "meta": {}},
                "delegates": ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWFakePinningDelegate"],
                "info": {},
            }
            with self._lock:
                self.statuses[request_id] = status
            threading.Thread(target=self._work, args=(request_id,), daemon=True).start()
            return 202, status
        if path.startswith("/pins/") and method == "GET":
            with self._lock:
                found_status = self.statuses.get(path.removeprefix("/pins/"))
            if found_status is None:
                return 404, {"error": {"reason": "NOT_FOUND", "details": "no such request"}}
            return 200, found_status
        return 404, {"error": {"reason": "NOT_FOUND", "details": path}}

    def _work(self, request_id: str) -> None:
        with self._lock:
            status = self.statuses[request_id]
            status["status"] = "pinning"
        time.sleep(0.2)
        error = self._pin(status["pin"]["cid"])
        with self._lock:
            status["status"] = "failed" if error else "pinned"
            if error:
                status["info"] = {"status_details": error}


class FakeTrafficDirector(_Service):
    """The 3Speak traffic director: names the hot node's add endpoint."""

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        self.requests.append((method, path))
        if method != "GET":
            return 405, {"success": False, "error": "method not allowed"}
        return 200, {"success": True, "data": {"uploadEndpoint": f"{self.backing_api}/api/v0/add"}}


__all__ = ["PIN_TIMEOUT_S", "FakeIpfsCluster", "FakePinningService", "FakeTrafficDirector"]
