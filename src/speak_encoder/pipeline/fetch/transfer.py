"""One origin to the end: a body streamed under the stall and rate bounds, resumed when it breaks.

:func:`_from_origin` runs the attempts (``Range``/``offset`` resumes, :data:`RESUME_BACKOFF`
between them); an attempt is an HTTP exchange (:func:`_attempt`) or a ``cat`` through the shared
Kubo client (:func:`_attempt_kubo`), both streamed by :func:`_receive`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping

import httpx

from speak_encoder.backoff import Backoff
from speak_encoder.config import Settings
from speak_encoder.errors import NetworkError, SpeakEncoderError, StallError
from speak_encoder.pipeline.fetch.http_origin import (
    ERROR_BODY_BYTES,
    _accept_response,
    _check_content_headers,
    _html_error,
    _Interrupted,
    _looks_like_html,
    _Origin,
    _raise_for_status,
    _read_error_body,
    _send,
    _stall,
    _Transfer,
    _translate,
)
from speak_encoder.pipeline.fetch.sink import _check_disk, _check_size, _Sink
from speak_encoder.storage.kubo import KuboClient
from speak_encoder.storage.kubo_stream import opened
from speak_encoder.urlguard import UrlGuard

log = logging.getLogger(__name__)


#: Pause before a resume: 0.5 s, doubling per resume up to 5 s (no jitter: one peer, one job).
RESUME_BACKOFF = Backoff(0.5, 5.0, jitter=0.0)


#: A transfer slower than this, averaged over FETCH_STALL_TIMEOUT seconds, is a stall.
MIN_RATE_BYTES_PER_S = 1024


async def _watch_rate(
    received: Callable[[], int], deadline: asyncio.Timeout, window: float
) -> None:
    """Push ``deadline`` forward while at least the minimum rate keeps arriving."""
    loop = asyncio.get_running_loop()
    needed = max(1, int(MIN_RATE_BYTES_PER_S * window))
    tick = min(1.0, window / 4)
    mark = received()
    while True:
        await asyncio.sleep(tick)
        now = received()
        if now - mark >= needed:
            mark = now
            deadline.reschedule(loop.time() + window)


async def _pump(pieces: AsyncIterator[bytes], origin: _Origin, sink: _Sink, chunk: int) -> None:
    """Copy the body to ``sink`` in ``chunk``-sized writes.

    Network reads are gathered in one bounded buffer; when the transfer breaks, what was
    received is still written, so a resume starts at the exact byte the peer stopped at.
    """
    buffer = bytearray()
    try:
        async for data in pieces:
            buffer += data
            if len(buffer) >= chunk:
                _flush(buffer, origin, sink)
    except (httpx.TransportError, NetworkError, asyncio.CancelledError):
        with contextlib.suppress(SpeakEncoderError):  # never mask the break (or a cancel)
            _flush(buffer, origin, sink)
        raise
    _flush(buffer, origin, sink)


def _flush(buffer: bytearray, origin: _Origin, sink: _Sink) -> None:
    if not buffer:
        return
    if sink.size == 0 and _looks_like_html(buffer[:64]):
        raise _html_error(origin, "the body starts with <html>")
    sink.write(buffer, origin.label)
    buffer.clear()


async def _receive(
    pieces: AsyncIterator[bytes],
    received: Callable[[], int],
    origin: _Origin,
    sink: _Sink,
    settings: Settings,
) -> None:
    """Stream the body into ``sink``, bounded by the stall window and minimum rate."""
    window = settings.fetch_stall_timeout
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(loop.time() + window) as deadline:
            watcher = asyncio.create_task(_watch_rate(received, deadline, window))
            try:
                await _pump(pieces, origin, sink, settings.chunk_bytes)
            finally:
                watcher.cancel()
                await asyncio.wait([watcher])
    except TimeoutError:
        raise _Interrupted(_stall(origin.label, window, sink.size)) from None


async def _attempt(
    client: httpx.AsyncClient,
    origin: _Origin,
    sink: _Sink,
    transfer: _Transfer,
    settings: Settings,
    guard: UrlGuard | None = None,
) -> None:
    """One request: status, headers, body. Raises :class:`_Interrupted` when resumable."""
    response = await _send(client, origin, sink, transfer, guard)
    try:
        code = response.status_code
        body = b"" if code in (200, 206) else await _read_error_body(response)
        _start_body(code, body, response.headers, origin, sink, transfer, settings)
        pieces = response.aiter_bytes()
        await _receive(pieces, lambda: response.num_bytes_downloaded, origin, sink, settings)
    finally:
        await response.aclose()
    _check_complete(origin, sink, transfer)


def _start_body(
    code: int,
    body: bytes,
    headers: Mapping[str, str],
    origin: _Origin,
    sink: _Sink,
    transfer: _Transfer,
    settings: Settings,
) -> None:
    """Check an answer's status and headers before its body is read (every origin)."""
    _raise_for_status(code, body, origin, sink.size)
    _check_content_headers(headers, origin)
    _accept_response(code, headers, origin, sink, transfer)
    sink.total = transfer.total
    if transfer.total is not None:
        _check_size(transfer.total, settings, f"the source at {origin.label}")
        _check_disk(sink.path.parent, transfer.total - sink.size, settings)


def _check_complete(origin: _Origin, sink: _Sink, transfer: _Transfer) -> None:
    if transfer.total is not None and sink.size < transfer.total:
        raise _Interrupted(
            NetworkError(
                f"{origin.label} ended the transfer at byte {sink.size} of {transfer.total}"
            )
        )


async def _attempt_kubo(
    kubo: KuboClient, origin: _Origin, sink: _Sink, transfer: _Transfer, settings: Settings
) -> None:
    """One ``cat`` from the local node through the shared :class:`KuboClient` (its fast bulk
    read); every connection failure is resumable (with ``offset``)."""
    assert origin.kubo_cid is not None
    try:
        stream = await kubo.open_cat(
            origin.kubo_cid, offset=sink.size, stall_timeout=settings.fetch_stall_timeout,
            what=origin.label,
        )  # fmt: skip
        async with opened(stream) as answer:
            code = answer.status
            body = b"" if code in (200, 206) else await answer.read_some(ERROR_BODY_BYTES)
            _start_body(code, body, answer.headers, origin, sink, transfer, settings)
            await _receive(answer.pieces(), lambda: answer.received, origin, sink, settings)
    except StallError:  # the shared client's IpfsTimeout: this stage's own words
        stall = _stall(origin.label, settings.fetch_stall_timeout, sink.size)
        raise _Interrupted(stall) from None
    except NetworkError as exc:  # IpfsUnavailable: refused, reset, dropped mid-body
        raise _Interrupted(exc) from None
    _check_complete(origin, sink, transfer)


async def _from_origin(
    client: httpx.AsyncClient,
    kubo: KuboClient | None,
    origin: _Origin,
    sink: _Sink,
    settings: Settings,
    *,
    failover: bool,
    guard: UrlGuard | None = None,
) -> None:
    """Download everything from ``origin``, resuming up to ``settings.fetch_resumes`` times.

    With ``failover`` (other origins are waiting), an attempt that broke before delivering a
    single byte ends this origin at once instead of being retried.
    """
    transfer = _Transfer()
    for attempt in range(settings.fetch_resumes + 1):
        received_before = sink.received
        try:
            try:
                if origin.kubo_cid is not None and kubo is not None:
                    await _attempt_kubo(kubo, origin, sink, transfer, settings)
                else:
                    await _attempt(client, origin, sink, transfer, settings, guard)
                sink.check_cid(origin.label)
                return
            except httpx.HTTPError as exc:
                raise _translate(exc, origin, sink.size, settings.fetch_stall_timeout) from None
        except _Interrupted as broken:
            stuck = failover and sink.received == received_before
            if attempt >= settings.fetch_resumes or stuck:
                raise broken.error from None
            delay = RESUME_BACKOFF.delay(attempt + 1)
            log.info(
                "%s; resuming at byte %d in %.1f s (%d/%d)",
                broken.error.message,
                sink.size,
                delay,
                attempt + 1,
                settings.fetch_resumes,
            )
            await asyncio.sleep(delay)


__all__ = ["MIN_RATE_BYTES_PER_S", "RESUME_BACKOFF"]
