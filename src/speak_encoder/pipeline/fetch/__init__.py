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
transfer averaging less than :data:`~.transfer.MIN_RATE_BYTES_PER_S` over that window (a trickle).

The stage is split by responsibility:

* this package's ``__init__`` — the stage: :func:`fetch_source` (local files here; the HTTP
  modules below are imported only for a remote source);
* :mod:`.origins` — the origins of a remote reference and the failover between them;
* :mod:`.sink` — where the bytes go (the partial file, its hashes, progress, disk and size
  bounds) and local files;
* :mod:`.http_origin` — one HTTP exchange: the request, its checked redirects, its status,
  headers and httpx exceptions translated (through :mod:`speak_encoder.http_errors`);
* :mod:`.transfer` — one origin to the end: the body under the stall and rate bounds, resumes
  (:data:`RESUME_BACKOFF`), the local node's ``cat`` through the shared
  :class:`~speak_encoder.storage.kubo.KuboClient`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speak_encoder.config import Settings
from speak_encoder.errors import SourceRejected
from speak_encoder.pipeline.fetch.sink import (
    FetchedSource,
    FetchProgress,
    ProgressCallback,
    _check_disk,
    _download_path,
    _local_file,
    _mb,
    _os_error,
    _Progress,
    _Sink,
)
from speak_encoder.pipeline.source import SourceRef

if TYPE_CHECKING:
    import httpx

    from speak_encoder.pipeline.fetch.http_origin import (
        MAX_REDIRECTS,
        REFUSED_HOP,
        UNRESOLVED_HOP,
        redact_url,
    )
    from speak_encoder.pipeline.fetch.origins import kubo_api_url
    from speak_encoder.pipeline.fetch.transfer import RESUME_BACKOFF
    from speak_encoder.urlguard import UrlGuard

log = logging.getLogger(__name__)

#: Names this package exports from its HTTP modules, imported on first use (PEP 562): a local
#: file is encoded without loading httpx.
_LAZY = {
    "MAX_REDIRECTS": "http_origin",
    "REFUSED_HOP": "http_origin",
    "UNRESOLVED_HOP": "http_origin",
    "redact_url": "http_origin",
    "RESUME_BACKOFF": "transfer",
    "kubo_api_url": "origins",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


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
        from speak_encoder.pipeline.fetch.origins import download

        origin = await download(ref, sink, settings, progress, transport, guard)
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
    "MAX_REDIRECTS",
    "REFUSED_HOP",
    "RESUME_BACKOFF",
    "UNRESOLVED_HOP",
    "FetchProgress",
    "FetchedSource",
    "ProgressCallback",
    "fetch_source",
    "kubo_api_url",
    "redact_url",
]
