"""Async Kubo RPC client (``/api/v0/…``, always POST), streaming both ways.

* ``add_folder`` uploads a folder exactly as docs/protocols.md §6 says: ``add?wrap-with-directory=
  true&pin=true&cid-version=0``, multipart/form-data with one part per file (``name="file"``,
  ``filename="<relative path, URL-encoded>"``, ``application/octet-stream``). The body is
  produced here as an async byte iterator: files are opened **one at a time**, read in
  ``chunk_bytes`` pieces, and the exact ``Content-Length`` is computed beforehand (proxies in
  front of hot nodes want it). Memory is bounded whatever the folder size.
* ``cat`` streams to a file, resumable with ``offset``, abandoned after ``stall_timeout``
  seconds without a byte. Its body is read by :mod:`~speak_encoder.storage.kubo_stream` (one
  HTTP/1.1 connection per body, chunked framing decoded per chunk, not per 64 KiB event):
  :meth:`KuboClient.open_cat` gives the open answer to callers that write it themselves (the
  fetch stage).
* Three separate timeouts: ``connect``; ``upload_stall`` (the peer accepts no byte of the body
  for that long); ``processing`` (no answer once the body is sent: DAG writes, pinning).
* Errors are translated at this boundary (see :mod:`speak_encoder.errors`): a Kubo
  error JSON (HTTP 500 ``{"Message","Code","Type"}``) → :class:`IpfsApiError` (or
  :class:`IpfsTimeout` when the node says it timed out), 4xx → :class:`IpfsRequestRejected`,
  an HTML page or broken JSON → :class:`IpfsBadResponse`, connection problems →
  :class:`IpfsUnavailable` / :class:`IpfsTimeout`. ``pin_ls`` answers ``False`` for
  "not pinned"; it does not raise.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from speak_encoder import USER_AGENT
from speak_encoder.config import Settings
from speak_encoder.errors import (
    CidMismatch,
    ConfigError,
    IpfsApiError,
    IpfsBadResponse,
    IpfsRequestRejected,
    IpfsTimeout,
    IpfsUnavailable,
)
from speak_encoder.http_errors import TIMEOUTS, Failure, failure_of, retryable_status
from speak_encoder.storage.kubo_stream import BodyStream, open_direct, open_via_httpx, opened
from speak_encoder.storage.unixfs import walk_files

#: ``on_progress(bytes_done, bytes_total)`` during uploads and downloads.
ProgressCallback = Callable[[int, int], None]

#: Bytes per read of a file being uploaded / per write of a download.
DEFAULT_IO_CHUNK = 1024 * 1024
#: Seconds of a small RPC call (id, version, pin/ls …) once connected.
DEFAULT_CALL_TIMEOUT_S = 60.0
#: Bytes of an error answer read to explain it (a Kubo error JSON, a proxy page).
ERROR_BODY_BYTES = 64 * 1024
#: Messages by which Kubo / js-ipfs say a request ran out of time.
_TIMEOUT_MARKERS = ("request timed out", "context deadline exceeded", "timeout")


def api_base_url(address: str) -> str:
    """``http://host:port[/prefix]`` from a multiaddr (``/ip4/…/tcp/5001``) or a URL.

    A URL that already names an RPC route (``…/api/v0/add`` as the traffic director gives it)
    is cut back to the part before ``/api/v0``.
    """
    address = address.strip()
    if address.startswith("/"):
        parts = address.strip("/").split("/")
        if len(parts) < 4 or parts[0] not in {"ip4", "ip6", "dns", "dns4", "dns6"}:
            raise ConfigError(f"IPFS API address {address!r} is not a usable multiaddr")
        host, port = parts[1], parts[3]
        if parts[2] != "tcp" or not port.isdigit():
            raise ConfigError(f"IPFS API address {address!r} must be …/tcp/<port>")
        scheme = "https" if "https" in parts[4:] else "http"
        if parts[0] == "ip6":
            host = f"[{host}]"
        return f"{scheme}://{host}:{port}"
    split = urlsplit(address)
    if split.scheme not in {"http", "https"} or not split.netloc:
        raise ConfigError(f"IPFS API address {address!r} is neither a multiaddr nor a URL")
    path = split.path
    if "/api/v0" in path:
        path = path[: path.index("/api/v0")]
    return f"{split.scheme}://{split.netloc}{path.rstrip('/')}"


@dataclass(frozen=True, slots=True)
class AddedEntry:
    """One NDJSON line of an ``add`` answer."""

    name: str
    cid: str
    size: int


@dataclass(frozen=True, slots=True)
class AddResult:
    """The root of a wrapped folder upload and the number of entries the node reported."""

    root: str
    size: int
    entries: int
    bytes_sent: int


@dataclass(frozen=True, slots=True)
class LsLink:
    name: str
    cid: str
    size: int
    type: int


# --- multipart body --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Part:
    path: Path
    header: bytes
    size: int


class MultipartFolder:
    """The multipart/form-data body of a folder upload, streamed one file at a time."""

    def __init__(self, folder: Path, *, chunk_bytes: int = DEFAULT_IO_CHUNK) -> None:
        self.folder = folder
        self.chunk_bytes = chunk_bytes
        self.boundary = "speak-encoder-" + secrets.token_hex(16)
        self._parts: list[_Part] = []
        for rel, path in walk_files(folder):
            header = (
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{quote(rel, safe="")}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode("ascii")
            self._parts.append(_Part(path, header, path.stat().st_size))
        self._closing = f"--{self.boundary}--\r\n".encode("ascii")
        self.content_length = sum(len(part.header) + part.size + 2 for part in self._parts) + len(
            self._closing
        )

    @property
    def files(self) -> int:
        return len(self._parts)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    async def stream(self, on_progress: ProgressCallback | None = None) -> AsyncIterator[bytes]:
        """Yield the body; exactly one file is open at any moment."""
        sent = 0
        total = self.content_length
        for part in self._parts:
            yield part.header
            sent += len(part.header)
            remaining = part.size
            with open(part.path, "rb", buffering=0) as handle:
                while remaining > 0:
                    data = await asyncio.to_thread(handle.read, min(self.chunk_bytes, remaining))
                    if not data:
                        raise IpfsBadResponse(
                            f"{part.path} shrank while it was uploaded; the upload is invalid"
                        )
                    remaining -= len(data)
                    sent += len(data)
                    yield data
                    if on_progress is not None:
                        on_progress(sent, total)
                if handle.read(1):
                    raise IpfsBadResponse(
                        f"{part.path} grew while it was uploaded; the upload is invalid"
                    )
            yield b"\r\n"
            sent += 2
        yield self._closing
        if on_progress is not None:
            on_progress(total, total)


# --- responses -------------------------------------------------------------------------------


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _looks_html(content_type: str, body: bytes) -> bool:
    head = body.lstrip()[:15].lower()
    return "text/html" in content_type or head.startswith((b"<!doctype", b"<html", b"<"))


def error_for_response(status: int, content_type: str, body: bytes, what: str) -> Exception:
    """Translate a non-200 answer into the error tree."""
    if _looks_html(content_type, body):
        return IpfsBadResponse(
            f"{what}: HTTP {status} with an HTML page (a proxy error page?), not the IPFS API"
        )
    message: str | None = None
    code: int | None = None
    try:
        data = json.loads(body)
        if isinstance(data, dict) and "Message" in data:
            message = str(data["Message"])
            code = _as_int(data.get("Code"))
    except ValueError:
        pass
    text = message if message is not None else body[:300].decode(errors="replace").strip()
    if message is not None and any(marker in message.lower() for marker in _TIMEOUT_MARKERS):
        return IpfsTimeout(f"{what}: the IPFS node timed out ({message})")
    if retryable_status(status):
        if message is None and status == 500:
            return IpfsBadResponse(f"{what}: HTTP 500 without a Kubo error message: {text!r}")
        return IpfsApiError(
            f"{what}: IPFS node error (HTTP {status}): {text}", status=status, code=code
        )
    return IpfsRequestRejected(
        f"{what}: IPFS node refused the request (HTTP {status}): {text}", status
    )


def json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        if _looks_html("", body):
            raise IpfsBadResponse(f"{what}: an HTML page instead of JSON") from None
        raise IpfsBadResponse(f"{what}: invalid JSON: {body[:200]!r}") from None
    if not isinstance(data, dict):
        raise IpfsBadResponse(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def map_transport_error(exc: httpx.HTTPError, what: str, timeouts: httpx.Timeout) -> Exception:
    """An httpx failure of an IPFS endpoint (:func:`speak_encoder.http_errors.failure_of`)."""
    failure = failure_of(exc)
    if failure is Failure.CONNECT_TIMEOUT:
        return IpfsTimeout(f"{what}: no connection within {timeouts.connect} s")
    if failure is Failure.WRITE_TIMEOUT:
        return IpfsTimeout(
            f"{what}: upload stalled, the node accepted no byte for {timeouts.write} s"
        )
    if failure is Failure.READ_TIMEOUT and isinstance(exc, httpx.ReadTimeout):
        return IpfsTimeout(f"{what}: no answer from the node for {timeouts.read} s")
    if failure in TIMEOUTS:
        return IpfsTimeout(f"{what}: timed out ({exc})")
    if failure is Failure.CONNECT:
        return IpfsUnavailable(f"{what}: cannot connect to the IPFS node ({exc})")
    return IpfsUnavailable(
        f"{what}: connection to the IPFS node failed ({type(exc).__name__}: {exc})"
    )


class KuboClient:
    """One Kubo RPC endpoint. Use as ``async with KuboClient(url) as ipfs: …``."""

    def __init__(
        self,
        address: str,
        *,
        connect_timeout: float = 10.0,
        upload_stall_timeout: float = 120.0,
        processing_timeout: float = 600.0,
        call_timeout: float = DEFAULT_CALL_TIMEOUT_S,
        headers: Mapping[str, str] | None = None,
        chunk_bytes: int = DEFAULT_IO_CHUNK,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = api_base_url(address)
        self.connect_timeout = connect_timeout
        self.upload_stall_timeout = upload_stall_timeout
        self.processing_timeout = processing_timeout
        self.call_timeout = call_timeout
        self.chunk_bytes = chunk_bytes
        self._headers = dict(headers or {})
        self._transport = transport
        self._http: httpx.AsyncClient | None = None  # made on first use (see _client)

    @classmethod
    def from_settings(cls, settings: Settings, address: str | None = None) -> KuboClient:
        return cls(
            address or settings.ipfs_api_addr,
            connect_timeout=settings.ipfs_connect_timeout,
            upload_stall_timeout=settings.ipfs_upload_stall_timeout,
            processing_timeout=settings.ipfs_processing_timeout,
            chunk_bytes=max(settings.chunk_bytes, 64 * 1024),
        )

    def _timeouts(self, read: float) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout,
            write=self.upload_stall_timeout,
            read=read,
            pool=self.connect_timeout,
        )

    @property
    def _client(self) -> httpx.AsyncClient:
        """The httpx client of the RPC calls, made on first use: a ``cat`` never pays for its
        TLS context (a tenth of a second)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=self._timeouts(self.call_timeout),
                transport=self._transport,
                follow_redirects=False,
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> KuboClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- plumbing ----------------------------------------------------------------------------

    async def _call(
        self, command: str, params: Mapping[str, str] | None = None, *, read: float | None = None
    ) -> bytes:
        what = f"{self.base_url} {command}"
        timeouts = self._timeouts(read if read is not None else self.call_timeout)
        try:
            response = await self._client.post(
                f"/api/v0/{command}", params=dict(params or {}), timeout=timeouts
            )
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, what, timeouts) from None
        content_type = response.headers.get("content-type", "")
        if response.status_code != 200:
            raise error_for_response(response.status_code, content_type, response.content, what)
        if _looks_html(content_type, response.content):
            raise IpfsBadResponse(f"{what}: an HTML page instead of the IPFS API")
        return response.content

    async def _call_json(
        self, command: str, params: Mapping[str, str] | None = None, *, read: float | None = None
    ) -> dict[str, Any]:
        return json_object(
            await self._call(command, params, read=read), f"{self.base_url} {command}"
        )

    # --- commands ----------------------------------------------------------------------------

    async def id(self) -> dict[str, Any]:
        return await self._call_json("id")

    async def peer_id(self) -> str | None:
        """The node's peer id from ``id`` (``None`` when the answer has none)."""
        answer = await self.id()
        peer = answer.get("ID", answer.get("Id", answer.get("id")))
        return peer if isinstance(peer, str) and peer else None

    async def version(self) -> dict[str, Any]:
        return await self._call_json("version")

    async def repo_stat(self) -> dict[str, Any]:
        return await self._call_json("repo/stat")

    async def add_folder(
        self,
        folder: Path,
        *,
        cid_version: int = 0,
        pin: bool = True,
        expected_cid: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> AddResult:
        """Upload ``folder`` wrapped in a directory (docs/protocols.md §6); return the node's root.

        With ``expected_cid`` the node's root must be exactly that CID, else
        :class:`CidMismatch` (never report a CID nobody holds).
        """
        body = MultipartFolder(folder, chunk_bytes=self.chunk_bytes)
        params = {
            "wrap-with-directory": "true",
            "pin": "true" if pin else "false",
            "cid-version": str(cid_version),
        }
        if cid_version == 1:
            params["cid-base"] = "base32"
        what = f"{self.base_url} add of {folder}"
        timeouts = self._timeouts(self.processing_timeout)
        request = self._client.build_request(
            "POST",
            "/api/v0/add",
            params=params,
            headers={
                "Content-Type": body.content_type,
                "Content-Length": str(body.content_length),
            },
            content=body.stream(on_progress),
            timeout=timeouts,
        )
        entries = 0
        root: AddedEntry | None = None
        try:
            response = await self._client.send(request, stream=True)
            try:
                content_type = response.headers.get("content-type", "")
                if response.status_code != 200:
                    raise error_for_response(
                        response.status_code, content_type, await response.aread(), what
                    )
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    entry = self._add_line(line, what)
                    if entry is None:
                        continue
                    entries += 1
                    if entry.name == "":
                        root = entry
                trailer_error = response.headers.get("x-stream-error")
                if trailer_error:
                    raise IpfsApiError(f"{what}: the node aborted the add: {trailer_error}")
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, what, timeouts) from None
        if root is None:
            raise IpfsBadResponse(f'{what}: the answer has no root entry (Name "")')
        if expected_cid is not None and root.cid != expected_cid:
            raise CidMismatch(
                f"{what}: the node's root {root.cid} is not the locally computed {expected_cid}",
                expected=expected_cid,
                got=root.cid,
            )
        return AddResult(root.cid, root.size, entries, body.content_length)

    @staticmethod
    def _add_line(line: str, what: str) -> AddedEntry | None:
        try:
            data = json.loads(line)
        except ValueError:
            if _looks_html("", line.encode()):
                raise IpfsBadResponse(f"{what}: an HTML page instead of the add answer") from None
            raise IpfsBadResponse(f"{what}: invalid NDJSON line {line[:200]!r}") from None
        if not isinstance(data, dict):
            raise IpfsBadResponse(f"{what}: invalid NDJSON line {line[:200]!r}")
        if "Message" in data and data.get("Type") == "error":
            raise IpfsApiError(f"{what}: {data['Message']}")
        if "Hash" not in data:  # progress line ({"Name","Bytes"})
            return None
        return AddedEntry(str(data.get("Name", "")), str(data["Hash"]), _as_int(data.get("Size")))

    async def open_cat(
        self,
        cid: str,
        *,
        offset: int = 0,
        stall_timeout: float = 60.0,
        connect_timeout: float | None = None,
        what: str | None = None,
    ) -> BodyStream:
        """Send ``cat`` of ``cid`` (from byte ``offset``); the answer, status and headers read.

        The caller checks the status and reads the body (:class:`~speak_encoder.storage.
        kubo_stream.BodyStream`), then closes it (``async with opened(stream)``). ``what`` names
        the node in messages (default: its URL and the command).
        """
        params = {"arg": cid}
        if offset:
            params["offset"] = str(offset)
        label = what or f"{self.base_url} cat {cid}"
        connect = self.connect_timeout if connect_timeout is None else connect_timeout
        url = f"{self.base_url}/api/v0/cat"
        if self._transport is not None:
            return await open_via_httpx(
                self._client, url, params, what=label, connect_timeout=connect,
                stall_timeout=stall_timeout,
            )  # fmt: skip
        return await open_direct(
            url, params, headers={**self._headers, "User-Agent": USER_AGENT}, what=label,
            connect_timeout=connect, stall_timeout=stall_timeout,
        )  # fmt: skip

    async def cat(
        self,
        cid: str,
        dest: Path,
        *,
        offset: int = 0,
        stall_timeout: float = 60.0,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """Stream the content of ``cid`` into ``dest``; return the size of ``dest`` afterwards.

        With ``offset > 0`` the download resumes: bytes from ``offset`` on are appended to the
        first ``offset`` bytes already in ``dest``. A stall of ``stall_timeout`` seconds (also
        waiting for the first byte: an unknown CID) raises :class:`IpfsTimeout`.
        """
        what = f"{self.base_url} cat {cid}"
        written = offset
        mode = "r+b" if offset else "wb"
        if offset and (not dest.exists() or dest.stat().st_size < offset):
            raise IpfsRequestRejected(f"{what}: cannot resume at {offset}: {dest} is shorter")
        stream = await self.open_cat(cid, offset=offset, stall_timeout=stall_timeout)
        async with opened(stream) as answer:
            content_type = answer.headers.get("content-type", "")
            if answer.status != 200:
                body = await answer.read_some(ERROR_BODY_BYTES)
                raise error_for_response(answer.status, content_type, body, what)
            if "text/html" in content_type:
                raise IpfsBadResponse(f"{what}: an HTML page instead of the content")
            total = _as_int(answer.headers.get("x-content-length")) or 0
            with open(dest, mode) as out:
                out.seek(offset)
                out.truncate()
                async for piece in answer.pieces():
                    out.write(piece)
                    written += len(piece)
                    if on_progress is not None:
                        on_progress(written, total or written)
            trailer_error = answer.trailers.get("x-stream-error") or answer.headers.get(
                "x-stream-error"
            )
            if trailer_error:
                raise IpfsApiError(f"{what}: the node aborted the stream: {trailer_error}")
        return written

    async def pin_add(self, cid: str, *, timeout: float | None = None) -> None:
        """Pin ``cid`` recursively; the node gives up after ``timeout`` seconds (default:
        the processing timeout)."""
        limit = timeout if timeout is not None else self.processing_timeout
        await self._call(
            "pin/add",
            {"arg": cid, "recursive": "true", "timeout": f"{max(1, round(limit))}s"},
            read=limit + self.connect_timeout,
        )

    async def pin_ls(self, cid: str, *, timeout: float | None = None) -> bool:
        """``True`` when ``cid`` is pinned (recursively, directly or indirectly).

        "not pinned" is an answer: ``False``. The node may need to resolve the CID first, so
        it is bounded by ``timeout`` (default: the call timeout) on the node's side too.
        """
        limit = timeout if timeout is not None else self.call_timeout
        try:
            data = await self._call_json(
                "pin/ls",
                {"arg": cid, "timeout": f"{max(1, round(limit))}s"},
                read=limit + self.connect_timeout,
            )
        except (IpfsApiError, IpfsTimeout) as exc:
            if "not pinned" in exc.message.lower():
                return False
            raise
        keys = data.get("Keys")
        if isinstance(keys, dict):
            return bool(keys)
        return "Cid" in data or "Type" in data

    async def pin_rm(self, cid: str) -> None:
        try:
            await self._call("pin/rm", {"arg": cid, "recursive": "true"})
        except IpfsApiError as exc:
            if "not pinned" not in exc.message.lower():
                raise

    async def ls(self, cid: str, *, timeout: float | None = None) -> list[LsLink]:
        limit = timeout if timeout is not None else self.call_timeout
        data = await self._call_json(
            "ls", {"arg": cid, "timeout": f"{max(1, round(limit))}s"}, read=limit + 5
        )
        links: list[LsLink] = []
        for obj in data.get("Objects") or []:
            for link in obj.get("Links") or []:
                links.append(
                    LsLink(
                        str(link.get("Name", "")),
                        str(link.get("Hash", "")),
                        _as_int(link.get("Size")),
                        _as_int(link.get("Type")),
                    )
                )
        return links


__all__ = [
    "DEFAULT_CALL_TIMEOUT_S",
    "DEFAULT_IO_CHUNK",
    "AddResult",
    "AddedEntry",
    "KuboClient",
    "LsLink",
    "MultipartFolder",
    "ProgressCallback",
    "api_base_url",
    "error_for_response",
    "json_object",
    "map_transport_error",
]
