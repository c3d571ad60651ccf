"""The legacy 3Speak encoder gateway (docs/protocols.md §2): poll, claim, ping, finish.

Three pieces, three modules:

* :class:`LegacyGatewayClient` (:mod:`~speak_encoder.sources.gateway_client`) — one method per
  route (``updateNode``, ``getJob``, ``myJob``, ``acceptJob``, ``jobstatus/{id}``, ``pingJob``,
  ``finishJob``, ``failJob``, ``rejectJob``, ``heartbeat``, ``stats``), each answer turned into a
  value or an error of :mod:`~speak_encoder.sources.gateway_protocol`.
* :class:`GatewayHooks` (:mod:`~speak_encoder.sources.gateway_hooks`) — the
  :class:`~speak_encoder.node.hooks.SourceHooks` of gateway jobs: ``pingJob`` while a job runs,
  ``finishJob``/``failJob``/``rejectJob`` stored in the outbox with the job's outcome and
  delivered with back-off; a refusal (4xx other than 401/403/429) gives up.
* :class:`GatewaySource` (this module) — the task the service's lifespan owns: ``updateNode``
  at start (failure logged, retried at the next cycle, polling goes on), then every
  ``GATEWAY_POLL_INTERVAL`` (± 20 %): ``heartbeat`` (``needs_update`` is logged and kept in
  :attr:`GatewaySource.needs_update`), and — only while the node has free capacity — ``myJob``
  (newer gateways) then ``getJob``. A job offered is checked (``input.uri`` a remote source;
  http(s) through the SSRF guard), claimed (``jobstatus`` unassigned or ours → ``acceptJob``
  → ``jobstatus`` assigned to our DID) and submitted to the store (kind ``gateway``,
  ``external_id`` = the gateway's id, dedup key ``gateway:<id>``, the full ladder). Race
  answers are skipped silently; every gateway error is retried with back-off and jitter and
  never crashes the node; a refused signature (401/403) logs "check ENCODER_PRIVATE_KEY". Its
  run loop is the one the embed poller runs too
  (:func:`~speak_encoder.sources.gateway_protocol.run_poller`).

A restart mid-job resumes the job from the store: no second ``acceptJob`` (the poller only
claims jobs the store does not hold) and no second ``finishJob`` (the outbox key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from speak_encoder.config import Settings
from speak_encoder.errors import (
    InvalidSourceReference,
    NetworkError,
    QueueFull,
    StoreUnavailable,
)
from speak_encoder.node.identity import NodeIdentity
from speak_encoder.node.models import JobState, NewJob, SourceKind
from speak_encoder.node.scheduler import Scheduler
from speak_encoder.node.store import JobStore
from speak_encoder.pipeline.source import parse_source
from speak_encoder.sources.gateway_client import (
    GATEWAY_KINDS,
    LegacyGatewayClient,
    fail_body,
)
from speak_encoder.sources.gateway_hooks import (
    PING_KEEPALIVE_S,
    PING_MIN_INTERVAL_S,
    GatewayHooks,
    ping_figures,
)
from speak_encoder.sources.gateway_protocol import (
    GatewayAuthRejected,
    GatewayError,
    GatewayNodeRefused,
    GatewayNotRegistered,
    GatewayRejected,
    PollRounds,
    free_capacity,
    jittered,
    local_peer_id,
    read_update_notice,
    run_poller,
)
from speak_encoder.urlguard import UnsafeUrl, check_public_url

log = logging.getLogger(__name__)


class GatewaySource:
    """The legacy gateway job source: registration, heartbeat, polling, claims, report delivery.

    Creating it registers :class:`GatewayHooks` for ``SourceKind.GATEWAY`` in the scheduler (do
    it before the scheduler runs, so a job resumed after a crash reports through it).
    """

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        scheduler: Scheduler,
        identity: NodeIdentity,
        *,
        peer_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.scheduler = scheduler
        self.identity = identity
        self.peer_id = peer_id
        self.client = LegacyGatewayClient(settings, identity, transport=transport)
        self.hooks = GatewayHooks(settings, store, self.client)
        scheduler.hooks = {**scheduler.hooks, SourceKind.GATEWAY: self.hooks}
        self.rounds = PollRounds("gateway", settings.gateway_poll_interval)
        self.registered = False
        self.needs_update: bool | None = None
        self.latest_version: str | None = None
        self.use_my_job = True
        self.claimed = 0
        self._skipped: set[str] = set()  # gateway ids this node will not take (bad source)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``; then keep delivering reports until cancelled."""
        deliverer = asyncio.create_task(self._deliver_loop(), name="gateway-reports")
        log.info("🌐 legacy gateway %s: polling as %s", self.client.base_url, self.identity.did)
        # the deliverer runs until cancelled
        await run_poller(stop, self.cycle, companion=deliverer, close=self.client.aclose)

    async def cycle(self) -> float:
        """One poll round; returns the seconds to wait before the next one."""
        try:
            if not self.registered:
                await self._register()
            await self._heartbeat()
            claimed = await self._poll()
        except GatewayAuthRejected as exc:
            return self.rounds.refused(exc)
        except GatewayNodeRefused as exc:
            return self.rounds.node_refused(exc)
        except GatewayNotRegistered as exc:
            self.registered = False
            return self.rounds.failed("gateway", exc.message)
        except GatewayError as exc:
            return self.rounds.failed("gateway", exc.message)
        except (StoreUnavailable, NetworkError) as exc:
            return self.rounds.failed("gateway poll", exc.message)
        self.rounds.succeeded()
        if claimed and await free_capacity(self.scheduler, self.store):
            return 0.0  # still room: look for the next job now
        return jittered(self.settings.gateway_poll_interval)

    async def _register(self) -> None:
        peer_id = self.peer_id or await local_peer_id(self.settings)
        try:
            await self.client.update_node(peer_id)
        except GatewayAuthRejected:
            raise
        except GatewayError as exc:
            log.warning("🌐 updateNode failed (polling goes on, retried next round): %s",
                        exc.message)  # fmt: skip
            return
        self.registered = True
        log.info("🌐 registered with the legacy gateway as %s", self.settings.node_name)

    async def _heartbeat(self) -> None:
        try:
            answer = await self.client.heartbeat()
        except (GatewayAuthRejected, GatewayNotRegistered, GatewayNodeRefused):
            raise
        except GatewayError as exc:
            log.debug("heartbeat failed: %s", exc.message)
            return
        self.needs_update, self.latest_version = read_update_notice(
            answer, was=self.needs_update, gateway="gateway"
        )

    async def _poll(self) -> bool:
        if await free_capacity(self.scheduler, self.store) <= 0:
            return False
        offer: dict[str, Any] | None = None
        if self.use_my_job:
            try:
                offer = await self.client.my_job()
            except GatewayRejected as exc:
                log.info("myJob not supported by this gateway (%s): getJob only", exc.message)
                self.use_my_job = False
        if offer is not None and str(offer.get("id")) in self._skipped:
            # pre-assigned to us but refused: give it back, or myJob offers it forever
            with contextlib.suppress(GatewayError):
                await self.client.reject_job(str(offer.get("id")))
            offer = None
        if offer is None:
            offer = await self.client.get_job()
        if offer is None:
            return False
        return await self.claim(offer)

    async def _held(self, gateway_id: str) -> bool:
        """Whether the store already holds this gateway job (active or just completed)."""
        recent = await asyncio.to_thread(
            self.store.list_jobs,
            states=[JobState.QUEUED, JobState.RUNNING, JobState.RETRY_WAIT, JobState.COMPLETE],
            limit=self.settings.queue_max + 200,
        )
        return any(j.kind is SourceKind.GATEWAY and j.external_id == gateway_id for j in recent)

    async def _source_problem(self, uri: str) -> tuple[str, bool] | None:
        """Why a job's source is refused, and whether for good; ``None`` if it is usable."""
        try:
            ref = parse_source(uri)
        except InvalidSourceReference as exc:
            return exc.message, True
        if ref.kind == "file":
            return "a local path is not a remote source", True
        if uri.strip().lower().startswith(("http://", "https://")):
            try:
                await check_public_url(
                    uri.strip(),
                    allow_private=self.settings.allow_private_urls,
                    what="gateway job source",
                    ipfs_rpc=self.settings.ipfs_api_addr,
                )
            except UnsafeUrl as exc:
                return exc.message, True
            except NetworkError as exc:
                return exc.message, False  # DNS: maybe next time
        return None

    async def claim(self, offer: dict[str, Any]) -> bool:
        """Check, claim and submit one offered job; ``True`` if it is now ours and queued."""
        gid = offer.get("id")
        source = offer.get("input")
        uri = source.get("uri") if isinstance(source, dict) else None
        if not isinstance(gid, str) or not gid or not isinstance(uri, str):
            log.warning("🌐 ignoring a malformed job offer (no id or input.uri)")
            return False
        if gid in self._skipped:
            return False
        if await self._held(gid):
            log.debug("gateway job %s is already in the store: not claimed again", gid)
            return False
        problem = await self._source_problem(uri)
        if problem is not None:
            reason, final = problem
            log.warning("🌐 gateway job %s skipped: its source is refused (%s)", gid, reason)
            if final:
                self._skipped.add(gid)
            return False
        before = await self.client.job_status(gid)
        if before is None:
            return False
        holder = before.get("assigned_to")
        if holder and not self.client.owns(before):
            log.debug("gateway job %s already assigned to %s: skipped", gid, holder)
            return False
        if not await self.client.accept_job(gid):
            return False
        try:
            after = await self.client.job_status(gid)
        except GatewayError as exc:
            log.warning("jobstatus after claiming %s failed (%s): trusting acceptJob", gid,
                        exc.message)  # fmt: skip
        else:
            if after is None or not self.client.owns(after):
                log.info("🌐 gateway job %s went to %s: skipped", gid,
                         (after or {}).get("assigned_to"))  # fmt: skip
                return False
        return await self._submit(gid, offer, uri.strip())

    async def _submit(self, gid: str, offer: dict[str, Any], uri: str) -> bool:
        source = offer.get("input") or {}
        size = source.get("size") if isinstance(source, dict) else None
        new = NewJob(
            source=uri,
            kind=SourceKind.GATEWAY,
            rungs=None,  # gateway jobs get the full ladder
            request=offer,
            external_id=gid,
            dedup_key=f"gateway:{gid}",
            size_hint=size if isinstance(size, int) and size > 0 else None,
        )
        try:
            job, created = await asyncio.to_thread(
                self.store.submit, new, queue_max=self.settings.queue_max,
                dedup_window_s=self.settings.dedup_window_hours * 3600,
            )  # fmt: skip
        except QueueFull as exc:
            log.warning("🌐 gateway job %s: %s — giving it back", gid, exc.message)
            with contextlib.suppress(GatewayError):
                await self.client.reject_job(gid)
            return False
        if created:
            self.claimed += 1
            meta = offer.get("metadata")
            meta = meta if isinstance(meta, dict) else {}
            log.info(
                "📥 gateway job %s claimed → local job %s (%s/%s)", gid, job.id,
                meta.get("video_owner", "?"), meta.get("video_permlink", "?"),
            )  # fmt: skip
            self.scheduler.wake()
        return created

    async def _deliver_loop(self) -> None:
        interval = min(5.0, self.settings.gateway_poll_interval)
        while True:
            self.hooks.wake_deliverer.clear()
            try:
                await self.hooks.deliver_due()
            except (StoreUnavailable, GatewayError) as exc:
                log.warning("gateway report delivery: %s", exc.message)
            except Exception as exc:  # a bug: never let it end the loop
                log.error("gateway report delivery failed: %r", exc)
                log.debug("details", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.hooks.wake_deliverer.wait(), timeout=interval)


async def run_gateway_source(
    settings: Settings,
    store: JobStore,
    scheduler: Scheduler,
    identity: NodeIdentity,
    stop: asyncio.Event,
) -> None:
    """The legacy gateway source as one task (see :class:`GatewaySource`; prefer creating the
    source before the scheduler starts, so resumed jobs find their hooks)."""
    await GatewaySource(settings, store, scheduler, identity).run(stop)


__all__ = [
    "GATEWAY_KINDS",
    "PING_KEEPALIVE_S",
    "PING_MIN_INTERVAL_S",
    "GatewayHooks",
    "GatewaySource",
    "LegacyGatewayClient",
    "fail_body",
    "ping_figures",
    "run_gateway_source",
]
