"""Where a download goes, and local files: the partial file, progress, disk and size bounds.

:class:`_Sink` is the partial download (one file opened once, 0600, never through a symlink),
its running sha256, its byte count and — when the bytes must be a CID — the importer that hashes
them as they are written. Local ``file`` sources are only checked and hashed
(:func:`_local_file`).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlsplit

from speak_encoder.config import Settings
from speak_encoder.errors import (
    CidMismatch,
    InsufficientDisk,
    NetworkError,
    SourceNotFound,
    SourceRejected,
    SourceTooLarge,
    SpeakEncoderError,
)
from speak_encoder.pipeline.source import SourceRef
from speak_encoder.private_files import open_private
from speak_encoder.storage.cid import DAG_PB, RAW, SHA2_256, parse_cid
from speak_encoder.storage.unixfs import FileImporter

log = logging.getLogger(__name__)


#: Seconds between two progress callbacks (the final one is always sent).
PROGRESS_INTERVAL_S = 0.25


#: Free space is checked again after every this many bytes written.
DISK_RECHECK_BYTES = 64 * 1024 * 1024


#: Bytes read per thread hop when hashing a local file.
HASH_SLICE_BYTES = 16 * 1024 * 1024


#: File name (without extension) of a downloaded source inside the job folder.
SOURCE_BASENAME = "source"


_MIB = 1024 * 1024


_SAFE_EXT = re.compile(r"[a-z0-9]{1,5}")


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


def _mb(size: int) -> str:
    return f"{size / _MIB:.1f}"


def _download_path(ref: SourceRef, job_dir: Path) -> Path:
    suffix = ""
    if ref.kind == "http":
        ext = PurePosixPath(urlsplit(ref.value).path).suffix.lstrip(".").lower()
        if _SAFE_EXT.fullmatch(ext):
            suffix = "." + ext
    return job_dir / (SOURCE_BASENAME + suffix)


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


__all__ = [
    "DISK_RECHECK_BYTES",
    "HASH_SLICE_BYTES",
    "PROGRESS_INTERVAL_S",
    "SOURCE_BASENAME",
    "FetchProgress",
    "FetchedSource",
]
