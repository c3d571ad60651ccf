"""The :class:`~speak_encoder.node.hooks.SourceHooks` of legacy gateway jobs, and their delivery.

* ``progress`` (every ~2 s per running job, every stage) schedules a ``pingJob`` — the first at
  once, then at most one per ``PING_MIN_INTERVAL_S`` (10 s) when the progress moved a point, and
  at least one per ``PING_KEEPALIVE_S`` (30 s) anyway, never two in flight per job. Every
  ``OWNERSHIP_CHECK_S`` (and whenever a ping is refused as "not yours") ``jobstatus`` is asked:
  a job the gateway gave to another DID is cancelled locally (never finished).
* ``completion_report`` (the job's report stage) builds ``finishJob``, stored in the store's
  outbox with the completion itself under the idempotency key ``<job_id>:finishJob``: a crash
  and a resumed report stage never send a second one. ``failure_report`` does the same with
  ``failJob`` (``<job_id>:failJob``; ``retryable`` is the typed error's), ``released``
  (shutdown) with ``rejectJob`` (``<job_id>:rejectJob``), and cancels the local job: a job
  handed back is not resumed at the next start.
* the outbox items (kinds ``gateway.finishJob``/``gateway.failJob``/``gateway.rejectJob``) are
  delivered by :meth:`GatewayHooks.deliver_due`, signed at delivery, retried with back-off
  (:class:`~speak_encoder.backoff.Backoff`); a refusal (:class:`GatewayRejected`, not
  retryable) gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from speak_encoder.backoff import Backoff
from speak_encoder.config import Settings
from speak_encoder.errors import SpeakEncoderError, StoreUnavailable
from speak_encoder.node.hooks import report_key
from speak_encoder.node.models import Job, OutboxEntry, OutboxItem, Stage
from speak_encoder.node.store import JobStore
from speak_encoder.sources.gateway_client import (
    GATEWAY_KINDS,
    KIND_FAIL,
    KIND_FINISH,
    KIND_REJECT,
    LegacyGatewayClient,
    fail_body,
)
from speak_encoder.sources.gateway_protocol import (
    GatewayAuthRejected,
    GatewayError,
    GatewayRejected,
)

log = logging.getLogger(__name__)

#: Pings: at most one per this many seconds per job (§2) …
PING_MIN_INTERVAL_S: Final = 10.0
#: … and at least one per this many seconds (the gateway re-assigns after ~5 min without one).
PING_KEEPALIVE_S: Final = 30.0
#: Per-job ping states kept before those silent for an hour are dropped.
PING_STATES_KEPT: Final = 256
#: Seconds between two ``jobstatus`` ownership checks of a running job.
OWNERSHIP_CHECK_S: Final = 60.0
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


__all__ = [
    "PING_KEEPALIVE_S",
    "PING_MIN_INTERVAL_S",
    "GatewayHooks",
    "ping_figures",
]
