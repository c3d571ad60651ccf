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

* this package's ``__init__`` — the stage: :func:`fetch_source`, the origins of a reference,
  the failover between them;
* :mod:`.sink` — where the bytes go (the partial file, its hashes, progress, disk and size
  bounds) and local files;
* :mod:`.http_origin` — one HTTP exchange: the request, its checked redirects, its status,
  headers and httpx exceptions translated (through :mod:`speak_encoder.http_errors`);
* :mod:`.transfer` — one origin to the end: the body under the stall and rate bounds, resumes
  (:data:`RESUME_BACKOFF`), the local node's ``cat`` through the shared
  :class:`~speak_encoder.storage.kubo.KuboClient`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import httpx

from speak_encoder import USER_AGENT
from speak_encoder.config import Settings
from speak_encoder.errors import (
    CidMismatch,
    ConfigError,
    InsufficientDisk,
    SourceNotFound,
    SourceRejected,
    SourceTooLarge,
    SpeakEncoderError,
)
from speak_encoder.pipeline.fetch.http_origin import (
    MAX_REDIRECTS,
    REFUSED_HOP,
    UNRESOLVED_HOP,
    _Origin,
    redact_url,
)
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
from speak_encoder.pipeline.fetch.transfer import RESUME_BACKOFF, _from_origin
from speak_encoder.pipeline.source import SourceRef
from speak_encoder.storage.kubo import KuboClient, api_base_url
from speak_encoder.urlguard import UrlGuard

log = logging.getLogger(__name__)


#: Connect timeout for the local Kubo node: when it is down, move on to the gateways quickly.
KUBO_CONNECT_TIMEOUT_S = 2.0


#: Label of the local Kubo node in messages and progress.
KUBO_LABEL = "local kubo"


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
