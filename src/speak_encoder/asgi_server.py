"""Serving an ASGI app inside the node's own event loop (the Direct API, the operator server).

Why this module is long: the guards below are the layers of one server, configured together by
:class:`HttpLimits` and installed together by :func:`serve_app`; each guard alone is small, and
they are one defence, described once.

A bottom-layer module (it needs only the settings and the errors): the Direct API (a job
source) and the operator server (``web``) both stand on it.

uvicorn runs without its signal handlers (the service's lifespan owns SIGTERM/SIGINT), without
an access log (request headers and query strings never reach a log), and on a socket bound
before the service starts, so a taken port fails the start with a message naming the settings
instead of uvicorn's ``sys.exit``.

Both servers face clients the node does not trust (issue 11). What uvicorn alone does not bound
is bounded here, at the connection (:class:`GuardedH11Protocol`) and at the request:

* **Read deadlines** (slowloris): a connection has ``HTTP_HEADER_TIMEOUT`` seconds, from the
  moment it waits for a request, to deliver the whole request head, then
  ``HTTP_BODY_TIMEOUT`` seconds for the body it announced; otherwise it is closed. uvicorn's
  own keep-alive timer only starts after a response, so a head that never ends (``POST /encode
  HTTP/1.1\\r\\nHost: x\\r\\n`` and silence) would otherwise hold its socket forever.
* **A bounded connection table** (``HTTP_MAX_CONNECTIONS`` per server, and never more than
  :data:`FD_SHARE` of the process's file-descriptor limit): when it is full, the connection
  that has waited longest for its request is closed to make room, so a crowd of idle sockets
  costs at most that many file descriptors and a real client (``/health``) still gets in at
  once. Connections that sent part of a request and stopped go first, then those that
  announced a body and sent none, then silent ones and idle keep-alive clients — these only
  after :data:`EVICTION_GRACE_S`, so a real client is read before newcomers can push it out;
  when no connection can go (all busy, or all just opened), the newcomer gets a 503.
  The listening socket accepts at most :data:`ACCEPT_BURST` connections per wake-up, so the
  connections being closed are gone before the next burst is taken in.
* **The Host header** (:class:`HostGuard`, DNS rebinding): only the bound address, loopback,
  ``localhost`` and ``ALLOWED_HOSTS`` are answered; any other name gets 400 before the app runs.
* **Failed authentications** (:class:`AuthThrottle`): :data:`AUTH_MAX_FAILURES` per client
  address in :data:`AUTH_WINDOW_S` seconds, then 429 until the oldest failure ages out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import resource
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import h11
import psutil
import uvicorn
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from speak_encoder.config import (
    DEFAULT_HTTP_BODY_TIMEOUT_S,
    DEFAULT_HTTP_HEADER_TIMEOUT_S,
    DEFAULT_HTTP_MAX_CONNECTIONS,
    Settings,
)
from speak_encoder.errors import ConfigError

log = logging.getLogger(__name__)

#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_S = 5
#: Seconds in-flight requests get when the server stops.
GRACEFUL_SHUTDOWN_S = 5
#: Failed authentications a client address may make in AUTH_WINDOW_S seconds.
AUTH_MAX_FAILURES = 10
AUTH_WINDOW_S = 60.0
#: Client addresses whose failures are remembered (the least recent are forgotten first).
AUTH_TRACKED_CLIENTS = 4096
#: Seconds a new (or newly idle) connection is safe from eviction: long enough to read the
#: request a real client sends at once, far shorter than any read deadline.
EVICTION_GRACE_S = 1.0
#: Share of the file-descriptor limit (RLIMIT_NOFILE) one server's connections may take.
FD_SHARE = 1 / 8
#: Fewest connections a server holds whatever the limits say.
MIN_CONNECTIONS = 8
#: Connections accepted per wake-up of the listening socket (asyncio takes ``backlog`` at once),
#: and the kernel's queue of connections not accepted yet (set again once serving).
ACCEPT_BURST = 16
LISTEN_BACKLOG = 1024
#: The answer to a connection that finds every slot busy with a request.
_FULL_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 12\r\nretry-after: 1\r\nconnection: close\r\n\r\nserver full\n"
)

Phase = Literal["head", "body", "busy"]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The connection bounds of one server (``HTTP_*`` settings)."""

    header_timeout: float = DEFAULT_HTTP_HEADER_TIMEOUT_S
    body_timeout: float = DEFAULT_HTTP_BODY_TIMEOUT_S
    max_connections: int = DEFAULT_HTTP_MAX_CONNECTIONS

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            header_timeout=settings.http_header_timeout,
            body_timeout=settings.http_body_timeout,
            max_connections=settings.http_max_connections,
        )

    @property
    def connection_cap(self) -> int:
        """``max_connections``, lowered to :data:`FD_SHARE` of the file-descriptor limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(MIN_CONNECTIONS, min(self.max_connections, int(soft * FD_SHARE)))


class ConnectionTable:
    """The open connections of one server, at most ``limit`` (insertion ordered)."""

    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit
        self.name = name
        self._open: dict[GuardedH11Protocol, None] = {}
        self.evicted = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: GuardedH11Protocol) -> bool:
        """Make room for ``conn`` (closing the connection that waited longest for its request);
        ``False`` when every connection is busy with a request."""
        if len(self._open) >= self.limit:
            victim = self._oldest_waiting()
            if victim is None:
                self.refused += 1
                log.warning(
                    "%s: %d connections busy or just opened, a new one is refused",
                    self.name, self.limit,
                )  # fmt: skip
                return False
            self.evicted += 1
            log.debug("%s: closing a connection waiting in its %s phase (%d answered)",
                      self.name, victim.phase, victim.served)  # fmt: skip
            log.warning(
                "%s: %d connections open, the one idle the longest is closed to make room "
                "(slow or idle clients)",
                self.name, self.limit,
            )  # fmt: skip
            victim.close_now()
        self._open[conn] = None
        return True

    def _oldest_waiting(self) -> GuardedH11Protocol | None:
        """The connection to close first (:meth:`GuardedH11Protocol.eviction_tier`, then the
        one waiting the longest); ``None`` when every connection is busy or protected."""
        now = time.monotonic()
        best: tuple[int, float] | None = None
        victim = None
        for conn in self._open:
            tier = conn.eviction_tier(now)
            if tier is None:
                continue
            key = (tier, conn.waiting_since)
            if best is None or key < best:
                best, victim = key, conn
        return victim

    def discard(self, conn: GuardedH11Protocol) -> None:
        self._open.pop(conn, None)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines and a bounded connection table (module doc).

    Subclassed per server by :func:`guarded_protocol` (the class attributes are that server's).
    """

    table: ClassVar[ConnectionTable]
    limits: ClassVar[HttpLimits]

    phase: Phase = "busy"
    waiting_since: float = 0.0
    served = 0  # responses completed on this connection
    pending = 0  # bytes received since the current phase began (a partial head or body)
    _timer: asyncio.TimerHandle | None = None
    _admitted: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer = None
        if not self.table.admit(self):
            with contextlib.suppress(Exception):
                transport.write(_FULL_RESPONSE)
            transport.close()
            return
        self._admitted = True
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self.table.discard(self)
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.pending += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        self._follow()

    def eviction_tier(self, now: float) -> int | None:
        """How readily this connection is closed to make room (0 first; ``None``: never).

        0: it sent part of a request and stopped (a slowloris socket, whatever its age);
        1: it announced a body and sent none of it; 2: a new connection that sent nothing yet
        and 3: an idle keep-alive client already answered — both only after
        :data:`EVICTION_GRACE_S`, so a client is always read before a burst of newcomers can
        push it out. A connection whose request is complete (busy) is never closed."""
        if self.phase == "busy":
            return None
        if self.pending:
            return 0
        if self.phase == "body":
            return 1
        if now - self.waiting_since < EVICTION_GRACE_S:
            return None
        return 3 if self.served else 2

    def on_response_complete(self) -> None:
        self.served += 1
        super().on_response_complete()
        self._follow()

    def close_now(self) -> None:
        """Close this connection at once (it is evicted or ran out of time)."""
        self.table.discard(self)
        self._cancel_timer()
        if not self.transport.is_closing():
            self.transport.close()

    # --- the deadlines ----------------------------------------------------------------------

    def _follow(self) -> None:
        """Arm the deadline of the phase the connection is in now (their h11 state)."""
        if not self._admitted or self.transport.is_closing():
            return
        state = self.conn.their_state
        phase: Phase
        if state is h11.IDLE:
            phase, limit = "head", self.limits.header_timeout
        elif state is h11.SEND_BODY:
            phase, limit = "body", self.limits.body_timeout
        else:
            phase, limit = "busy", 0.0
        if phase == self.phase:
            return  # the deadline runs from when the phase began, not from the last byte
        self.phase = phase
        self.waiting_since = time.monotonic()
        self.pending = 0
        self._cancel_timer()
        if phase != "busy":
            self._timer = self.loop.call_later(limit, self._expired, phase)

    def _expired(self, phase: Phase) -> None:
        self._timer = None
        if self.phase == phase:
            log.debug("%s: a client sent no complete request %s in time", self.table.name, phase)
            self.close_now()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def guarded_protocol(limits: HttpLimits, name: str) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` class with its own connection table for one server."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"table": ConnectionTable(limits.connection_cap, name), "limits": limits},
    )


# --- Host allow-list (DNS rebinding) ----------------------------------------------------------


def _split_host(header: str) -> str:
    """The host name of a ``Host`` header without its port, lower case, no brackets."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _local_addresses() -> frozenset[str]:
    found = set()
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                found.add(addr.address.split("%", 1)[0].lower())
    return frozenset(found)


class AllowedHosts:
    """Which ``Host`` headers a server answers: its bound address, loopback addresses,
    ``localhost``, the names of ``ALLOWED_HOSTS`` (``*`` = any), and — when it listens on every
    interface — any address of this machine. A name the operator did not list is refused:
    a DNS-rebinding page reaches the server under the attacker's own name."""

    def __init__(self, bound_host: str, extra: list[str]) -> None:
        self.any = "*" in extra
        self.names = {"localhost", "localhost.localdomain", _split_host(bound_host)}
        self.names.update(_split_host(h) for h in extra if h != "*")
        try:
            self.bound: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
                _split_host(bound_host)
            )
        except ValueError:
            self.bound = None
        self._local: frozenset[str] | None = None

    def permits(self, header: str | None) -> bool:
        if self.any:
            return True
        if not header:
            return False
        host = _split_host(header)
        if host in self.names or host.endswith(".localhost"):
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if ip.is_loopback or ip == self.bound:
            return True
        if self.bound is not None and self.bound.is_unspecified:
            if self._local is None:
                self._local = _local_addresses()
            return str(ip) in self._local
        return False


Rejection = Callable[[str], Any]


def _json_rejection(message: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=400)


class HostGuard:
    """Pure ASGI middleware: 400 (``reject(message)``) for a Host the server does not answer."""

    def __init__(
        self, app: ASGIApp, *, allowed: AllowedHosts, reject: Rejection = _json_rejection
    ) -> None:
        self.app = app
        self.allowed = allowed
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host")
            if not self.allowed.permits(host):
                shown = json.dumps((host or "")[:100])
                response = self.reject(
                    f"this server does not answer the host {shown}: add it to ALLOWED_HOSTS "
                    "if it is yours"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def allowed_hosts(settings: Settings, bound_host: str) -> AllowedHosts:
    return AllowedHosts(bound_host, settings.allowed_host_list)


# --- failed authentications ----------------------------------------------------------------


class AuthThrottle:
    """Failed authentications per client address (bounded memory: the least recently seen
    clients are forgotten first). After ``max_failures`` within ``window`` seconds a client is
    refused — without its key being checked — until its oldest failure ages out."""

    def __init__(
        self,
        *,
        max_failures: int = AUTH_MAX_FAILURES,
        window: float = AUTH_WINDOW_S,
        max_clients: int = AUTH_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def _recent(self, client: str) -> collections.deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        cutoff = self._clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again (``None``: it may now)."""
        times = self._recent(client)
        if times is None or len(times) < self.max_failures:
            return None
        return max(1.0, times[0] + self.window - self._clock())

    def failed(self, client: str) -> None:
        times = self._recent(client)
        if times is None:
            times = self._failures[client] = collections.deque(maxlen=self.max_failures)
        times.append(self._clock())
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)


def client_of(scope: Scope) -> str:
    """The client address of a request (``?`` when unknown)."""
    client = scope.get("client")
    return str(client[0]) if client else "?"


# --- serving --------------------------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers; small accept bursts, a long kernel queue."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for sock in sockets or []:
            with contextlib.suppress(OSError):
                sock.listen(LISTEN_BACKLOG)  # asyncio listened with ACCEPT_BURST


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


async def serve_app(
    app: Any,
    sock: socket.socket,
    *,
    stop: asyncio.Event,
    name: str,
    limits: HttpLimits | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set (or this task is cancelled)."""
    limits = limits or HttpLimits()
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        proxy_headers=False,
        http=guarded_protocol(limits, name),
        ws="none",
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        backlog=ACCEPT_BURST,
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


__all__ = [
    "ACCEPT_BURST",
    "AUTH_MAX_FAILURES",
    "AUTH_TRACKED_CLIENTS",
    "AUTH_WINDOW_S",
    "EVICTION_GRACE_S",
    "FD_SHARE",
    "GRACEFUL_SHUTDOWN_S",
    "KEEP_ALIVE_S",
    "LISTEN_BACKLOG",
    "MIN_CONNECTIONS",
    "AllowedHosts",
    "AuthThrottle",
    "ConnectionTable",
    "GuardedH11Protocol",
    "HostGuard",
    "HttpLimits",
    "Phase",
    "Rejection",
    "allowed_hosts",
    "bind_socket",
    "client_of",
    "guarded_protocol",
    "serve_app",
]
