"""Publish targets: where an output folder is persisted, each success verified before it counts.

Targets (all optional; ``PUBLISH_TARGETS`` lists the ones used, in order):

``local``
    The node at ``IPFS_API_ADDR``: ``add`` of the folder (docs/protocols.md §6), root checked
    against the local CID, then ``pin/ls``.
``hotnode``
    ``GET TRAFFIC_DIRECTOR_URL`` → ``{"success":true,"data":{"uploadEndpoint":"…/api/v0/add"}}``,
    then the same ``add`` there, then ``pin/ls`` on that node.
``supernode``
    The Kubo RPC at ``THREESPEAK_IPFS_ENDPOINT``: ``add`` there (``pin/add?arg=CID`` when the
    folder is no longer at hand, e.g. a late retry), then ``pin/ls``.
``cluster``
    IPFS Cluster REST at ``IPFS_CLUSTER_URL``: ``POST /pins/{cid}``, then ``GET /pins/{cid}``
    until a peer reports ``pinned``. ``IPFS_CLUSTER_TOKEN`` is sent as HTTP basic auth when it
    has the form ``user:password``, else as a bearer token.
``pinning_service``
    The IPFS Pinning Service API at ``PINNING_SERVICE_URL`` (bearer ``PINNING_SERVICE_TOKEN``):
    an existing request for the CID is reused (``GET /pins?cid=…``), else ``POST /pins``; then
    ``GET /pins/{requestid}`` until ``pinned``.

Policy (``PUBLISH_REQUIRED``): ``all`` (every target), ``any`` (at least one), ``any-remote``
(at least one target other than ``local``) or a comma list of target names that must succeed.

Every failure (except :class:`CidMismatch`, which fails the publish at once and loudly) goes
into the persistent pin queue (:mod:`speak_encoder.storage.pins`: kept in the job store, handed
in by the caller); if the policy is not met the publish raises :class:`PublishIncomplete`
after queuing. :func:`retry_pending` retries the queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from speak_encoder.config import Settings
from speak_encoder.errors import (
    CidMismatch,
    ConfigError,
    IpfsApiError,
    IpfsBadResponse,
    IpfsTimeout,
    PublishIncomplete,
    SpeakEncoderError,
)
from speak_encoder.storage.kubo import KuboClient
from speak_encoder.storage.kubo_answers import error_for_response, json_object, map_transport_error
from speak_encoder.storage.pins import PendingPin, PinQueue, RetrySummary, retry_due

#: ``on_progress(target_name, bytes_done, bytes_total)`` while a target uploads.
PublishProgress = Callable[[str, int, int], None]

TARGET_NAMES = ("local", "hotnode", "supernode", "cluster", "pinning_service")
#: Seconds between two status polls of a remote pinning service / cluster.
DEFAULT_POLL_INTERVAL_S = 1.0
#: Pinning Service API statuses that are still in progress.
_IN_PROGRESS = {"queued", "pinning"}


class PublishTarget(Protocol):
    """Persists a CID somewhere, verified. Raises a :class:`SpeakEncoderError` on failure."""

    name: str
    remote: bool

    async def publish(
        self, folder: Path | None, cid: str, on_progress: PublishProgress | None = None
    ) -> None: ...


# --- Kubo RPC targets ------------------------------------------------------------------------


class KuboTarget:
    """A Kubo RPC node: add the folder (or pin the CID), then verify with ``pin/ls``."""

    def __init__(
        self,
        name: str,
        address: str,
        settings: Settings,
        *,
        remote: bool,
        cid_version: int = 0,
    ) -> None:
        self.name = name
        self.address = address
        self.settings = settings
        self.remote = remote
        self.cid_version = cid_version

    async def _address(self) -> str:
        return self.address

    async def publish(
        self, folder: Path | None, cid: str, on_progress: PublishProgress | None = None
    ) -> None:
        address = await self._address()
        async with KuboClient.from_settings(self.settings, address) as client:
            if folder is not None and folder.is_dir():
                progress = None
                if on_progress is not None:
                    name = self.name

                    def progress(done: int, total: int) -> None:
                        on_progress(name, done, total)

                await client.add_folder(
                    folder, cid_version=self.cid_version, expected_cid=cid, on_progress=progress
                )
            else:
                await self._pin_without_folder(client, cid)
            if not await client.pin_ls(cid, timeout=self.settings.ipfs_processing_timeout):
                raise IpfsApiError(f"{self.name}: {cid} is not pinned after the upload")

    async def _pin_without_folder(self, client: KuboClient, cid: str) -> None:
        await client.pin_add(cid, timeout=self.settings.ipfs_processing_timeout)


class HotnodeTarget(KuboTarget):
    """The 3Speak hot node chosen by the traffic director."""

    def __init__(self, director_url: str, settings: Settings) -> None:
        super().__init__("hotnode", director_url, settings, remote=True)
        self.director_url = director_url

    async def _address(self) -> str:
        timeout = httpx.Timeout(self.settings.ipfs_connect_timeout * 3)
        what = f"traffic director {self.director_url}"
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                response = await client.get(self.director_url)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, what, timeout) from None
        if response.status_code != 200:
            raise error_for_response(
                response.status_code,
                response.headers.get("content-type", ""),
                response.content,
                what,
            )
        data = json_object(response.content, what)
        endpoint = (data.get("data") or {}).get("uploadEndpoint")
        if data.get("success") is not True or not isinstance(endpoint, str) or not endpoint:
            raise IpfsBadResponse(f"{what}: no uploadEndpoint in {str(data)[:200]}")
        return endpoint

    async def _pin_without_folder(self, client: KuboClient, cid: str) -> None:
        raise IpfsBadResponse(
            f"hotnode: the folder of {cid} is gone; a hot node only takes uploads"
        )


# --- REST pinning targets --------------------------------------------------------------------


class _RestTarget:
    remote = True

    def __init__(self, name: str, base_url: str, token: str | None, settings: Settings) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.settings = settings
        self.poll_interval = DEFAULT_POLL_INTERVAL_S

    def _client(self) -> httpx.AsyncClient:
        headers: dict[str, str] = {}
        auth: httpx.BasicAuth | None = None
        if self.token:
            if self.name == "cluster" and ":" in self.token:
                user, _, password = self.token.partition(":")
                auth = httpx.BasicAuth(user, password)
            else:
                headers["Authorization"] = f"Bearer {self.token}"
        timeout = httpx.Timeout(
            self.settings.ipfs_processing_timeout, connect=self.settings.ipfs_connect_timeout
        )
        return httpx.AsyncClient(
            base_url=self.base_url, headers=headers, auth=auth, timeout=timeout
        )

    async def _request(
        self, client: httpx.AsyncClient, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        what = f"{self.name} {method} {self.base_url}{path}"
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, what, client.timeout) from None
        if response.status_code not in (200, 201, 202):
            body = response.content
            try:  # the Pinning Service API's {"error": {"reason", "details"}}
                error = json_object(body, what).get("error")
                if isinstance(error, dict):
                    body = (
                        f'{{"Message": "{error.get("reason")}: {error.get("details")}"}}'.encode()
                    )
            except IpfsBadResponse:
                pass
            raise error_for_response(
                response.status_code, response.headers.get("content-type", ""), body, what
            )
        return json_object(response.content, what)

    async def _poll(self, check: Callable[[], Any], cid: str) -> None:
        deadline = time.monotonic() + self.settings.ipfs_processing_timeout
        while True:
            if await check():
                return
            if time.monotonic() >= deadline:
                raise IpfsTimeout(
                    f"{self.name}: {cid} not pinned after "
                    f"{self.settings.ipfs_processing_timeout:.0f} s (will be retried)"
                )
            await asyncio.sleep(self.poll_interval)


class ClusterTarget(_RestTarget):
    """IPFS Cluster REST API."""

    def __init__(self, base_url: str, token: str | None, settings: Settings) -> None:
        super().__init__("cluster", base_url, token, settings)

    async def publish(
        self, folder: Path | None, cid: str, on_progress: PublishProgress | None = None
    ) -> None:
        async with self._client() as client:
            await self._request(client, "POST", f"/pins/{cid}", params={"name": cid})

            async def pinned() -> bool:
                info = await self._request(client, "GET", f"/pins/{cid}")
                statuses = [
                    str(peer.get("status", ""))
                    for peer in (info.get("peer_map") or {}).values()
                    if isinstance(peer, dict)
                ]
                if "pinned" in statuses:
                    return True
                errors = [s for s in statuses if s in {"pin_error", "error", "cluster_error"}]
                if errors and len(errors) == len(statuses):
                    raise IpfsApiError(f"cluster: pinning {cid} failed on every peer")
                return False

            await self._poll(pinned, cid)


class PinningServiceTarget(_RestTarget):
    """The standard IPFS Pinning Service API."""

    def __init__(self, base_url: str, token: str | None, settings: Settings) -> None:
        super().__init__("pinning_service", base_url, token, settings)

    async def publish(
        self, folder: Path | None, cid: str, on_progress: PublishProgress | None = None
    ) -> None:
        async with self._client() as client:
            existing = await self._request(
                client,
                "GET",
                "/pins",
                params={"cid": cid, "status": "queued,pinning,pinned"},
            )
            results = existing.get("results") or []
            if results:
                status = results[0]
            else:
                status = await self._request(
                    client, "POST", "/pins", json={"cid": cid, "name": cid}
                )
            request_id = str(status.get("requestid", ""))
            if not request_id:
                raise IpfsBadResponse(f"pinning_service: no requestid in {str(status)[:200]}")

            async def pinned() -> bool:
                current = await self._request(client, "GET", f"/pins/{request_id}")
                state = str(current.get("status", ""))
                if state == "pinned":
                    return True
                if state not in _IN_PROGRESS:
                    raise IpfsApiError(f"pinning_service: request {request_id} for {cid}: {state}")
                return False

            await self._poll(pinned, cid)


# --- building targets from the settings ------------------------------------------------------


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def build_target(name: str, settings: Settings) -> PublishTarget:
    """One target by name, or :class:`ConfigError` naming the missing setting."""

    def need(value: str | None, key: str) -> str:
        if not value:
            raise ConfigError(f"publish target {name!r} needs {key} to be set")
        return value

    if name == "local":
        return KuboTarget("local", settings.ipfs_api_addr, settings, remote=False)
    if name == "hotnode":
        return HotnodeTarget(need(settings.traffic_director_url, "TRAFFIC_DIRECTOR_URL"), settings)
    if name == "supernode":
        endpoint = need(settings.threespeak_ipfs_endpoint, "THREESPEAK_IPFS_ENDPOINT")
        return KuboTarget("supernode", endpoint, settings, remote=True)
    if name == "cluster":
        url = need(settings.ipfs_cluster_url, "IPFS_CLUSTER_URL")
        return ClusterTarget(url, _secret(settings.ipfs_cluster_token), settings)
    if name == "pinning_service":
        url = need(settings.pinning_service_url, "PINNING_SERVICE_URL")
        return PinningServiceTarget(url, _secret(settings.pinning_service_token), settings)
    raise ConfigError(
        f"PUBLISH_TARGETS: unknown target {name!r} (known: {', '.join(TARGET_NAMES)})"
    )


def build_targets(settings: Settings) -> list[PublishTarget]:
    names = [n for n in settings.publish_targets.split(",") if n]
    if not names:
        raise ConfigError("PUBLISH_TARGETS is empty: name at least one target")
    if len(set(names)) != len(names):
        raise ConfigError(f"PUBLISH_TARGETS names a target twice: {settings.publish_targets}")
    return [build_target(name, settings) for name in names]


def policy_met(required: str, outcomes: list[TargetOutcome]) -> bool:
    """Evaluate ``PUBLISH_REQUIRED`` against the outcomes."""
    required = required.strip().lower()
    ok = [o for o in outcomes if o.ok]
    if required == "all":
        return len(ok) == len(outcomes)
    if required == "any":
        return bool(ok)
    if required == "any-remote":
        return any(o.remote for o in ok)
    names = {n.strip() for n in required.split(",") if n.strip()}
    known = {o.name for o in outcomes}
    if not names or not names <= known:
        raise ConfigError(
            f"PUBLISH_REQUIRED={required!r}: must be all, any, any-remote or names among "
            f"PUBLISH_TARGETS ({', '.join(sorted(known))})"
        )
    return names <= {o.name for o in ok}


# --- publishing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetOutcome:
    """How one target went."""

    name: str
    remote: bool
    ok: bool
    seconds: float
    error: str | None = None
    error_kind: str | None = None
    queued_id: int | None = None


@dataclass(frozen=True, slots=True)
class PublishResult:
    cid: str
    required: str
    outcomes: list[TargetOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return policy_met(self.required, self.outcomes)

    @property
    def pending(self) -> list[TargetOutcome]:
        return [o for o in self.outcomes if not o.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cid": self.cid,
            "ok": self.ok,
            "required": self.required,
            "targets": [
                {
                    "name": o.name,
                    "ok": o.ok,
                    "seconds": round(o.seconds, 3),
                    "error": o.error,
                    "queued_id": o.queued_id,
                }
                for o in self.outcomes
            ],
        }


async def publish_folder(
    folder: Path | None,
    settings: Settings,
    *,
    expected_cid: str,
    queue: PinQueue,
    on_progress: PublishProgress | None = None,
    targets: list[PublishTarget] | None = None,
) -> PublishResult:
    """Publish ``folder`` (whose locally computed CID is ``expected_cid``) to every target;
    ``None``: pin ``expected_cid`` by reference where a target allows it (and verify).

    Targets run one after another in ``PUBLISH_TARGETS`` order; each success is verified.
    Failures are queued in ``queue`` for retry. Raises :class:`CidMismatch` at once when a node
    reports another root, and :class:`PublishIncomplete` when ``PUBLISH_REQUIRED`` is not met.
    """
    chosen = build_targets(settings) if targets is None else targets
    outcomes: list[TargetOutcome] = []
    for target in chosen:
        started = time.monotonic()
        try:
            await target.publish(folder, expected_cid, on_progress)
        except CidMismatch:
            raise
        except SpeakEncoderError as exc:
            entry = await asyncio.to_thread(
                queue.add, expected_cid, target.name, folder, exc.message
            )
            outcomes.append(
                TargetOutcome(
                    target.name, target.remote, False, time.monotonic() - started,
                    exc.message, exc.kind, entry.id,
                )
            )  # fmt: skip
            continue
        done = await asyncio.to_thread(queue.find, expected_cid, target.name)
        if done is not None and done.status != "done":
            await asyncio.to_thread(queue.mark_done, done.id)
        outcomes.append(TargetOutcome(target.name, target.remote, True, time.monotonic() - started))
    result = PublishResult(expected_cid, settings.publish_required, outcomes)
    if not result.ok:
        failures = "; ".join(f"{o.name}: {o.error}" for o in result.pending)
        raise PublishIncomplete(
            f"publishing {expected_cid} did not meet PUBLISH_REQUIRED={settings.publish_required}"
            f" ({failures}); the failed pins are queued for retry",
            result,
        )
    return result


async def retry_pending(
    settings: Settings,
    queue: PinQueue,
    *,
    force: bool = False,
    build: Callable[[str, Settings], PublishTarget] | None = None,
) -> RetrySummary:
    """Retry the due entries of the pin queue this node can claim (all pending ones with
    ``force``).

    A target named by an entry is built from the settings even if it is no longer in
    ``PUBLISH_TARGETS``; the folder is uploaded again when this node holds it, otherwise the
    CID is pinned by reference where the target allows it. ``build`` makes a target from its
    name (default :func:`build_target`).
    """
    cache: dict[str, PublishTarget] = {}
    make = build or build_target

    async def attempt(entry: PendingPin) -> None:
        target = cache.get(entry.target)
        if target is None:
            target = cache[entry.target] = make(entry.target, settings)
        folder = Path(entry.folder) if entry.folder and entry.node == queue.node else None
        await target.publish(folder if folder is not None and folder.is_dir() else None, entry.cid)

    return await retry_due(queue, attempt, force=force)


__all__ = [
    "DEFAULT_POLL_INTERVAL_S",
    "TARGET_NAMES",
    "ClusterTarget",
    "HotnodeTarget",
    "KuboTarget",
    "PinningServiceTarget",
    "PublishProgress",
    "PublishResult",
    "PublishTarget",
    "TargetOutcome",
    "build_target",
    "build_targets",
    "policy_met",
    "publish_folder",
    "retry_pending",
]
