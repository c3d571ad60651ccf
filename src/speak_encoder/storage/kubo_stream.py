"""The bulk read of a Kubo RPC answer (``cat``): one HTTP/1.1 request on its own connection.

``cat`` moves gigabytes; through httpx every 64 KiB of it goes through httpcore's and h11's
Python-level chunk parsing, which kept a download from js-ipfs at about 0.73 of ``curl``'s speed
(``bench/ipfs_bench.py``). Here the answer is read with asyncio's stream reader (256 KiB socket
reads) and the chunked framing is decoded with a few ``readuntil``/``read`` calls per chunk, so the
bytes are copied once and Python runs a handful of steps per chunk, not per event.

The request is deliberately small: ``POST <path>?<query> HTTP/1.1`` with ``Host``, the client's
headers, ``Content-Length: 0`` and ``Connection: close`` (one connection per body, so nothing is
left to reuse when a transfer breaks). Answers are read with ``Content-Length``, chunked
transfer encoding (trailers kept: Kubo reports a failure mid-stream in ``X-Stream-Error``) or up
to the close. Memory stays bounded by the reader's buffer (:data:`READ_BUFFER_BYTES`) whatever
the size a chunk announces.

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

#: Bytes the stream reader buffers before it stops reading the socket (flow control).
READ_BUFFER_BYTES: Final = 1024 * 1024
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


class _DirectStream:
    """A :class:`BodyStream` over one asyncio connection (see the module docstring)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        what: str,
        stall_timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
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

    async def _line(self) -> bytes:
        try:
            async with asyncio.timeout(self._stall):
                line = await self._reader.readuntil(b"\n")
        except TimeoutError:
            raise self._stalled() from None
        except asyncio.IncompleteReadError:
            raise self._dropped("the answer ended inside a line") from None
        except asyncio.LimitOverrunError:
            raise IpfsBadResponse(f"{self._what}: a line longer than the reader's buffer") from None
        except OSError as exc:
            raise self._dropped(exc.strerror or type(exc).__name__) from None
        if len(line) > MAX_LINE_BYTES:
            raise IpfsBadResponse(f"{self._what}: a line of {len(line)} bytes in the answer")
        return line.rstrip(b"\r\n")

    async def _read(self, count: int) -> bytes:
        try:
            async with asyncio.timeout(self._stall):
                data = await self._reader.read(count)
        except TimeoutError:
            raise self._stalled() from None
        except OSError as exc:
            raise self._dropped(exc.strerror or type(exc).__name__) from None
        return data

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
        while data := await self._read(PIECE_BYTES):  # delimited by the close
            self._received += len(data)
            yield data

    async def _counted(self, left: int) -> AsyncIterator[bytes]:
        while left > 0:
            data = await self._read(min(left, PIECE_BYTES))
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
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()


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
    try:
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, limit=READ_BUFFER_BYTES
            )
    except TimeoutError:
        raise IpfsTimeout(f"{what}: no connection within {connect_timeout:g} s") from None
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise IpfsUnavailable(f"{what}: cannot connect to the IPFS node ({reason})") from None
    stream = _DirectStream(reader, writer, what=what, stall_timeout=stall_timeout)
    try:
        netloc = parts.netloc.rpartition("@")[2]  # never send user-info as a Host
        target = (parts.path or "/") + ("?" + urlencode(params) if params else "")
        writer.write(_request_bytes("POST", target, netloc, headers))
        try:
            async with asyncio.timeout(stall_timeout):
                await writer.drain()
        except TimeoutError:
            raise IpfsTimeout(
                f"{what}: the node accepted no request for {stall_timeout:g} s"
            ) from None
        except OSError as exc:
            raise IpfsUnavailable(f"{what}: the connection broke ({exc.strerror})") from None
        await stream.start()
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
