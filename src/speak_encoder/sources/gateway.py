"""The legacy 3Speak encoder gateway (protocols.md §2): poll, claim, ping, finish.

Three pieces:

* :class:`LegacyGatewayClient` — one method per route (``updateNode``, ``getJob``, ``myJob``,
  ``acceptJob``, ``jobstatus/{id}``, ``pingJob``, ``finishJob``, ``failJob``, ``rejectJob``,
  ``heartbeat``, ``stats``), each answer turned into a value or an error of
  :mod:`~speak_encoder.sources.gateway_protocol`.
* :class:`GatewayHooks` — the :class:`~speak_encoder.node.hooks.SourceHooks` of gateway jobs:

  - ``progress`` (every ~2 s per running job, every stage) schedules a ``pingJob`` — the first at
    once, then at most one per ``PING_MIN_INTERVAL_S`` (10 s) when the progress moved a point,
    and at least one per ``PING_KEEPALIVE_S`` (30 s) anyway, never two in flight per job. Every
    ``OWNERSHIP_CHECK_S`` (and whenever a ping is refused as "not yours") ``jobstatus`` is
    asked: a job the gateway gave to another DID is cancelled locally (never finished).
  - ``completion_report`` (the job's report stage) builds ``finishJob``, stored in the
    store's outbox with the completion itself under the idempotency key
    ``<job_id>:finishJob``: a crash and a resumed report stage never send a second one.
    ``failure_report`` does the same with ``failJob`` (``<job_id>:failJob``), ``released``
    (shutdown) with ``rejectJob`` (``<job_id>:rejectJob``), and cancels the local job: a job
    handed back is not resumed at the next start.
  - the outbox items (kinds ``gateway.finishJob``/``gateway.failJob``/``gateway.rejectJob``)
    are delivered by :meth:`GatewaySource.deliver_due`, signed at delivery, retried with
    back-off; a 4xx other than 401/403/429 gives up.
* :class:`GatewaySource` — the task the service's lifespan owns: ``updateNode`` at start
  (failure logged, retried at the next cycle, polling goes on), then every
  ``GATEWAY_POLL_INTERVAL`` (± 20 %): ``heartbeat`` (``needs_update`` is logged and kept in
  :attr:`GatewaySource.needs_update`), and — only while the node has free capacity — ``myJob``
  (newer gateways) then ``getJob``. A job offered is checked (``input.uri`` a remote source;
  http(s) through the SSRF guard), claimed (``jobstatus`` unassigned or ours → ``acceptJob``
  → ``jobstatus`` assigned to our DID) and submitted to the store (kind ``gateway``,
  ``external_id`` = the gateway's id, dedup key ``gateway:<id>``, the full ladder). Race
  answers are skipped silently; every gateway error is retried with back-off and jitter and
  never crashes the node; a refused signature (401/403) logs "check ENCODER_PRIVATE_KEY".

A restart mid-job resumes the job from the store: no second ``acceptJob`` (the poller only
claims jobs the store does not hold) and no second ``finishJob`` (the outbox key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

import httpx

from speak_encoder import __version__
from speak_encoder.backoff import Backoff
from speak_encoder.config import Settings
from speak_encoder.errors import (
    InvalidSourceReference,
    NetworkError,
    QueueFull,
    SpeakEncoderError,
    StoreUnavailable,
)
from speak_encoder.node.hooks import report_key
from speak_encoder.node.identity import NodeIdentity, normalize_did
from speak_encoder.node.models import (
    Job,
    JobState,
    NewJob,
    OutboxEntry,
    OutboxItem,
    SourceKind,
    Stage,
)
from speak_encoder.node.scheduler import Scheduler
from speak_encoder.node.store import JobStore
from speak_encoder.pipeline.source import parse_source
from speak_encoder.sources.gateway_protocol import (
    GatewayAuthRejected,
    GatewayClient,
    GatewayError,
    GatewayNodeRefused,
    GatewayNotRegistered,
    GatewayRejected,
    PollRounds,
    free_capacity,
    is_done_answer,
    is_not_ours_answer,
    is_race_answer,
    iso_now,
    jittered,
    json_object,
    local_peer_id,
    raise_for_answer,
    read_update_notice,
    sleep_until,
)
from speak_encoder.sources.ssrf import UnsafeUrl, check_public_url

log = logging.getLogger(__name__)

#: Pings: at most one per this many seconds per job (§2) …
PING_MIN_INTERVAL_S: Final = 10.0
#: … and at least one per this many seconds (the gateway re-assigns after ~5 min without one).
PING_KEEPALIVE_S: Final = 30.0
#: Per-job ping states kept before those silent for an hour are dropped.
PING_STATES_KEPT: Final = 256
#: Seconds between two ``jobstatus`` ownership checks of a running job.
OWNERSHIP_CHECK_S: Final = 60.0
#: Outbox kinds of this module (the webhook deliverer leaves them alone).
KIND_FINISH: Final = "gateway.finishJob"
KIND_FAIL: Final = "gateway.failJob"
KIND_REJECT: Final = "gateway.rejectJob"
GATEWAY_KINDS: Final = frozenset({KIND_FINISH, KIND_FAIL, KIND_REJECT})
#: Outbox delivery: attempts before an item is given up, first back-off and its cap (seconds).
REPORT_MAX_ATTEMPTS: Final = 30
REPORT_RETRY_BASE_S: Final = 10.0
REPORT_RETRY_MAX_S: Final = 900.0
#: Seconds a node holds the gateway reports it claimed (several gateway timeouts).
REPORT_CLAIM_S: Final = 300.0
#: Reports claimed per delivery pass.
DELIVERY_BATCH: Final = 100
#: Seconds ``released`` may spend on ``rejectJob`` during shutdown (the outbox keeps it anyway).
RELEASE_TIMEOUT_S: Final = 5.0
#: How a progress fraction of each stage maps onto ``progressPct`` (start, end of the stage).
PCT_RANGES: Final[dict[Stage, tuple[float, float]]] = {
    Stage.FETCH: (1.0, 10.0),
    Stage.PROBE: (10.0, 11.0),
    Stage.PLAN: (11.0, 12.0),
    Stage.ENCODE: (12.0, 88.0),
    Stage.VERIFY: (88.0, 92.0),
    Stage.PUBLISH: (92.0, 98.0),
    Stage.REPORT: (99.0, 99.0),
}


def ping_figures(stage: Stage, fraction: float) -> tuple[float, float]:
    """``(progressPct ≥ 1, download_pct 0..100)`` of a job in ``stage`` with ``fraction`` done."""
    fraction = min(max(fraction if fraction == fraction else 0.0, 0.0), 1.0)
    start, end = PCT_RANGES.get(stage, (1.0, 1.0))
    pct = max(1.0, round(start + (end - start) * fraction, 1))
    download = round(fraction * 100, 1) if stage is Stage.FETCH else 100.0
    return pct, download


def fail_body(job_id: str, error: str, *, retryable: bool) -> dict[str, Any]:
    """The exact §2 ``failJob`` payload."""
    now = iso_now()
    return {
        "job_id": job_id,
        "error": {
            "error": error,
            "timestamp": now,
            "retryable": retryable,
            "encoder_version": __version__,
        },
        "timestamp": now,
        "encoder_time": int(time.time() * 1000),
    }


# --- the client -------------------------------------------------------------------------------


class LegacyGatewayClient(GatewayClient):
    """One method per §2 route. Raises :class:`GatewayError` (and subclasses) on failure."""

    def __init__(
        self,
        settings: Settings,
        identity: NodeIdentity,
        *,
        base_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(settings, identity, base_url or settings.gateway_url, transport=transport)
        self.did = identity.did

    def owns(self, status: dict[str, Any]) -> bool:
        """Whether a ``jobstatus`` answer names this node as ``assigned_to``."""
        assigned = status.get("assigned_to")
        return isinstance(assigned, str) and normalize_did(assigned) == normalize_did(self.did)

    async def stats(self) -> dict[str, Any]:
        return json_object(await self.http.get("stats"))

    async def get_job(self) -> dict[str, Any] | None:
        """An unassigned job, or ``None`` (404)."""
        answer = await self.http.get("getJob")
        if answer.status == 404:
            return None
        job = json_object(answer)
        return job or None

    async def job_status(self, job_id: str) -> dict[str, Any] | None:
        """``{"assigned_to", "status", …}``, or ``None`` for an unknown job (404)."""
        answer = await self.http.get(f"jobstatus/{job_id}")
        if answer.status == 404:
            return None
        return json_object(answer)

    async def accept_job(self, job_id: str) -> bool:
        """Claim a job; ``False`` when another node got it (a race answer)."""
        answer = await self.http.post_jws("acceptJob", {"job_id": job_id})
        if answer.ok:
            return True
        if is_race_answer(answer):
            log.debug("acceptJob %s: %s (another node got it)", job_id, answer.describe())
            return False
        raise_for_answer(answer)
        return True  # pragma: no cover - raise_for_answer raised

    async def ping_job(self, job_id: str, progress_pct: float, download_pct: float) -> bool:
        """``False`` when the gateway says the job is not ours (any more)."""
        answer = await self.http.post_jws(
            "pingJob",
            {"job_id": job_id, "progressPct": progress_pct, "download_pct": download_pct},
        )
        if answer.ok:
            return True
        if is_not_ours_answer(answer):
            log.debug("pingJob %s: %s", job_id, answer.describe())
            return False
        raise_for_answer(answer)
        return True  # pragma: no cover

    async def finish_job(self, job_id: str, cid: str) -> None:
        """Report completion. A 5xx saying "already/completed/duplicate" is a success; a
        ``{"status": "error"}`` answer is :class:`GatewayRejected`."""
        answer = await self.http.post_jws("finishJob", {"job_id": job_id, "output": {"cid": cid}})
        data = answer.obj
        if 200 <= answer.status < 300:
            if data is not None and data.get("status") == "error":
                raise GatewayRejected(f"finishJob: {answer.describe()}", status=answer.status)
            if data is None and answer.text.startswith("an HTML page"):
                raise GatewayError(f"finishJob: {answer.describe()}", status=answer.status)
            return  # a missing status is a success
        if is_done_answer(answer):
            log.info("finishJob %s: %s — already done: success", job_id, answer.message)
            return
        raise_for_answer(answer)

    async def fail_job(self, payload: dict[str, Any]) -> None:
        answer = await self.http.post_jws("failJob", payload)
        raise_for_answer(answer)

    async def reject_job(self, job_id: str) -> None:
        answer = await self.http.post_jws("rejectJob", {"job_id": job_id})
        if is_race_answer(answer) or answer.status == 404:
            return  # not ours any more: nothing to give back
        raise_for_answer(answer)

    async def deliver(self, item: OutboxItem) -> None:
        """Send one outbox item of this module (raises :class:`GatewayError` on failure)."""
        payload = dict(item.payload)
        job_id = str(payload.get("job_id", ""))
        if item.kind == KIND_FINISH:
            output = payload.get("output")
            cid = output.get("cid") if isinstance(output, dict) else None
            if not isinstance(cid, str) or not cid:
                raise GatewayRejected("finishJob: the stored report has no CID")
            await self.finish_job(job_id, cid)
        elif item.kind == KIND_FAIL:
            await self.fail_job(payload)
        elif item.kind == KIND_REJECT:
            await self.reject_job(job_id)
        else:
            raise GatewayRejected(f"unknown gateway report kind {item.kind!r}")


# --- the hooks ---------------------------------------------------------------------------------


@dataclass
class _PingState:
    last_sent: float | None = None
    last_pct: float = -1.0
    last_check: float = 0.0
    task: asyncio.Task[None] | None = None
    lost: bool = False


class GatewayHooks:
    """:class:`~speak_encoder.node.hooks.SourceHooks` of legacy gateway jobs."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        client: LegacyGatewayClient,
        *,
        clock: Any = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.clock = clock
        self.wake_deliverer = asyncio.Event()
        self._pings: dict[str, _PingState] = {}
        self._auth_warned = False

    # --- progress → pingJob ------------------------------------------------------------------

    def progress(self, job: Job, stage: Stage, fraction: float) -> None:
        if not job.external_id:
            return
        now = self.clock()
        if len(self._pings) > PING_STATES_KEPT:  # jobs that ended without a hook (cancelled)
            for stale in [k for k, v in self._pings.items() if now - (v.last_sent or now) > 3600]:
                self._pings.pop(stale, None)
        state = self._pings.setdefault(job.id, _PingState())
        if state.lost or (state.task is not None and not state.task.done()):
            return
        pct, download = ping_figures(stage, fraction)
        if state.last_sent is not None:
            since = now - state.last_sent
            moved = abs(pct - state.last_pct) >= 1.0
            if since < PING_MIN_INTERVAL_S or (not moved and since < PING_KEEPALIVE_S):
                return
        check = state.last_sent is not None and now - state.last_check >= OWNERSHIP_CHECK_S
        state.last_sent, state.last_pct = now, pct
        if check or state.last_check == 0.0:
            state.last_check = now
        state.task = asyncio.get_running_loop().create_task(
            self._ping(job, pct, download, check=check), name=f"gateway-ping-{job.id}"
        )

    async def _ping(self, job: Job, pct: float, download: float, *, check: bool) -> None:
        gid = str(job.external_id)
        try:
            ours = await self.client.ping_job(gid, pct, download)
            self._auth_warned = False
            if not ours or check:
                status = await self.client.job_status(gid)
                if status is None or not self.client.owns(status):
                    holder = (status or {}).get("assigned_to") or "nobody"
                    await self._lost(job, f"the gateway now assigns it to {holder}")
        except GatewayAuthRejected as exc:
            if not self._auth_warned:
                log.error("pingJob of job %s refused: %s", job.id, exc.message)
                self._auth_warned = True
        except GatewayError as exc:
            log.warning("pingJob of job %s failed (next one soon): %s", job.id, exc.message)
        except StoreUnavailable as exc:
            log.warning("job %s: %s", job.id, exc.message)

    async def _lost(self, job: Job, why: str) -> None:
        state = self._pings.setdefault(job.id, _PingState())
        if state.lost:
            return
        state.lost = True
        log.warning(
            "🚫 gateway job %s (local %s) is no longer ours: %s — cancelling it here",
            job.external_id, job.id, why,
        )  # fmt: skip
        await asyncio.to_thread(self.store.request_cancel, job.id)

    def _forget(self, job_id: str) -> None:
        state = self._pings.pop(job_id, None)
        if state is not None and state.task is not None and not state.task.done():
            state.task.cancel()

    # --- outbox reports ----------------------------------------------------------------------

    def _entry(self, job: Job, kind: str, payload: dict[str, Any]) -> OutboxEntry:
        action = kind.split(".", 1)[1]
        return OutboxEntry(
            kind=kind,
            target=self.client.base_url,
            payload=payload,
            headers={},
            idempotency_key=report_key(job, action),
        )

    def _enqueue(self, job: Job, kind: str, payload: dict[str, Any]) -> bool:
        return self.store.outbox_put(job.id, self._entry(job, kind, payload))

    def completion_report(self, job: Job, result: dict[str, Any]) -> OutboxEntry | None:
        cid = result.get("cid")
        if not cid:
            raise GatewayRejected(f"job {job.id} has no CID to report")  # a bug upstream of here
        payload = {"job_id": str(job.external_id), "output": {"cid": str(cid)}}
        return self._entry(job, KIND_FINISH, payload)

    async def completed(self, job: Job, result: dict[str, Any]) -> None:
        self._forget(job.id)
        log.info("📮 gateway job %s: finishJob queued (%s)", job.external_id, result.get("cid"))
        self.wake_deliverer.set()

    def failure_report(self, job: Job, error: SpeakEncoderError) -> OutboxEntry | None:
        if not job.external_id:
            return None
        payload = fail_body(job.external_id, error.message[:1000], retryable=error.retryable)
        return self._entry(job, KIND_FAIL, payload)

    async def failed(self, job: Job, error: SpeakEncoderError) -> None:
        self._forget(job.id)
        if job.external_id:
            log.info("📮 gateway job %s: failJob queued (%s)", job.external_id, error.kind)
            self.wake_deliverer.set()

    async def released(self, job: Job) -> None:
        """Shutdown: give the job back (``rejectJob``) and do not resume it at the next start."""
        self._forget(job.id)
        if not job.external_id:
            return
        await asyncio.to_thread(self._enqueue, job, KIND_REJECT, {"job_id": job.external_id})
        await asyncio.to_thread(self.store.request_cancel, job.id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.deliver_due(kinds={KIND_REJECT}), RELEASE_TIMEOUT_S)

    # --- delivery ------------------------------------------------------------------------------

    async def deliver_due(self, *, kinds: frozenset[str] | set[str] = GATEWAY_KINDS) -> int:
        """Claim and deliver the due reports to this gateway once (one at a time, in order);
        returns how many were tried."""
        items = await asyncio.to_thread(
            self.store.outbox_claim, self.settings.node_name, kinds=kinds,
            lease_seconds=REPORT_CLAIM_S, limit=DELIVERY_BATCH, target=self.client.base_url,
        )  # fmt: skip
        for item in items:
            await self._deliver(item)
        return len(items)

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            await self.client.deliver(item)
        except GatewayRejected as exc:
            await asyncio.to_thread(
                self.store.outbox_failed, item.id, error=exc.message, next_attempt_at=None,
                owner=self.settings.node_name,
            )  # fmt: skip
            log.error("📮 %s given up: %s", item.idempotency_key, exc.message)
            return
        except GatewayError as exc:
            failures = item.attempts + 1
            base = min(REPORT_RETRY_BASE_S, self.settings.gateway_poll_interval)
            delay = Backoff(base, REPORT_RETRY_MAX_S).delay(failures)
            give_up = failures >= REPORT_MAX_ATTEMPTS
            await asyncio.to_thread(
                self.store.outbox_failed, item.id, error=exc.message,
                next_attempt_at=None if give_up else time.time() + delay,
                owner=self.settings.node_name,
            )  # fmt: skip
            if give_up:
                log.error("📮 %s given up after %d attempts: %s", item.idempotency_key,
                          failures, exc.message)  # fmt: skip
            else:
                log.warning("📮 %s failed (attempt %d, next in %.0f s): %s",
                            item.idempotency_key, failures, delay, exc.message)  # fmt: skip
            return
        await asyncio.to_thread(self.store.outbox_delivered, item.id, self.settings.node_name)
        log.info("📮 %s delivered", item.idempotency_key)


# --- the poller --------------------------------------------------------------------------------


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
        try:
            while not stop.is_set():
                delay = await self.cycle()
                if await sleep_until(stop, delay):
                    break
            await deliverer  # runs until cancelled
        finally:
            deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliverer
            await self.client.aclose()

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
