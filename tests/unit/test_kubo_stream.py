"""The bulk reader of Kubo answers (``storage/kubo_stream``) against crafted HTTP answers from a
loopback asyncio server: every framing it accepts, and every broken or hostile answer it must
refuse with an error of the tree (never a hang, never unbounded memory)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from speak_encoder.errors import IpfsBadResponse, IpfsTimeout, IpfsUnavailable
from speak_encoder.storage.kubo_stream import (
    MAX_LINE_BYTES,
    READ_BUFFER_BYTES,
    open_direct,
    opened,
)

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def _read(answer: Answer, *, stall: float = 10.0) -> tuple[int, bytes, dict[str, str]]:
    """Serve ``answer`` to one request on loopback; read it with the direct reader."""
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            await answer(writer)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            await done.wait()  # keep the connection until the client is finished
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        stream = await open_direct(
            f"http://127.0.0.1:{port}/api/v0/cat",
            {"arg": "Qm"},
            headers={},
            what="test cat",
            connect_timeout=5,
            stall_timeout=stall,
        )
        async with opened(stream) as body:
            data = b"".join([piece async for piece in body.pieces()])
            return body.status, data, body.trailers
    finally:
        done.set()
        server.close()
        await server.wait_closed()


def _run(answer: Answer, *, stall: float = 10.0) -> tuple[int, bytes, dict[str, str]]:
    return asyncio.run(asyncio.wait_for(_read(answer, stall=stall), 60))


def _payload(size: int) -> bytes:
    return bytes(range(251)) * (size // 251) + bytes(size % 251)


def test_chunks_larger_than_the_buffer_and_the_trailers_arrive_whole() -> None:
    big = _payload(3 * READ_BUFFER_BYTES + 17)  # one chunk three buffers long
    small = b"tail"

    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Stream-Error\r\n\r\n")
        w.write(b"%x\r\n" % len(big) + big + b"\r\n")
        w.write(b"%x;ext=1\r\n" % len(small) + small + b"\r\n")
        w.write(b"0\r\nX-Stream-Error: disk gone\r\n\r\n")

    status, data, trailers = _run(answer)
    assert (status, data) == (200, big + small)
    assert trailers == {"x-stream-error": "disk gone"}


def test_a_content_length_body_and_a_close_delimited_body() -> None:
    body = _payload(2 * READ_BUFFER_BYTES + 1)

    async def counted(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    async def until_close(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\n\r\n" + body)
        await w.drain()
        w.close()

    assert _run(counted)[1] == body
    assert _run(until_close)[1] == body


def test_a_1xx_answer_is_skipped() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        w.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno")

    assert _run(answer)[:2] == (404, b"no")


def test_a_body_cut_short_is_a_dropped_connection() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await w.drain()
        w.close()

    with pytest.raises(IpfsUnavailable, match="after 10 body bytes"):
        _run(answer)


def test_a_malformed_chunk_size_is_refused() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")

    with pytest.raises(IpfsUnavailable, match="chunk size"):
        _run(answer)


def test_an_endless_header_line_is_refused_without_reading_it_all() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nX-Junk: " + b"a" * (4 * READ_BUFFER_BYTES))

    with pytest.raises(IpfsBadResponse, match=f"more than {MAX_LINE_BYTES} bytes"):
        _run(answer)


def test_not_http_is_a_bad_response() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"SSH-2.0-OpenSSH_9.2\r\n")

    with pytest.raises(IpfsBadResponse, match=r"not an HTTP/1\.1 answer"):
        _run(answer)


def test_a_silent_node_is_a_stall_after_the_bound() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")

    with pytest.raises(IpfsTimeout, match=r"no answer from the node for 0\.3 s"):
        _run(answer, stall=0.3)
