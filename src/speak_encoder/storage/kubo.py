"""Async Kubo RPC client (``/api/v0/…``, always POST), streaming both ways.

* ``add_folder`` uploads a folder exactly as docs/protocols.md §6 says: ``add?wrap-with-directory=
  true&pin=true&cid-version=0``, the multipart/form-data body streamed one file at a time with
  its exact ``Content-Length`` (:class:`~speak_encoder.storage.kubo_multipart.MultipartFolder`).
  Memory is bounded whatever the folder size.
* ``cat`` streams to a file, resumable with ``offset``, abandoned after ``stall_timeout``
  seconds without a byte. Its body is read by :mod:`~speak_encoder.storage.kubo_stream` (one
  HTTP/1.1 connection per body, chunked framing decoded per chunk, not per 64 KiB event):
  :meth:`KuboClient.open_cat` gives the open answer to callers that write it themselves (the
  fetch stage).
* Three separate timeouts: ``connect``; ``upload_stall`` (the peer accepts no byte of the body
  for that long); ``processing`` (no answer once the body is sent: DAG writes, pinning).
* Errors are translated at this boundary (:mod:`~speak_encoder.storage.kubo_answers`): a Kubo
  error JSON → :class:`IpfsApiError` / :class:`IpfsTimeout`, 4xx → :class:`IpfsRequestRejected`,
  an HTML page or broken JSON → :class:`IpfsBadResponse`, connection problems →
  :class:`IpfsUnavailable` / :class:`IpfsTimeout`. ``pin_ls`` answers ``False`` for
  "not pinned"; it does not raise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

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
)
from speak_encoder.storage.kubo_answers import (
    as_int,
    error_for_response,
    json_object,
    looks_html,
    map_transport_error,
)
from speak_encoder.storage.kubo_multipart import DEFAULT_IO_CHUNK, MultipartFolder, ProgressCallback
from speak_encoder.storage.kubo_stream import BodyStream, open_direct, open_via_httpx, opened

#: Seconds of a small RPC call (id, version, pin/ls …) once connected.
DEFAULT_CALL_TIMEOUT_S = 60.0
#: Bytes of an error answer read to explain it (a Kubo error JSON, a proxy page).
ERROR_BODY_BYTES = 64 * 1024


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
        if looks_html(content_type, response.content):
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
            if looks_html("", line.encode()):
                raise IpfsBadResponse(f"{what}: an HTML page instead of the add answer") from None
            raise IpfsBadResponse(f"{what}: invalid NDJSON line {line[:200]!r}") from None
        if not isinstance(data, dict):
            raise IpfsBadResponse(f"{what}: invalid NDJSON line {line[:200]!r}")
        if "Message" in data and data.get("Type") == "error":
            raise IpfsApiError(f"{what}: {data['Message']}")
        if "Hash" not in data:  # progress line ({"Name","Bytes"})
            return None
        return AddedEntry(str(data.get("Name", "")), str(data["Hash"]), as_int(data.get("Size")))

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
            total = as_int(answer.headers.get("x-content-length")) or 0
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
                        as_int(link.get("Size")),
                        as_int(link.get("Type")),
                    )
                )
        return links


__all__ = [
    "DEFAULT_CALL_TIMEOUT_S",
    "AddResult",
    "AddedEntry",
    "KuboClient",
    "LsLink",
    "api_base_url",
]
