"""The multipart/form-data body of a Kubo folder upload (docs/protocols.md §6), streamed.

One part per file (``name="file"``, ``filename="<relative path, URL-encoded>"``,
``application/octet-stream``). The body is an async byte iterator: files are opened **one at a
time** and read in ``chunk_bytes`` pieces, and the exact ``Content-Length`` is computed
beforehand (proxies in front of hot nodes want it). Memory is bounded whatever the folder size;
a file that shrinks or grows while it is sent makes the upload fail.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from speak_encoder.errors import IpfsBadResponse
from speak_encoder.storage.unixfs import walk_files

#: ``on_progress(bytes_done, bytes_total)`` during uploads and downloads.
ProgressCallback = Callable[[int, int], None]

#: Bytes per read of a file being uploaded / per write of a download.
DEFAULT_IO_CHUNK = 1024 * 1024


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


__all__ = [
    "DEFAULT_IO_CHUNK",
    "MultipartFolder",
    "ProgressCallback",
]
