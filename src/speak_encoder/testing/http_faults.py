"""A small, honest HTTP/1.1 server that misbehaves on request: the reference peer for fetch tests.

Why this module is long: it is one server. Each fault is a small branch of its one request path
(read, route, reply, send the body), so the faults and the path they bend stay together.

It runs on ``127.0.0.1`` (random free port) in a background thread with its own event loop, so
synchronous and asynchronous tests can both use it::

    with FaultServer() as server:
        server.add("/video.mp4", PatternPayload(4 * 1024 * 1024), drop_after=1_000_000)
        url = server.url("/video.mp4")
        ...
        assert server.requests_for("/video.mp4")[1].headers["range"] == "bytes=1000000-"

Payloads are served with real ``Range``/``206``/``Content-Range``/``ETag``/``If-Range``
semantics. Each path can carry faults (see :class:`Fault`). The server also fakes the two IPFS
origins fetch talks to: a Kubo RPC ``POST /api/v0/cat?arg=CID&offset=N`` (chunked, with
``X-Content-Length``, errors as HTTP 500 JSON) and gateway paths ``/ipfs/<cid>``.

Payloads never live in memory whole: :class:`PatternPayload` computes any byte range of a
deterministic pseudo-random pattern on the fly, so a 200 MB download does not cost 200 MB here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from speak_encoder.testing.background import BackgroundServer

#: Bytes written per socket write.
WRITE_CHUNK = 64 * 1024
#: Length of the repeating block of :class:`PatternPayload` (prime: never aligns with chunks).
PATTERN_BLOCK = 65_521
#: Largest request head accepted.
MAX_HEAD = 64 * 1024
#: The HTML page served by ``html=True`` (what a proxy or a captive portal sends).
HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>\n"
)

_REASONS = {
    200: "OK",
    302: "Found",
    206: "Partial Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class Payload(Protocol):
    """Bytes served by the fault server, addressable by range."""

    @property
    def size(self) -> int: ...

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` (the server asks for at most :data:`WRITE_CHUNK`)."""
        ...


@dataclass(frozen=True, slots=True)
class BytesPayload:
    """A small payload held in memory."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, start: int, end: int) -> bytes:
        return self.data[start:end]


class FilePayload:
    """A file on disk, read one range at a time (memory: one chunk)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._size = path.stat().st_size

    @property
    def size(self) -> int:
        return self._size

    def read(self, start: int, end: int) -> bytes:
        with self.path.open("rb") as handle:
            handle.seek(start)
            return handle.read(max(0, min(end, self._size) - start))


class PatternPayload:
    """``size`` deterministic pseudo-random bytes, computed on demand (memory: one block)."""

    def __init__(self, size: int, seed: int = 1) -> None:
        self._size = size
        self._block = random.Random(seed).randbytes(PATTERN_BLOCK)  # noqa: S311 - test data

    @property
    def size(self) -> int:
        return self._size

    def read(self, start: int, end: int) -> bytes:
        end = min(end, self._size)
        out = bytearray()
        pos = start
        while pos < end:
            offset = pos % PATTERN_BLOCK
            take = min(end - pos, PATTERN_BLOCK - offset)
            out += self._block[offset : offset + take]
            pos += take
        return bytes(out)

    def iter_chunks(self, chunk: int = WRITE_CHUNK) -> Iterator[bytes]:
        for start in range(0, self._size, chunk):
            yield self.read(start, start + chunk)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for part in self.iter_chunks():
            digest.update(part)
        return digest.hexdigest()


def payload_sha256(payload: Payload) -> str:
    """sha256 hex of a payload, computed in bounded chunks."""
    digest = hashlib.sha256()
    for start in range(0, payload.size, WRITE_CHUNK):
        digest.update(payload.read(start, start + WRITE_CHUNK))
    return digest.hexdigest()


@dataclass(slots=True)
class Fault:
    """How one path misbehaves. All off by default: an honest static file server.

    - ``status``: answer this status (with a short body) instead of the payload.
    - ``drop_after``: close the socket after this many body bytes, on the first ``drop_times``
      requests only (so a resume can succeed).
    - ``stall_after``: send this many body bytes, then hold the connection open silently until
      the server stops.
    - ``lie_length``: announce this ``Content-Length`` on full (200) responses, whatever the
      body; the whole real payload is sent anyway, then the socket closed.
    - ``html``: answer 200 ``text/html`` with an error page (a proxy/captive portal).
    - ``html_sniff``: same page, but labelled ``application/octet-stream``.
    - ``ignore_range``: always answer 200 with the whole body.
    - ``trickle``: seconds between body writes of ``trickle_bytes`` bytes each.
    - ``chunked``: no ``Content-Length``, chunked transfer encoding (Kubo does this).
    - ``etag``/``last_modified``: validators announced and checked against ``If-Range``.
    - ``redirect``: answer ``302 Found`` with this ``Location``.

    On the fake Kubo ``cat``, ``lie_length`` is the file size announced in
    ``X-Content-Length`` and ``status`` answers a Kubo JSON error with that status.
    """

    status: int | None = None
    drop_after: int | None = None
    drop_times: int = 1
    stall_after: int | None = None
    lie_length: int | None = None
    html: bool = False
    html_sniff: bool = False
    ignore_range: bool = False
    trickle: float | None = None
    trickle_bytes: int = 1
    chunked: bool = False
    etag: str | None = '"v1"'
    last_modified: str | None = None
    redirect: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server saw. ``headers`` keys are lower case."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass(slots=True)
class _Route:
    payload: Payload
    fault: Fault
    served: int = 0  # requests answered so far
    body_bytes_sent: int = 0


@dataclass(slots=True)
class _Reply:
    status: int
    headers: list[tuple[str, str]]
    start: int = 0
    end: int = 0  # body = payload[start:end]
    raw_body: bytes | None = None  # a fixed body instead of the payload


@dataclass(slots=True)
class _State:
    routes: dict[str, _Route] = field(default_factory=dict)
    kubo: dict[str, _Route] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)


class FaultServer(BackgroundServer):
    """The fault-injecting server; use it as a context manager (``with FaultServer() as s``)."""

    thread_name = "fault-http"

    def __init__(self) -> None:
        super().__init__()
        self._state = _State()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping: asyncio.Event | None = None
        self.port = 0

    # --- registration -------------------------------------------------------------------
    def add(self, path: str, payload: Payload | bytes, **faults: object) -> None:
        """Serve ``payload`` at ``path`` (GET/HEAD) with the given :class:`Fault` fields."""
        with self._lock:
            self._state.routes[path] = _Route(_as_payload(payload), Fault(**faults))  # type: ignore[arg-type]

    def add_gateway(self, cid: str, payload: Payload | bytes, **faults: object) -> str:
        """Serve ``payload`` as a gateway would at ``/ipfs/<cid>``; returns the gateway base."""
        self.add(f"/ipfs/{cid}", payload, **faults)
        return self.base_url

    def add_kubo(self, cid: str, payload: Payload | bytes, **faults: object) -> str:
        """Let the fake Kubo ``cat`` know ``cid``; returns the RPC base URL."""
        faults.setdefault("chunked", True)
        with self._lock:
            self._state.kubo[cid] = _Route(_as_payload(payload), Fault(**faults))  # type: ignore[arg-type]
        return self.base_url

    # --- inspection ---------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def body_bytes_sent(self, path: str) -> int:
        """Body bytes written for ``path`` (or a Kubo CID) over all requests."""
        with self._lock:
            route = self._state.routes.get(path) or self._state.kubo.get(path)
            return route.body_bytes_sent if route else 0

    # --- lifecycle (start / stop / with: testing.background) ---------------------------
    def _request_stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)

    def _serve_in_thread(self, ready: Callable[[], None]) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]
        ready()
        await self._stopping.wait()
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or sent garbage: nothing to answer
        except asyncio.CancelledError:
            pass  # the server is stopping: end this connection quietly
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # --- one request per connection ------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        with self._lock:
            self._state.requests.append(request)
        if request.path == "/api/v0/cat":
            route = self._kubo_route(request)
            if route is None:
                return await _send(writer, _kubo_error_reply(request), None, None)
            reply = _kubo_reply(request, route)
        else:
            with self._lock:
                found = self._state.routes.get(request.path)
            if found is None:
                return await _send(writer, _text_reply(404, "404 page not found\n"), None, None)
            route = found
            reply = _http_reply(request, route)
        with self._lock:
            route.served += 1
            first_requests = route.served <= route.fault.drop_times
        await _send(writer, reply, route, first_requests)

    def _kubo_route(self, request: RecordedRequest) -> _Route | None:
        with self._lock:
            return self._state.kubo.get(request.query.get("arg", "").removeprefix("/ipfs/"))


def _as_payload(payload: Payload | bytes) -> Payload:
    return BytesPayload(payload) if isinstance(payload, bytes) else payload


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)
    parts = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return RecordedRequest(method, target, parts.path, query, headers)


def _text_reply(status: int, text: str, content_type: str = "text/plain") -> _Reply:
    body = text.encode()
    return _Reply(status, [("Content-Type", content_type)], raw_body=body)


def _kubo_error_reply(request: RecordedRequest) -> _Reply:
    if request.method != "POST":
        return _text_reply(405, "405 - Method Not Allowed\n")
    arg = request.query.get("arg", "")
    message = {"Message": f"block was not found locally (offline): ipld: could not find {arg}",
               "Code": 0, "Type": "error"}  # fmt: skip
    return _text_reply(500, json.dumps(message), "application/json")


def _kubo_reply(request: RecordedRequest, route: _Route) -> _Reply:
    if request.method != "POST":
        return _text_reply(405, "405 - Method Not Allowed\n")
    fault = route.fault
    if fault.status is not None:
        message = {"Message": f"injected failure {fault.status}", "Code": 0, "Type": "error"}
        return _text_reply(fault.status, json.dumps(message), "application/json")
    size = route.payload.size
    offset = min(int(request.query.get("offset", "0") or 0), size)
    headers = [
        ("Content-Type", "text/plain"),
        ("X-Content-Length", str(max((fault.lie_length or size) - offset, 0))),
        ("X-Stream-Output", "1"),
        ("Trailer", "X-Stream-Error"),
    ]
    return _Reply(200, headers, offset, size)


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """``(start, end_exclusive)``, ``None`` (no usable range) or ``"unsatisfiable"``."""
    if not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].partition("-")
    try:
        if not first:
            count = int(last)
            return (max(size - count, 0), size) if count > 0 else "unsatisfiable"
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size)


def _http_reply(request: RecordedRequest, route: _Route) -> _Reply:
    fault = route.fault
    if fault.status is not None:
        return _text_reply(fault.status, f"{fault.status} {_REASONS.get(fault.status, '')}\n")
    if fault.redirect is not None:
        return _Reply(302, [("Location", fault.redirect)], raw_body=b"")
    if fault.html or fault.html_sniff:
        kind = "text/html; charset=utf-8" if fault.html else "application/octet-stream"
        return _Reply(200, [("Content-Type", kind)], raw_body=HTML_ERROR_PAGE)
    size = route.payload.size
    headers = [("Content-Type", "video/mp4"), ("Accept-Ranges", "bytes")]
    if fault.etag:
        headers.append(("ETag", fault.etag))
    if fault.last_modified:
        headers.append(("Last-Modified", fault.last_modified))
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    validators = {fault.etag, fault.last_modified} - {None}
    if wanted and not fault.ignore_range and (if_range is None or if_range in validators):
        parsed = _parse_range(wanted, size)
        if parsed == "unsatisfiable":
            return _Reply(416, [("Content-Range", f"bytes */{size}")], raw_body=b"")
        if isinstance(parsed, tuple):
            start, end = parsed
            headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
            return _Reply(206, headers, start, end)
    return _Reply(200, headers, 0, size)


def _head_bytes(reply: _Reply, length: int | None) -> bytes:
    reason = _REASONS.get(reply.status, "Status")
    lines = [f"HTTP/1.1 {reply.status} {reason}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(
    writer: asyncio.StreamWriter,
    reply: _Reply,
    route: _Route | None,
    first_requests: bool | None,
) -> None:
    if reply.raw_body is not None or route is None:
        body = reply.raw_body or b""
        writer.write(_head_bytes(reply, len(body)) + body)
        await writer.drain()
        return
    fault = route.fault
    body_len = reply.end - reply.start
    announced: int | None = body_len
    if fault.chunked:
        announced = None
    elif fault.lie_length is not None and reply.status == 200:
        announced = fault.lie_length
    writer.write(_head_bytes(reply, announced))
    await writer.drain()
    limit = _body_limit(fault, bool(first_requests))
    await _send_body(writer, reply, route, limit, chunked=announced is None)


def _body_limit(fault: Fault, first_requests: bool) -> int | None:
    if fault.stall_after is not None and first_requests:
        return fault.stall_after
    if fault.drop_after is not None and first_requests:
        return fault.drop_after
    return None


async def _send_body(
    writer: asyncio.StreamWriter,
    reply: _Reply,
    route: _Route,
    limit: int | None,
    *,
    chunked: bool,
) -> None:
    fault = route.fault
    step = fault.trickle_bytes if fault.trickle is not None else WRITE_CHUNK
    pos, sent = reply.start, 0
    while pos < reply.end:
        take = min(step, reply.end - pos)
        if limit is not None:
            take = min(take, limit - sent)
            if take <= 0:
                break
        data = route.payload.read(pos, pos + take)
        writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        await writer.drain()
        route.body_bytes_sent += len(data)  # only this thread writes it
        pos += take
        sent += take
        if fault.trickle is not None:
            await asyncio.sleep(fault.trickle)
    if limit is not None and sent >= limit and fault.stall_after is not None:
        await asyncio.Event().wait()  # hold the socket silently until the server stops
    if pos >= reply.end and chunked:
        writer.write(b"0\r\n\r\n")
        await writer.drain()


__all__ = [
    "HTML_ERROR_PAGE",
    "BytesPayload",
    "Fault",
    "FaultServer",
    "PatternPayload",
    "Payload",
    "RecordedRequest",
    "payload_sha256",
]
