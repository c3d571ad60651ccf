"""The remote origins of a source: HTTP(S) URLs, the local Kubo node, IPFS gateways.

:func:`download` fills a :class:`~.sink._Sink` from the first origin that works (a job's
``http(s)`` URL, or for a CID the local node's ``cat`` then each gateway), with failover between
them; every httpx failure becomes an error of the project's tree. Kept apart from the package's
``__init__`` so that encoding a local file never imports the HTTP stack (httpx, its TLS and its
CLI's imports cost ~0.2 s and ~5 MB of RSS at start-up).
"""

from __future__ import annotations

import contextlib
import logging

import httpx

from speak_encoder import USER_AGENT
from speak_encoder.config import Settings
from speak_encoder.errors import (
    CidMismatch,
    ConfigError,
    InsufficientDisk,
    SourceNotFound,
    SourceTooLarge,
    SpeakEncoderError,
)
from speak_encoder.pipeline.fetch.http_origin import _Origin, redact_url
from speak_encoder.pipeline.fetch.sink import _Progress, _Sink
from speak_encoder.pipeline.fetch.transfer import _from_origin
from speak_encoder.pipeline.source import SourceRef
from speak_encoder.storage.kubo import KuboClient, api_base_url
from speak_encoder.urlguard import UrlGuard

log = logging.getLogger("speak_encoder.pipeline.fetch")


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


async def download(
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


__all__ = ["KUBO_CONNECT_TIMEOUT_S", "KUBO_LABEL", "download", "kubo_api_url"]
