"""The fetch stage: bring a source to local disk, streaming, bounded, resumable.

``file`` sources are not copied (only checked and hashed). ``http`` sources are streamed into
``<job_dir>/source[.ext]`` one chunk at a time. ``ipfs`` sources are read from the local Kubo
node (``cat``) when it answers, then from each gateway in turn.

Every httpx failure is translated here into the project's error tree
(:mod:`speak_encoder.errors`); messages never contain a URL's password or query string.

**URLs from strangers** (issue 11): a job from a remote source passes a
:class:`~speak_encoder.urlguard.UrlGuard`. Redirects are then followed here, not by httpx, at
most :data:`MAX_REDIRECTS`: every hop of a job's own URL (an ``http(s)`` source, the gateway of a
``…/ipfs/CID`` URL) — and every redirect of a configured gateway — is checked and *pinned* (the
request goes to the address that was checked; Host and TLS name stay the host's) and no
connection is ever reused for another host. A refused hop never gets a request, and the job
fails with one message whatever lies behind it (:data:`REFUSED_HOP`), so the error a gateway
receives cannot tell a closed port from a 500, a 401 or a success.

**IPFS bytes from a gateway** are hashed into the CID they must have while they are written
(:class:`~speak_encoder.storage.unixfs.FileImporter`, ``ipfs add`` defaults) when
``IPFS_VERIFY_SOURCES`` is on: bytes that are not that CID are deleted and the next origin is
tried; if none delivers the CID the job fails for good (:class:`~speak_encoder.errors.
CidMismatch`). The local Kubo node verifies its own blocks.

A transfer that drops (connection reset, incomplete body, stall) is resumed with
``Range: bytes=N-`` (Kubo: ``offset=N``) up to ``FETCH_RESUMES`` times. A *stall* is either a
network read that waits ``FETCH_STALL_TIMEOUT`` seconds for a byte (httpx's read timeout) or a
transfer averaging less than :data:`MIN_RATE_BYTES_PER_S` over that window (a trickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from speak_encoder import USER_AGENT
from speak_encoder.backoff import Backoff
from speak_encoder.config import Settings
from speak_encoder.errors import (
    CidMismatch,
    ConfigError,
    InsufficientDisk,
    NetworkError,
    SourceNotFound,
    SourceRejected,
    SourceTooLarge,
    SpeakEncoderError,
    StallError,
    UnsafeUrl,
    UpstreamError,
)
from speak_encoder.http_errors import (
    Failure,
    StatusClass,
    failure_of,
    retryable_status,
    status_class,
)
from speak_encoder.pipeline.source import SourceRef
from speak_encoder.private_files import open_private
from speak_encoder.storage.cid import DAG_PB, RAW, SHA2_256, parse_cid
from speak_encoder.storage.kubo import KuboClient, api_base_url
from speak_encoder.storage.kubo_stream import opened
from speak_encoder.storage.unixfs import FileImporter
from speak_encoder.urlguard import PinnedUrl, UrlGuard

log = logging.getLogger(__name__)

#: Seconds between two progress callbacks (the final one is always sent).
PROGRESS_INTERVAL_S = 0.25
#: Free space is checked again after every this many bytes written.
DISK_RECHECK_BYTES = 64 * 1024 * 1024
#: Pause before a resume: 0.5 s, doubling per resume up to 5 s (no jitter: one peer, one job).
RESUME_BACKOFF = Backoff(0.5, 5.0, jitter=0.0)
#: Redirects followed per request.
MAX_REDIRECTS = 5
#: Status codes of a redirect this stage follows (with a Location header).
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
#: The one message of a refused hop: it never says what the address is or what it would answer.
REFUSED_HOP = (
    "the source URL, or a redirect it sent, leads to an address this node does not fetch from "
    "(loopback, private, link-local or its own IPFS RPC): refused"
)
#: The one message when a hop's host name does not resolve (retryable: DNS may heal).
UNRESOLVED_HOP = "cannot resolve the host of the source (or of a redirect it sent)"
#: Connect timeout for the local Kubo node: when it is down, move on to the gateways quickly.
KUBO_CONNECT_TIMEOUT_S = 2.0
#: A transfer slower than this, averaged over FETCH_STALL_TIMEOUT seconds, is a stall.
MIN_RATE_BYTES_PER_S = 1024
#: Bytes read per thread hop when hashing a local file.
HASH_SLICE_BYTES = 16 * 1024 * 1024
#: File name (without extension) of a downloaded source inside the job folder.
SOURCE_BASENAME = "source"
#: Label of the local Kubo node in messages and progress.
KUBO_LABEL = "local kubo"
#: Bytes of an error response read to explain it (Kubo's JSON error, a status page).
ERROR_BODY_BYTES = 4096

_MIB = 1024 * 1024
_SAFE_EXT = re.compile(r"[a-z0-9]{1,5}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_HTML_STARTS = (b"<!doctype html", b"<html")
_COMPRESSED = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd", "compress"})
_KUBO_NOT_FOUND = ("not found", "could not find", "no link named")


@dataclass(frozen=True, slots=True)
class FetchProgress:
    """A progress report of the fetch stage (``total_bytes`` when the origin announced it)."""

    stage: str
    done_bytes: int
    total_bytes: int | None
    origin: str


@dataclass(frozen=True, slots=True)
class FetchedSource:
    """The source on local disk: its path, size, sha256 (hex) and where it came from."""

    path: Path
    size: int
    sha256: str
    origin: str


ProgressCallback = Callable[[FetchProgress], None]


# --- small pure helpers -------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` without userinfo, query string and fragment (safe for logs and messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _mb(size: int) -> str:
    return f"{size / _MIB:.1f}"


def kubo_api_url(addr: str) -> str | None:
    """Base URL of a Kubo RPC API given as a multiaddr or an http(s) URL (``None``: unusable).

    The parsing is :func:`speak_encoder.storage.kubo.api_base_url`'s (the one multiaddr parser).
    """
    if not addr.strip():
        return None
    try:
        return api_base_url(addr)
    except ConfigError:
        return None


def _download_path(ref: SourceRef, job_dir: Path) -> Path:
    suffix = ""
    if ref.kind == "http":
        ext = PurePosixPath(urlsplit(ref.value).path).suffix.lstrip(".").lower()
        if _SAFE_EXT.fullmatch(ext):
            suffix = "." + ext
    return job_dir / (SOURCE_BASENAME + suffix)


def _looks_like_html(chunk: bytes | bytearray) -> bool:
    return chunk.lstrip()[:16].lower().startswith(_HTML_STARTS)


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """``(start, total)`` of a ``Content-Range: bytes a-b/total`` header."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    total = match.group(3)
    return int(match.group(1)), (None if total == "*" else int(total))


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _kubo_message(body: bytes) -> str:
    """The ``Message`` of a Kubo JSON error body, else the start of the body as text."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("Message"), str):
        return str(data["Message"])[:300]
    return body[:200].decode("utf-8", "replace").strip() or "no error message"


async def _read_error_body(response: httpx.Response) -> bytes:
    """At most :data:`ERROR_BODY_BYTES` of an error response (never the whole body)."""
    body = b""
    async for data in response.aiter_bytes(ERROR_BODY_BYTES):
        body += data
        if len(body) >= ERROR_BODY_BYTES:
            break
    return body[:ERROR_BODY_BYTES]


# --- origins and state --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Origin:
    """One place the bytes can come from."""

    label: str
    url: str
    kubo_cid: str | None = None  # set for the local Kubo node's cat
    #: The URL came with the job: its first hop is checked too (redirects always are).
    from_job: bool = False
    #: Bytes must be this CID (an IPFS source from a gateway).
    verify_cid: str | None = None


@dataclass(slots=True)
class _Transfer:
    """What the current origin told us so far (kept across resumes)."""

    total: int | None = None
    validator: str | None = None  # ETag or Last-Modified, for If-Range


class _Interrupted(Exception):
    """A transfer broke in a way a resume can repair; ``error`` is raised if it cannot."""

    def __init__(self, error: NetworkError) -> None:
        super().__init__(error.message)
        self.error = error


class _Progress:
    """Throttles the caller's progress callback."""

    def __init__(self, callback: ProgressCallback | None, origin: str) -> None:
        self._callback = callback
        self.origin = origin
        self._last = 0.0

    def update(self, done: int, total: int | None, *, force: bool = False) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_INTERVAL_S:
            return
        self._last = now
        self._callback(FetchProgress("fetch", done, total, self.origin))


def _check_disk(where: Path, needed: int, settings: Settings) -> None:
    free = shutil.disk_usage(where).free
    if free - needed < settings.disk_reserve_bytes:
        raise InsufficientDisk(
            f"not enough disk space in {where}: {_mb(free)} MB free, the source needs "
            f"{_mb(needed)} MB more and {settings.disk_reserve_mb} MB must stay free "
            "(DISK_RESERVE_MB)"
        )


def _check_size(size: int, settings: Settings, what: str) -> None:
    if size > settings.max_source_bytes:
        raise SourceTooLarge(
            f"{what} is {_mb(size)} MB, more than the maximum of {_mb(settings.max_source_bytes)}"
            " MB (MAX_SOURCE_MB)"
        )


def _importer_for(cid: str) -> FileImporter:
    """The importer whose root must be ``cid`` (``ipfs add`` defaults for its version)."""
    parsed = parse_cid(cid)
    if parsed.multihash[:1] != bytes([SHA2_256]) or parsed.codec not in (DAG_PB, RAW):
        raise CidMismatch(
            f"CID {cid} is not a sha2-256 dag-pb/raw CID: its bytes cannot be verified "
            "(IPFS_VERIFY_SOURCES)",
            expected=cid,
            got="",
        )
    return FileImporter(cid_version=parsed.version)


class _Sink:
    """The partial download: one file opened once, the running sha256 and the byte count, and
    the CID the bytes must have (:meth:`expect`)."""

    def __init__(self, path: Path, settings: Settings, progress: _Progress) -> None:
        self.path = path
        self.size = 0
        self.received = 0  # bytes written over all attempts (never reset): progress
        self.total: int | None = None
        self._settings = settings
        self._progress = progress
        self._digest = hashlib.sha256()
        self._next_disk_check = DISK_RECHECK_BYTES
        self._cid: str | None = None
        self._importer: FileImporter | None = None
        # 0600 whatever the umask, never through a symlink; closed in close()
        self._file: IO[bytes] = os.fdopen(open_private(path), "wb")

    def expect(self, cid: str | None) -> None:
        """From the next :meth:`reset` on, the bytes must form ``cid`` (``None``: no check)."""
        self._cid = cid

    def reset(self) -> None:
        """Start again from byte 0 (the origin cannot resume, or a new origin)."""
        self._file.seek(0)
        self._file.truncate()
        self._digest = hashlib.sha256()
        self._importer = _importer_for(self._cid) if self._cid is not None else None
        self.size = 0
        self._next_disk_check = DISK_RECHECK_BYTES

    def check_cid(self, label: str) -> None:
        """Refuse the bytes written so far unless they are the expected CID."""
        if self._importer is None or self._cid is None:
            return
        root = self._importer.finish().cid
        self._importer = None
        got = str(root)
        if root != parse_cid(self._cid):
            raise CidMismatch(
                f"{label} sent bytes that are not CID {self._cid} (they hash to {got}): refused",
                expected=self._cid,
                got=got,
            )

    def write(self, chunk: bytes | bytearray, label: str) -> None:
        new_size = self.size + len(chunk)
        if self.total is not None and new_size > self.total:
            raise SourceRejected(
                f"{label} sent more bytes than the {self.total} it announced: refusing the download"
            )
        _check_size(new_size, self._settings, f"the download from {label}")
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise _os_error(exc, self.path) from None
        self._digest.update(chunk)
        if self._importer is not None:
            self._importer.update(chunk)
        self.size = new_size
        self.received += len(chunk)
        if self.size >= self._next_disk_check:
            self._next_disk_check += DISK_RECHECK_BYTES
            remaining = max((self.total or 0) - self.size, 0)
            _check_disk(self.path.parent, remaining, self._settings)
        self._progress.update(self.size, self.total)

    def finish(self) -> str:
        try:
            self._file.flush()
        except OSError as exc:
            raise _os_error(exc, self.path) from None
        self._progress.update(self.size, self.total, force=True)
        return self._digest.hexdigest()

    def close(self) -> None:
        self._file.close()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def _os_error(exc: OSError, path: Path) -> SpeakEncoderError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientDisk(f"the disk holding {path.parent} is full while downloading")
    return NetworkError(f"cannot write the download to {path}: {exc.strerror or exc}")


# --- HTTP status and exception translation ------------------------------------------------


def _raise_for_status(code: int, body: bytes, origin: _Origin, have: int) -> None:
    if code in (200, 206):
        return
    if origin.kubo_cid is not None and code == 500:
        message = _kubo_message(body)
        if any(hint in message.lower() for hint in _KUBO_NOT_FOUND):
            raise SourceNotFound(f"{origin.label}: {message}")
        if "directory" in message.lower():
            raise SourceRejected(f"{origin.label}: the CID is a folder, not a video ({message})")
        raise UpstreamError(f"{origin.label} failed: {message}")
    where = f"{origin.label} answered HTTP {code}"
    kind = status_class(code)
    if kind is StatusClass.NOT_FOUND:
        raise SourceNotFound(f"{where}: the source does not exist there")
    if kind is StatusClass.RANGE:
        raise SourceRejected(
            f"{where} (range not satisfiable) when resuming at byte {have}: the server's "
            "file is shorter than it announced"
        )
    if retryable_status(code):
        raise UpstreamError(f"{where}: the server is overloaded or failing, try again later")
    if 400 <= code < 500:
        raise SourceRejected(f"{where}: the server refused the request")
    raise SourceRejected(f"{where}, not a downloadable file")


def _html_error(origin: _Origin, why: str) -> SourceRejected:
    hint = " (is the CID a folder?)" if origin.kubo_cid or "/ipfs/" in origin.url else ""
    return SourceRejected(f"{origin.label} returned an HTML page, not a video ({why}){hint}")


def _translate(exc: httpx.HTTPError, origin: _Origin, have: int, stall_s: float) -> Exception:
    """Map an httpx exception to the error tree (:class:`_Interrupted` = resumable)."""
    label = origin.label
    failure = failure_of(exc)
    if failure is Failure.CONNECT_TIMEOUT:
        return NetworkError(f"could not connect to {label}: timed out")
    if failure is Failure.READ_TIMEOUT:
        return _Interrupted(_stall(label, stall_s, have))
    if failure is Failure.CONNECT:
        return NetworkError(f"could not connect to {label}: {_short(exc, origin)}")
    if failure in (Failure.REMOTE_PROTOCOL, Failure.READ):
        why = _short(exc, origin)
        dropped = f"{label} dropped the connection after {have} bytes ({why})"
        return _Interrupted(NetworkError(dropped))
    if failure is Failure.TOO_MANY_REDIRECTS:
        return SourceRejected(f"{label} redirected more than {MAX_REDIRECTS} times")
    if failure in (Failure.UNSUPPORTED_PROTOCOL, Failure.INVALID_URL):
        return SourceRejected(f"{label} redirected to an unsupported URL")
    if failure is Failure.DECODING:
        return SourceRejected(f"{label} sent a body that cannot be decoded")
    detail = f"{type(exc).__name__}: {_short(exc, origin)}"
    return NetworkError(f"download from {label} failed: {detail}")


def _short(exc: BaseException, origin: _Origin) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace(origin.url, origin.label)[:200]


def _stall(label: str, seconds: float, have: int) -> StallError:
    return StallError(
        f"{label} sent nothing (or almost nothing) for {seconds:g} s "
        f"(FETCH_STALL_TIMEOUT) after {have} bytes"
    )


# --- one request --------------------------------------------------------------------------


def _build_request(
    client: httpx.AsyncClient,
    origin: _Origin,
    have: int,
    transfer: _Transfer,
    *,
    url: str | None = None,
    pinned: PinnedUrl | None = None,
) -> httpx.Request:
    """The request of one hop: ``url`` (default the origin's), sent to ``pinned``'s checked
    address when given (Host header and TLS name of the original host)."""
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if transfer.validator:
            headers["If-Range"] = transfer.validator
    if pinned is None:
        return client.build_request("GET", url or origin.url, headers=headers)
    headers["Host"] = pinned.host_header
    return client.build_request(
        "GET", pinned.connect_url, headers=headers, extensions={"sni_hostname": pinned.host}
    )


async def _pin_hop(guard: UrlGuard, url: str, origin: _Origin) -> PinnedUrl:
    """Check ``url`` and pin its address; refusals all read :data:`REFUSED_HOP`."""
    try:
        return await guard.pin(url, what="source")
    except UnsafeUrl as exc:
        log.warning("%s: a hop of the download is refused (%s)", origin.label, exc.message)
        raise UnsafeUrl(REFUSED_HOP) from None
    except NetworkError as exc:
        log.info("%s: a hop of the download does not resolve (%s)", origin.label, exc.message)
        raise NetworkError(UNRESOLVED_HOP) from None


async def _send(
    client: httpx.AsyncClient,
    origin: _Origin,
    sink: _Sink,
    transfer: _Transfer,
    guard: UrlGuard | None,
) -> httpx.Response:
    """Send the request, following up to :data:`MAX_REDIRECTS` redirects, each hop checked
    and pinned by ``guard`` (module docstring); returns the final (streaming) response."""
    url = origin.url
    for hop in range(MAX_REDIRECTS + 1):
        pinned = None
        if guard is not None and (hop or origin.from_job):
            pinned = await _pin_hop(guard, url, origin)
        request = _build_request(client, origin, sink.size, transfer, url=url, pinned=pinned)
        response = await client.send(request, stream=True)
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_CODES or not location:
            return response
        await response.aclose()
        try:
            url = urljoin(url, location.strip())
        except ValueError:
            raise SourceRejected(f"{origin.label} redirected to an unusable URL") from None
        if urlsplit(url).scheme not in ("http", "https"):
            raise SourceRejected(f"{origin.label} redirected to an unsupported URL")
    raise SourceRejected(f"{origin.label} redirected more than {MAX_REDIRECTS} times")


def _check_content_headers(headers: Mapping[str, str], origin: _Origin) -> None:
    content_type = headers.get("content-type", "").lower()
    if content_type.startswith("text/html"):
        raise _html_error(origin, f"Content-Type {content_type.split(';')[0]}")
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding in _COMPRESSED:
        raise SourceRejected(
            f"{origin.label} sent a {encoding}-compressed body although none was requested"
        )


def _validator(headers: Mapping[str, str]) -> str | None:
    etag = str(headers.get("etag", ""))
    if etag and not etag.startswith("W/"):
        return etag
    return str(headers.get("last-modified", "")) or None


def _accept_response(
    status: int, headers: Mapping[str, str], origin: _Origin, sink: _Sink, transfer: _Transfer
) -> None:
    """Decide append/restart from the status and headers; learn the total size."""
    if status == 206:
        parsed = _parse_content_range(headers.get("content-range"))
        if parsed is None or parsed[0] != sink.size:
            raise UpstreamError(
                f"{origin.label} answered a resume at byte {sink.size} with a different range "
                f"({headers.get('content-range', 'no Content-Range')})"
            )
        transfer.total = parsed[1] if parsed[1] is not None else transfer.total
        transfer.validator = transfer.validator or _validator(headers)
        return
    if origin.kubo_cid is not None:
        remaining = _int_header(headers, "x-content-length")
        transfer.total = sink.size + remaining if remaining is not None else None
        return
    if sink.size:
        log.info("%s ignores Range requests: starting again from byte 0", origin.label)
        sink.reset()
    transfer.total = _int_header(headers, "content-length")
    transfer.validator = _validator(headers)


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


# --- origins of a reference ---------------------------------------------------------------


def _origins(ref: SourceRef, settings: Settings) -> list[_Origin]:
    if ref.kind == "http":
        return [_Origin(redact_url(ref.value), ref.value, from_job=True)]
    origins: list[_Origin] = []
    api = kubo_api_url(settings.ipfs_api_addr)
    if api is not None:
        origins.append(_Origin(KUBO_LABEL, api, kubo_cid=ref.value))
    elif settings.ipfs_api_addr.strip():
        log.warning(
            "IPFS_API_ADDR %r is not a usable multiaddr or URL: skipping the local node",
            settings.ipfs_api_addr,
        )
    own = ref.gateway.rstrip("/") if ref.gateway else None
    gateways = [own] if own else []
    gateways += [gw for gw in settings.gateway_list if gw not in gateways]
    verify = ref.value if settings.ipfs_verify_sources else None
    origins += [
        _Origin(redact_url(gw), f"{gw}/ipfs/{ref.value}", from_job=gw == own, verify_cid=verify)
        for gw in gateways
    ]
    return origins


def _all_failed(ref: SourceRef, failures: list[tuple[_Origin, SpeakEncoderError]]) -> Exception:
    summary = "; ".join(f"{origin.label}: {err.message}" for origin, err in failures)
    if not failures:
        return SourceNotFound(f"no IPFS origin configured to fetch {ref.value}")
    if all(isinstance(err, SourceNotFound) for _, err in failures):
        return SourceNotFound(f"CID {ref.value} was not found on any origin ({summary})")
    retryable = [err for _, err in failures if err.retryable]
    last = retryable[-1] if retryable else failures[-1][1]
    message = f"could not fetch {ref.value} from any origin ({summary})"
    if isinstance(last, CidMismatch):
        return CidMismatch(message, expected=last.expected, got=last.got)
    return type(last)(message)


def _http_client(
    timeout: httpx.Timeout, transport: httpx.AsyncBaseTransport | None, guard: UrlGuard | None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,  # followed by _send, each hop checked
        timeout=timeout,
        transport=transport,
        trust_env=False,
        # A pinned connection is made for one host name: never reused for another.
        limits=httpx.Limits(max_keepalive_connections=0 if guard is not None else None),
    )


async def _download(
    ref: SourceRef,
    sink: _Sink,
    settings: Settings,
    progress: _Progress,
    transport: httpx.AsyncBaseTransport | None,
    guard: UrlGuard | None = None,
) -> str:
    """Fill ``sink`` from the first origin that works; returns that origin's label."""
    timeout = httpx.Timeout(
        connect=settings.fetch_connect_timeout,
        read=settings.fetch_stall_timeout,
        write=settings.fetch_stall_timeout,
        pool=settings.fetch_connect_timeout,
    )
    failures: list[tuple[_Origin, SpeakEncoderError]] = []
    origins = _origins(ref, settings)
    kubo_url = next((origin.url for origin in origins if origin.kubo_cid is not None), None)
    async with contextlib.AsyncExitStack() as stack:
        kubo = None
        if kubo_url is not None:
            kubo = await stack.enter_async_context(
                KuboClient(
                    kubo_url,
                    connect_timeout=min(KUBO_CONNECT_TIMEOUT_S, settings.fetch_connect_timeout),
                    transport=transport,
                )
            )
        client = await stack.enter_async_context(_http_client(timeout, transport, guard))
        for origin in origins:
            progress.origin = origin.label
            sink.expect(origin.verify_cid)
            sink.reset()
            try:
                await _from_origin(
                    client, kubo, origin, sink, settings, failover=ref.kind == "ipfs", guard=guard
                )
                return origin.label
            except (SourceTooLarge, InsufficientDisk):
                raise
            except SpeakEncoderError as exc:
                if ref.kind == "http":
                    raise
                log_at = logging.DEBUG if origin.kubo_cid else logging.INFO
                log.log(log_at, "%s could not serve %s: %s", origin.label, ref.value, exc)
                failures.append((origin, exc))
    raise _all_failed(ref, failures)


# --- local files --------------------------------------------------------------------------


def _hash_slice(handle: IO[bytes], digest: hashlib._Hash, chunk: int) -> int:
    """Hash up to :data:`HASH_SLICE_BYTES` more of ``handle`` (in a worker thread)."""
    done = 0
    while done < HASH_SLICE_BYTES:
        data = handle.read(chunk)
        if not data:
            break
        digest.update(data)
        done += len(data)
    return done


def _stat_local(path: Path, settings: Settings) -> int:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SourceNotFound(f"source file not found: {path}") from None
    except PermissionError:
        raise SourceRejected(f"source file is not readable (permission denied): {path}") from None
    except OSError as exc:
        raise SourceRejected(f"cannot read the source file {path}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SourceRejected(f"the source is a directory, not a video file: {path}")
    if not stat.S_ISREG(info.st_mode):
        raise SourceRejected(f"the source is not a regular file: {path}")
    if info.st_size == 0:
        raise SourceRejected(f"source file is empty (0 bytes): {path}")
    _check_size(info.st_size, settings, f"the source file {path.name}")
    return info.st_size


async def _local_file(path: Path, settings: Settings, progress: _Progress) -> FetchedSource:
    expected = _stat_local(path, settings)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while done := await asyncio.to_thread(
                _hash_slice, handle, digest, settings.chunk_bytes
            ):
                size += done
                progress.update(size, expected)
    except PermissionError:
        raise SourceRejected(f"source file is not readable (permission denied): {path}") from None
    except OSError as exc:
        raise SourceRejected(f"cannot read the source file {path}: {exc.strerror}") from None
    if size == 0:
        raise SourceRejected(f"source file is empty (0 bytes): {path}")
    _check_size(size, settings, f"the source file {path.name}")
    progress.update(size, expected, force=True)
    return FetchedSource(path, size, digest.hexdigest(), progress.origin)


# --- the stage ----------------------------------------------------------------------------


async def fetch_source(
    ref: SourceRef,
    job_dir: Path,
    settings: Settings,
    *,
    on_progress: ProgressCallback | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    guard: UrlGuard | None = None,
) -> FetchedSource:
    """Make ``ref`` available on local disk and return its path, size and sha256.

    Local files are used in place. Downloads go to ``job_dir/source[.ext]``; on any failure
    (or cancellation) the partial file is removed. Raises the most specific
    :class:`~speak_encoder.errors.SpeakEncoderError`. ``guard`` checks and pins every hop of a
    URL that came with the job (a remote job source; ``None``: the operator's own reference).
    """
    if ref.kind == "file":
        return await _local_file(Path(ref.value), settings, _Progress(on_progress, "local file"))
    job_dir.mkdir(parents=True, exist_ok=True)
    _check_disk(job_dir, 0, settings)
    progress = _Progress(on_progress, "")
    path = _download_path(ref, job_dir)
    try:
        sink = _Sink(path, settings, progress)
    except OSError as exc:
        raise _os_error(exc, path) from None
    try:
        origin = await _download(ref, sink, settings, progress, transport, guard)
        if sink.size == 0:
            raise SourceRejected(f"{origin} sent an empty file (0 bytes)")
        sha256 = sink.finish()
    except BaseException:
        sink.discard()
        raise
    sink.close()
    log.info("fetched %s: %s MB from %s", ref.display_name, _mb(sink.size), origin)
    return FetchedSource(sink.path, sink.size, sha256, origin)


__all__ = [
    "FetchProgress",
    "FetchedSource",
    "ProgressCallback",
    "fetch_source",
    "kubo_api_url",
    "redact_url",
]
