"""The 3Speak embed gateway ("community mode" upstream, docs/protocols.md §3).

:class:`EmbedSource` is the task the service's lifespan owns:

* ``updateNode`` ``{"node_info": {"name", "cryptoAccounts": {"hive"}, "peer_id", "commit_hash"}}``
  (``peer_id`` of the local IPFS node when it answers) until it succeeds, with back-off and
  jitter (upstream gave up until a restart: fixed here), and again whenever the gateway answers
  404 "Encoder not registered" (an admin removed the node);
* every ``GATEWAY_POLL_INTERVAL`` (± 20 %): ``heartbeat`` ``{"timestamp", "version"}``
  (``needs_update`` logged at WARNING and kept in :attr:`EmbedSource.needs_update`), then, only
  while the node has free capacity, ``myJob`` ``{"timestamp"}`` → ``{"success", "job": <direct
  job request (§4)> | null}``;
* a job offered is validated as a :class:`~speak_encoder.sources.direct_request.DirectJobRequest`,
  its ``webhook_url`` checked by the SSRF guard, and submitted as kind ``embed`` through
  :func:`~speak_encoder.sources.direct_request.to_new_job`. The store's dedup on (owner,
  permlink, input_cid) covers queued, running **and** recently completed jobs
  (``DEDUP_WINDOW_HOURS``): a job offered again is not encoded twice;
* there is no accept/finish call: completion, failure and progress go through the job's webhook
  (:class:`~speak_encoder.sources.webhooks.WebhookHooks`, registered here for ``SourceKind.EMBED``
  unless the caller already did; delivered by one shared
  :class:`~speak_encoder.sources.webhook_delivery.OutboxDeliverer`).

Gateway errors (5xx, timeouts, broken JSON, HTML pages) are retried with back-off and never
crash the node; a refused signature (401/403) logs "check ENCODER_PRIVATE_KEY"; 403 "Encoder is
disabled or banned" is logged as such once, shown as "refused: disabled or banned" and asked
again after ``NODE_REFUSED_WAIT_S``. A job offered again (the embed server re-claims a stalled or
redispatched job with a fresh callback token) is never encoded twice: its reports go to the
newest ``webhook_url``/``api_key``, and a job already complete reports once more
(:meth:`~speak_encoder.node.store.job_offers.JobOffers.offer`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from pydantic import ValidationError

from speak_encoder.config import Settings
from speak_encoder.errors import NetworkError, QueueFull, StoreUnavailable
from speak_encoder.node.identity import NodeIdentity
from speak_encoder.node.models import SourceKind
from speak_encoder.node.scheduler import Scheduler
from speak_encoder.node.store import JobStore
from speak_encoder.sources.direct_request import OFFER_LOG, DirectJobRequest, to_new_job
from speak_encoder.sources.gateway_protocol import (
    GatewayAuthRejected,
    GatewayClient,
    GatewayError,
    GatewayNodeRefused,
    GatewayNotRegistered,
    PollRounds,
    free_capacity,
    jittered,
    local_peer_id,
    read_update_notice,
    run_poller,
)
from speak_encoder.sources.webhook_delivery import OutboxDeliverer
from speak_encoder.sources.webhooks import WebhookHooks
from speak_encoder.urlguard import UnsafeUrl, check_public_url

log = logging.getLogger(__name__)


class EmbedGatewayClient(GatewayClient):
    """The three routes of the embed gateway (all shared with the legacy one)."""

    def __init__(
        self,
        settings: Settings,
        identity: NodeIdentity,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(settings, identity, settings.embed_gateway_url, transport=transport)


class EmbedSource:
    """The embed gateway job source (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        scheduler: Scheduler,
        identity: NodeIdentity,
        *,
        webhooks: WebhookHooks | None = None,
        deliverer: OutboxDeliverer | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.scheduler = scheduler
        self.identity = identity
        self.client = EmbedGatewayClient(settings, identity, transport=transport)
        #: Runs the outbox deliverer itself only when none is shared with it.
        self._own_deliverer = deliverer is None
        self.deliverer = deliverer or OutboxDeliverer(settings, store)
        if SourceKind.EMBED not in scheduler.hooks:
            hooks = webhooks or WebhookHooks(settings, store, on_enqueue=self.deliverer.notify)
            scheduler.hooks = {**scheduler.hooks, SourceKind.EMBED: hooks}
        self.rounds = PollRounds("embed gateway", settings.gateway_poll_interval)
        self.registered = False
        self.encoder_info: dict[str, Any] | None = None
        self.needs_update: bool | None = None
        self.latest_version: str | None = None
        self.submitted = 0
        self.duplicates = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` (its own webhook deliverer, if any, stops with it)."""
        deliver = (
            asyncio.create_task(self.deliverer.run(stop), name="embed-webhooks")
            if self._own_deliverer
            else None
        )
        log.info("🌐 embed gateway %s: polling as %s", self.client.http.base_url,
                 self.identity.did)  # fmt: skip
        await run_poller(stop, self.cycle, companion=deliver, close=self.client.aclose)

    async def cycle(self) -> float:
        """One round (register if needed, heartbeat, myJob); returns the wait before the next."""
        try:
            if not self.registered:
                peer_id = await local_peer_id(self.settings)
                self.encoder_info = (await self.client.update_node(peer_id)).get("encoder")
                self.registered = True
                log.info("🌐 registered with the embed gateway as %s (%s)",
                         self.settings.node_name, self.encoder_info)  # fmt: skip
            await self._heartbeat()
            got = await self._poll()
        except GatewayAuthRejected as exc:
            return self.rounds.refused(exc)
        except GatewayNodeRefused as exc:
            return self.rounds.node_refused(exc)
        except GatewayNotRegistered as exc:
            self.registered = False
            return self.rounds.failed("embed gateway", exc.message)
        except (GatewayError, StoreUnavailable, NetworkError) as exc:
            what = "updateNode" if not self.registered else "embed gateway"
            return self.rounds.failed(what, exc.message)
        self.rounds.succeeded()
        if got and await free_capacity(self.scheduler, self.store):
            return 0.0
        return jittered(self.settings.gateway_poll_interval)

    async def _heartbeat(self) -> None:
        answer = await self.client.heartbeat()
        self.needs_update, self.latest_version = read_update_notice(
            answer, was=self.needs_update, gateway="embed gateway"
        )

    async def _poll(self) -> bool:
        if await free_capacity(self.scheduler, self.store) <= 0:
            return False
        offer = await self.client.my_job()
        if offer is None:
            return False
        return await self.submit(offer)

    async def submit(self, offer: dict[str, Any]) -> bool:
        """Validate and queue one offered job; ``True`` if a new job was created."""
        try:
            request = DirectJobRequest.model_validate(offer)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            log.warning("🌐 embed gateway offered an invalid job (skipped): %s", problems[:500])
            return False
        try:
            await check_public_url(
                request.webhook_url,
                allow_private=self.settings.allow_private_urls,
                what="embed job webhook_url",
                ipfs_rpc=self.settings.ipfs_api_addr,
            )
        except UnsafeUrl as exc:
            log.warning("🌐 embed job %s/%s skipped: %s", request.owner, request.permlink,
                        exc.message)  # fmt: skip
            return False
        new = to_new_job(request, self.settings, kind=SourceKind.EMBED)
        try:
            offered = await asyncio.to_thread(
                self.store.offer, new, queue_max=self.settings.queue_max,
                dedup_window_s=self.settings.dedup_window_hours * 3600,
                report_target=request.report_target(),
            )  # fmt: skip
        except QueueFull as exc:
            log.warning("🌐 embed job %s/%s not taken: %s", request.owner, request.permlink,
                        exc.message)  # fmt: skip
            return False
        job = offered.job
        if offered.outcome == "created":
            self.submitted += 1
            log.info("📥 embed job %s/%s → local job %s", request.owner, request.permlink, job.id)
        else:
            self.duplicates += 1
            log.info(
                "🌐 embed job %s/%s offered again: job %s (%s) %s", request.owner,
                request.permlink, job.id, job.state.value, OFFER_LOG[offered.outcome],
            )  # fmt: skip
        if offered.outcome in ("created", "reopened"):
            self.scheduler.wake()
            return True
        return False


async def run_embed_source(
    settings: Settings,
    store: JobStore,
    scheduler: Scheduler,
    identity: NodeIdentity,
    stop: asyncio.Event,
    *,
    webhooks: WebhookHooks | None = None,
    deliverer: OutboxDeliverer | None = None,
) -> None:
    """The embed gateway source as one task (see :class:`EmbedSource`)."""
    source = EmbedSource(
        settings, store, scheduler, identity, webhooks=webhooks, deliverer=deliverer
    )
    await source.run(stop)


__all__ = ["EmbedGatewayClient", "EmbedSource", "run_embed_source"]
