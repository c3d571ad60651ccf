"""The bulk read of a Kubo RPC answer (``cat``): one HTTP/1.1 request on its own connection.

``cat`` moves gigabytes; through httpx every 64 KiB of it goes through httpcore's and h11's
Python-level chunk parsing, which kept a download from js-ipfs at about 0.73 of ``curl``'s speed
(``bench/ipfs_bench.py``); asyncio's stream reader still copied each byte three times (a fresh
``bytes`` per socket read, appended to its buffer, sliced out again) and cost ~1.5× curl's CPU. Here
an :class:`asyncio.BufferedProtocol` has the kernel copy received bytes straight into one fixed
buffer (``recv_into``); the chunked framing is decoded in place and each body piece is copied
out of that buffer once, as the ``bytes`` the caller gets.

The request is deliberately small: ``POST <path>?<query> HTTP/1.1`` with ``Host``, the client's
headers, ``Content-Length: 0`` and ``Connection: close`` (one connection per body, so nothing is
left to reuse when a transfer breaks). Answers are read with ``Content-Length``, chunked
transfer encoding (trailers kept: Kubo reports a failure mid-stream in ``X-Stream-Error``) or up
to the close. Memory stays bounded by the receive buffer (:data:`READ_BUFFER_BYTES`) whatever
the size a chunk announces: when it is full, reading from the socket pauses until the caller has
taken something. (Pieces are copies, not views into the buffer: a caller may keep them.)

Failures are the error tree's: no connection → :class:`~speak_encoder.errors.IpfsUnavailable`,
a connect or stall timeout → :class:`~speak_encoder.errors.IpfsTimeout`, a connection that drops
mid-answer → :class:`~speak_encoder.errors.IpfsUnavailable` too (``cat`` resumes with
``offset``), a malformed answer → :class:`~speak_encoder.errors.IpfsBadResponse`.

When the client was given an httpx transport (tests, a custom stack), :func:`open_via_httpx`
serves the same :class:`BodyStream` interface through httpx instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Final, Protocol
from urllib.parse import urlencode, urlsplit

import httpx

from speak_encoder.errors import IpfsBadResponse, IpfsTimeout, IpfsUnavailable

#: Size of the receive buffer: when it is full, reading from the socket pauses (flow control).
READ_BUFFER_BYTES: Final = 1024 * 1024
#: Unread bytes move to the front of the buffer when less than this is free behind them.
COMPACT_BELOW_BYTES: Final = 64 * 1024
#: Largest piece handed to the caller at once.
PIECE_BYTES: Final = 1024 * 1024
#: Longest status line, header line or chunk-size line accepted.
MAX_LINE_BYTES: Final = 16 * 1024
#: Most header (or trailer) lines accepted.
MAX_HEADERS: Final = 200


class BodyStream(Protocol):
    """One open answer: status, headers, then the body piece by piece."""

    status: int
    headers: dict[str, str]  # lower-case names
    trailers: dict[str, str]  # known once the body ended (chunked answers only)

    @property
    def received(self) -> int:
        """Body bytes received so far (read by stall and rate watchers)."""
        ...

    def pieces(self) -> AsyncIterator[bytes]: ...

    async def read_some(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the body (an error answer's explanation)."""
        ...

    async def aclose(self) -> None: ...


class _Receiver(asyncio.BufferedProtocol):
    """The socket side of a :class:`_DirectStream`: the kernel copies received bytes straight
    into one fixed buffer (``recv_into``), which the reader consumes from the front.

    Flow control: when the buffer is full, reading from the socket pauses until the reader has
    taken something; unread bytes are moved to the front when the free tail runs short. Memory
    is the buffer, whatever the peer sends.
    """

    def __init__(self, size: int) -> None:
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)
        self.start = 0  # first unread byte
        self.end = 0  # one past the last received byte
        self.closed = False  # EOF or connection lost: no more bytes will come
        self.error: OSError | None = None
        self.transport: asyncio.Transport | None = None
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    # --- the event loop's side -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.start == self.end:
            self.start = self.end = 0
        elif len(self.buffer) - self.end < COMPACT_BELOW_BYTES and self.start:
            unread = self.end - self.start
            self.view[:unread] = self.view[self.start : self.end]
            self.start, self.end = 0, unread
        return self.view[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        if self.end == len(self.buffer) and self.start == 0 and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if isinstance(exc, OSError):
            self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the reader's side ---------------------------------------------------------------------

    async def wait(self) -> None:
        """Until more bytes arrived or the connection ended (the caller bounds the time)."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def consumed(self, count: int) -> None:
        self.start += count
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()


class _DirectStream:
    """A :class:`BodyStream` over one connection and its :class:`_Receiver` (see the module
    docstring)."""

    def __init__(self, receiver: _Receiver, *, what: str, stall_timeout: float) -> None:
        self._rx = receiver
        self._what = what
        self._stall = stall_timeout
        self.status = 0
        self.headers: dict[str, str] = {}
        self.trailers: dict[str, str] = {}
        self._received = 0
        self._started = False

    @property
    def received(self) -> int:
        return self._received

    # --- reading with a stall bound ----------------------------------------------------------

    def _stalled(self) -> IpfsTimeout:
        return IpfsTimeout(f"{self._what}: no answer from the node for {self._stall:g} s")

    def _dropped(self, why: str) -> IpfsUnavailable:
        return IpfsUnavailable(
            f"{self._what}: the node dropped the connection after {self._received} body bytes"
            f" ({why})"
        )

    def _broken(self, why: str) -> IpfsUnavailable:
        error = self._rx.error
        return self._dropped(why if error is None else error.strerror or type(error).__name__)

    async def _wait(self) -> None:
        try:
            async with asyncio.timeout(self._stall):
                await self._rx.wait()
        except TimeoutError:
            raise self._stalled() from None

    async def _line(self) -> bytes:
        rx = self._rx
        while True:
            found = rx.buffer.find(b"\n", rx.start, rx.end)
            if found >= 0:
                line = bytes(rx.view[rx.start : found + 1])
                rx.consumed(len(line))
                if len(line) > MAX_LINE_BYTES:
                    too_long = f"{self._what}: a line of {len(line)} bytes in the answer"
                    raise IpfsBadResponse(too_long)
                return line.rstrip(b"\r\n")
            if rx.end - rx.start > MAX_LINE_BYTES:
                raise IpfsBadResponse(
                    f"{self._what}: a line of more than {MAX_LINE_BYTES} bytes in the answer"
                )
            if rx.closed:
                raise self._broken("the answer ended inside a line")
            await self._wait()

    async def _take(self, count: int) -> bytes:
        """At most ``count`` received bytes (empty once the connection ended cleanly)."""
        rx = self._rx
        while rx.start == rx.end:
            if rx.closed:
                if rx.error is not None:
                    raise self._broken("")
                return b""
            await self._wait()
        size = min(count, rx.end - rx.start)
        piece = bytes(rx.view[rx.start : rx.start + size])
        rx.consumed(size)
        return piece

    async def _fields(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = await self._line()
            if not line:
                return fields
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or not name.strip():
                raise IpfsBadResponse(f"{self._what}: malformed header line {line[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            fields[key] = f"{fields[key]}, {value}" if key in fields else value
        raise IpfsBadResponse(f"{self._what}: more than {MAX_HEADERS} header lines")

    async def start(self) -> None:
        """Read the status line and the headers (skipping ``1xx`` answers)."""
        while True:
            line = await self._line()
            parts = line.decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise IpfsBadResponse(f"{self._what}: not an HTTP/1.1 answer ({line[:80]!r})")
            self.status = int(parts[1])
            self.headers = await self._fields()
            if not 100 <= self.status < 200:
                return

    # --- the body ----------------------------------------------------------------------------

    async def pieces(self) -> AsyncIterator[bytes]:
        if self._started:
            raise RuntimeError("the body of an answer is read once")
        self._started = True
        encoding = self.headers.get("transfer-encoding", "").lower()
        if "chunked" in encoding:
            async for piece in self._chunked():
                yield piece
            return
        length = self.headers.get("content-length", "").strip()
        if length:
            if not length.isdigit():
                raise IpfsBadResponse(f"{self._what}: Content-Length {length[:40]!r}")
            async for piece in self._counted(int(length)):
                yield piece
            return
        while data := await self._take(PIECE_BYTES):  # delimited by the close
            self._received += len(data)
            yield data

    async def _counted(self, left: int) -> AsyncIterator[bytes]:
        while left > 0:
            data = await self._take(min(left, PIECE_BYTES))
            if not data:
                raise self._dropped(f"{left} bytes of the body missing")
            left -= len(data)
            self._received += len(data)
            yield data

    async def _chunked(self) -> AsyncIterator[bytes]:
        while True:
            size_line = (await self._line()).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise self._dropped(f"a chunk size {size_line[:40]!r}") from None
            if size < 0:
                raise self._dropped("a negative chunk size")
            if size == 0:
                self.trailers = await self._fields()
                return
            async for piece in self._counted(size):
                yield piece
            if await self._line():
                raise self._dropped("no line end after a chunk")

    async def read_some(self, limit: int) -> bytes:
        body = b""
        try:
            async for piece in self.pieces():
                body += piece
                if len(body) >= limit:
                    break
        except (IpfsUnavailable, IpfsTimeout, IpfsBadResponse):
            pass  # an explanation is a courtesy: what arrived is enough
        return body[:limit]

    async def aclose(self) -> None:
        if self._rx.transport is not None:
            self._rx.transport.close()


def _request_bytes(method: str, target: str, host: str, headers: Mapping[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    sent = {"host", "content-length", "connection", "transfer-encoding"}
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in sent]
    lines += ["Content-Length: 0", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def open_direct(
    url: str,
    params: Mapping[str, str],
    *,
    headers: Mapping[str, str],
    what: str,
    connect_timeout: float,
    stall_timeout: float,
) -> BodyStream:
    """POST ``url?params`` on a connection of its own; the answer's status and headers read."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    context: ssl.SSLContext | None = httpx.create_ssl_context() if secure else None
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout):
            _, receiver = await loop.create_connection(
                lambda: _Receiver(READ_BUFFER_BYTES), host, port, ssl=context
            )
    except TimeoutError:
        raise IpfsTimeout(f"{what}: no connection within {connect_timeout:g} s") from None
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise IpfsUnavailable(f"{what}: cannot connect to the IPFS node ({reason})") from None
    stream = _DirectStream(receiver, what=what, stall_timeout=stall_timeout)
    try:
        netloc = parts.netloc.rpartition("@")[2]  # never send user-info as a Host
        target = (parts.path or "/") + ("?" + urlencode(params) if params else "")
        assert receiver.transport is not None
        receiver.transport.write(_request_bytes("POST", target, netloc, headers))
        await stream.start()  # a node that takes no request stalls here, with the same bound
    except BaseException:
        await stream.aclose()
        raise
    return stream


class _HttpxStream:
    """A :class:`BodyStream` through httpx (when the client was given a transport)."""

    def __init__(self, response: httpx.Response, what: str, stall_timeout: float) -> None:
        self._response = response
        self._what = what
        self._stall = stall_timeout
        self.status = response.status_code
        self.headers = {k.lower(): v for k, v in response.headers.items()}
        self.trailers: dict[str, str] = {}

    @property
    def received(self) -> int:
        return self._response.num_bytes_downloaded

    async def pieces(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.aiter_raw():
                yield data
        except httpx.ReadTimeout:
            stalled = f"{self._what}: no answer from the node for {self._stall:g} s"
            raise IpfsTimeout(stalled) from None
        except httpx.TransportError as exc:
            raise IpfsUnavailable(
                f"{self._what}: the node dropped the connection after {self.received} body "
                f"bytes ({str(exc) or type(exc).__name__})"
            ) from None

    async def read_some(self, limit: int) -> bytes:
        body = b""
        with contextlib.suppress(httpx.HTTPError):
            async for data in self._response.aiter_raw(limit):
                body += data
                if len(body) >= limit:
                    break
        return body[:limit]

    async def aclose(self) -> None:
        await self._response.aclose()


async def open_via_httpx(
    client: httpx.AsyncClient,
    url: str,
    params: Mapping[str, str],
    *,
    what: str,
    connect_timeout: float,
    stall_timeout: float,
) -> BodyStream:
    """The same request as :func:`open_direct`, sent through ``client``."""
    timeout = httpx.Timeout(stall_timeout, connect=connect_timeout)
    request = client.build_request("POST", url, params=dict(params), timeout=timeout)
    try:
        response = await client.send(request, stream=True)
    except httpx.TimeoutException:
        raise IpfsTimeout(f"{what}: no answer within {connect_timeout:g} s") from None
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise IpfsUnavailable(f"{what}: cannot connect to the IPFS node ({reason})") from None
    return _HttpxStream(response, what, stall_timeout)


class opened:  # lower case: used like contextlib's helpers
    """``async with opened(stream) as body:`` closes the answer whatever happens."""

    def __init__(self, stream: BodyStream) -> None:
        self.stream = stream

    async def __aenter__(self) -> BodyStream:
        return self.stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stream.aclose()


__all__ = [
    "PIECE_BYTES",
    "READ_BUFFER_BYTES",
    "BodyStream",
    "open_direct",
    "open_via_httpx",
    "opened",
]
