"""One HTTP exchange with an origin of the fetch stage: the request, its redirects, its answer.

Redirects are followed here, each hop checked and pinned by the :class:`~speak_encoder.urlguard.
UrlGuard` (:func:`_send`); statuses, headers and httpx exceptions are translated into the error
tree (:func:`_raise_for_status`, :func:`_translate`, through :mod:`speak_encoder.http_errors`);
:class:`_Interrupted` marks a break a resume can repair.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from speak_encoder.errors import (
    NetworkError,
    SourceNotFound,
    SourceRejected,
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
from speak_encoder.pipeline.fetch.sink import _Sink
from speak_encoder.urlguard import PinnedUrl, UrlGuard

log = logging.getLogger(__name__)


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


#: Bytes of an error response read to explain it (Kubo's JSON error, a status page).
ERROR_BODY_BYTES = 4096


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


_HTML_STARTS = (b"<!doctype html", b"<html")


_COMPRESSED = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd", "compress"})


_KUBO_NOT_FOUND = ("not found", "could not find", "no link named")


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


__all__ = [
    "ERROR_BODY_BYTES",
    "MAX_REDIRECTS",
    "REDIRECT_CODES",
    "REFUSED_HOP",
    "UNRESOLVED_HOP",
    "redact_url",
]
