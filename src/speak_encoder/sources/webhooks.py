"""Webhooks of direct and embed jobs (docs/protocols.md §5): progress, completion, failure.

Every report of a job goes through the job store's outbox, one job's reports one after another
(see :mod:`speak_encoder.node.store.outbox`):

* **Progress** — :meth:`WebhookHooks.progress` (called by the scheduler about every 2 s) queues
  ``{"owner","permlink","progress","stage"}`` for ``<webhook_url without trailing />/progress``,
  at most one per ``PROGRESS_MIN_INTERVAL_S`` per job unless the overall progress moved
  ``PROGRESS_MIN_STEP`` points (one throttle across all stages; ``progress`` is the job's
  overall 0..100 figure, ``stage`` is ``download``/``probe``/``plan``/``encode``/``verify``/
  ``upload``/``report``). Best effort: one attempt with ``PROGRESS_TIMEOUT_S``, a newer ping
  replaces one not yet sent, failures are logged and dropped. The store refuses a progress
  report once the job's final report was queued, and a job's rows leave in order: the real
  server's ``/webhook/progress`` sets a video back to "processing", so a ping arriving after
  the completion would un-publish it — that cannot happen here.
* **Completion / failure** — :meth:`WebhookHooks.completion_report` (the report stage) and
  :meth:`WebhookHooks.failure_report` (stored by the scheduler in the same transaction as
  the completion or the failure: no report leaves before the job's end is stored) put the
  body, serialised once, into the outbox with the idempotency key
  ``<job_id>:complete`` / ``<job_id>:failed`` (``…:<generation>`` for a job reopened or
  retried; a second enqueue is a no-op). :class:`OutboxDeliverer` claims due rows under a lease
  (one node of a fleet sends each) and delivers them at least once, surviving restarts:
  ``WEBHOOK_TIMEOUT`` per request; network errors, 5xx, 408 and 429 are retried after
  ``WEBHOOK_RETRY_BASE × 2^n`` (capped at ``WEBHOOK_RETRY_MAX``, ±10 % jitter); other 4xx and
  3xx (redirects are not followed) give up at once; ``WEBHOOK_MAX_ATTEMPTS`` failures give up.
* **Where to** — a row goes to the job's *current* ``webhook_url`` with its *current*
  ``api_key``, read from the store when the row is claimed: a job offered again with a new
  callback token (the embed server mints one per claim, and answers an old one with 401) sends
  every later report with the new one, and a refusal that raced the change is sent again.

Every POST carries ``Content-Type: application/json``, ``User-Agent: speak-encoder/<version>``,
``X-API-Key: <request.api_key>``, and, when ``WEBHOOK_SECRET`` is set,
``X-Speak-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` (verify with
:func:`verify_signature`); completion and failure carry ``Idempotency-Key: <job_id>:<event>``.

Before each POST the URL goes through the SSRF guard again (:class:`~speak_encoder.sources.ssrf.
UrlGuard`) and the request is sent to the address that was checked (see ``ssrf`` for DNS
rebinding). ``job_id`` in a body is the job's ``external_id`` when its source set one, else the
node's job id (what ``POST /encode`` returned).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from speak_encoder import USER_AGENT
from speak_encoder.backoff import Backoff
from speak_encoder.config import Settings
from speak_encoder.errors import NetworkError, SpeakEncoderError, StoreUnavailable
from speak_encoder.http_errors import retryable_status
from speak_encoder.node.hooks import report_key
from speak_encoder.node.models import Job, OutboxEntry, OutboxItem, Stage
from speak_encoder.node.store import JobStore
from speak_encoder.sources.direct_request import WIRE_STAGES, overall_progress, public_error
from speak_encoder.sources.ssrf import PinnedUrl, UnsafeUrl, UrlGuard

log = logging.getLogger(__name__)

#: The master playlist's name in a published folder (``pipeline.ffmpeg.MASTER_NAME``; not
#: imported from there so that an idle node does not load the encoding pipeline).
MASTER_NAME = "manifest.m3u8"
#: Outbox ``kind`` of completion and failure webhooks, and of progress webhooks.
OUTBOX_KIND = "webhook"
PROGRESS_KIND = "webhook.progress"
WEBHOOK_KINDS = frozenset({OUTBOX_KIND, PROGRESS_KIND})
#: Seconds added to a claim's lease beyond two request timeouts.
CLAIM_MARGIN_S = 30.0
#: Progress pings: timeout, throttle, concurrency and how many jobs' throttles are remembered.
PROGRESS_TIMEOUT_S = 5.0
PROGRESS_MIN_INTERVAL_S = 10.0
PROGRESS_MIN_STEP = 5
PROGRESS_MAX_IN_FLIGHT = 8
PROGRESS_TRACKED_JOBS = 1024
#: Outbox delivery: seconds between passes (a new row wakes it), rows per pass, parallel POSTs.
DELIVERY_POLL_S = 5.0
DELIVERY_BATCH = 200
DELIVERY_CONCURRENCY = 8
#: Jitter of a delivery back-off (± this fraction).
DELIVERY_JITTER = 0.1
#: HTTP statuses that mean "try again later" although they are 4xx.
RETRY_4XX = frozenset({408, 425, 429})
#: A signature older than this (seconds) fails :func:`verify_signature`.
SIGNATURE_TOLERANCE_S = 300.0

SIGNATURE_HEADER = "X-Speak-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


# --- bodies -----------------------------------------------------------------------------------


def iso_utc(epoch: float) -> str:
    """``2026-11-28T15:24:58.236Z`` (what the existing encoder sent)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _job_id(job: Job) -> str:
    return job.external_id or job.id


def _processing_seconds(job: Job, now: float) -> float:
    started = job.started_at if job.started_at is not None else job.created_at
    return round(max(0.0, now - started), 3)


def completion_body(
    job: Job, result: dict[str, Any], settings: Settings, *, now: float
) -> dict[str, Any]:
    """The completion webhook (docs/protocols.md §5) for ``job`` with the runner's ``result``."""
    request = job.request
    cid = str(result["cid"])
    qualities = result.get("qualities_encoded")
    if qualities is None:
        qualities = [r["name"] for r in result.get("renditions") or []]
    body: dict[str, Any] = {
        "owner": request.get("owner"),
        "permlink": request.get("permlink"),
        "input_cid": request.get("input_cid"),
        "status": "complete",
        "progress": 100,
        "manifest_cid": cid,
        "video_url": f"ipfs://{cid}/{MASTER_NAME}",
        "job_id": _job_id(job),
        "processing_time_seconds": _processing_seconds(job, now),
        "qualities_encoded": [str(q) for q in qualities],
        "encoder_id": settings.node_name,
        "timestamp": iso_utc(now),
    }
    for optional in ("frontend_app", "originalFilename"):
        if request.get(optional) is not None:
            body[optional] = request[optional]
    if result.get("thumbnail"):  # the poster (ipfs://<cid>/thumbnail.jpg), when one was made
        body["thumbnail_url"] = str(result["thumbnail"])
    return body


def failure_body(job: Job, error: str, settings: Settings, *, now: float) -> dict[str, Any]:
    """The failure webhook (docs/protocols.md §5): sent once, when the job failed for good."""
    request = job.request
    return {
        "owner": request.get("owner"),
        "permlink": request.get("permlink"),
        "input_cid": request.get("input_cid"),
        "status": "failed",
        "job_id": _job_id(job),
        "processing_time_seconds": _processing_seconds(job, now),
        "qualities_encoded": [],
        "encoder_id": settings.node_name,
        "error": public_error(error, settings),
        "timestamp": iso_utc(now),
    }


def progress_url(webhook_url: str) -> str:
    return webhook_url.rstrip("/") + "/progress"


def dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


# --- signatures -------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = SIGNATURE_TOLERANCE_S,
) -> bool:
    """Check an ``X-Speak-Signature`` header (for receivers and tests), in constant time."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))


def _base_headers() -> dict[str, str]:
    """The stored headers of a webhook row (``X-API-Key`` is added at delivery, from the
    job's current request: never stored twice, always the newest)."""
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT}


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


class _Sender:
    """One POST to a checked, pinned address (a fresh connection each time: no TLS session
    made for one host name is ever reused for another)."""

    def __init__(self, settings: Settings, guard: UrlGuard | None) -> None:
        self.settings = settings
        self.guard = guard or UrlGuard.from_settings(settings)
        self._ssl: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def signed(self, headers: dict[str, str], body: bytes, now: float) -> dict[str, str]:
        secret = self.settings.webhook_secret
        if secret is not None and secret.get_secret_value():
            headers = {**headers, SIGNATURE_HEADER: sign(secret.get_secret_value(), int(now), body)}
        return headers

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, timeout: float, what: str
    ) -> httpx.Response:
        async with asyncio.timeout(timeout):
            pinned: PinnedUrl = await self.guard.pin(url, what=what)
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, verify=self._ssl_context()
        ) as client:
            return await client.post(
                pinned.connect_url,
                content=body,
                headers={**headers, "Host": pinned.host_header},
                extensions={"sni_hostname": pinned.host},
            )


# --- the hooks --------------------------------------------------------------------------------


class ProgressThrottle:
    """≤ 1 ping per ``interval`` per job unless progress moved ``step`` points (bounded)."""

    def __init__(
        self,
        *,
        interval: float = PROGRESS_MIN_INTERVAL_S,
        step: int = PROGRESS_MIN_STEP,
        max_jobs: int = PROGRESS_TRACKED_JOBS,
    ) -> None:
        self.interval = interval
        self.step = step
        self.max_jobs = max_jobs
        self._last: OrderedDict[str, tuple[float, int, str]] = OrderedDict()

    def due(self, job_id: str, progress: int, stage: str, now: float) -> bool:
        last = self._last.get(job_id)
        if last is not None:
            at, value, last_stage = last
            if value == progress and last_stage == stage:
                return False
            if now - at < self.interval and abs(progress - value) < self.step:
                return False
        return True

    def sent(self, job_id: str, progress: int, stage: str, now: float) -> None:
        self._last[job_id] = (now, progress, stage)
        self._last.move_to_end(job_id)
        while len(self._last) > self.max_jobs:
            self._last.popitem(last=False)

    def forget(self, job_id: str) -> None:
        self._last.pop(job_id, None)


class WebhookHooks:
    """:class:`~speak_encoder.node.hooks.SourceHooks` of direct and embed jobs.

    ``clock`` (monotonic) drives the progress throttle, ``wall_clock`` the timestamps; both
    are injectable for tests. ``on_enqueue`` is called after a report was queued (wire it to
    :meth:`OutboxDeliverer.notify`).
    """

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_enqueue: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_enqueue = on_enqueue
        self.throttle = ProgressThrottle()
        self._queuing: dict[str, asyncio.Task[None]] = {}

    def _notify(self) -> None:
        if self.on_enqueue is not None:
            self.on_enqueue()

    # --- progress (through the outbox, best effort) -----------------------------------------

    def progress(self, job: Job, stage: Stage, fraction: float) -> None:
        url = job.request.get("webhook_url")
        if not isinstance(url, str) or not url:
            return
        value = overall_progress(stage, fraction)
        word = WIRE_STAGES.get(stage, str(stage))
        now = self.clock()
        if not self.throttle.due(job.id, value, word, now):
            return
        busy = self._queuing.get(job.id)
        if (busy is not None and not busy.done()) or len(self._queuing) >= PROGRESS_MAX_IN_FLIGHT:
            log.debug("progress report of job %s skipped: the last one is still queuing", job.id)
            return
        self.throttle.sent(job.id, value, word, now)
        body = {
            "owner": job.request.get("owner"),
            "permlink": job.request.get("permlink"),
            "progress": value,
            "stage": word,
        }
        entry = OutboxEntry(
            kind=PROGRESS_KIND,
            target=progress_url(url),
            payload={"event": "progress", "body": dumps(body)},
            headers=_base_headers(),
            idempotency_key=f"{report_key(job, 'progress')}:{secrets.token_hex(6)}",
            progress=True,
        )
        task = asyncio.get_running_loop().create_task(
            self._queue_progress(job.id, entry), name=f"progress-{job.id}"
        )
        self._queuing[job.id] = task
        job_id = job.id

        def done(_task: asyncio.Task[None]) -> None:
            self._queuing.pop(job_id, None)

        task.add_done_callback(done)

    async def _queue_progress(self, job_id: str, entry: OutboxEntry) -> None:
        try:
            queued = await asyncio.to_thread(self.store.outbox_progress, job_id, entry)
        except StoreUnavailable as exc:
            log.debug("progress report of job %s not queued: %s", job_id, exc.message)
            return
        if queued:
            self._notify()
        else:
            log.debug("progress report of job %s refused: its final report is queued", job_id)

    async def wait_idle(self) -> None:
        """Wait until the progress reports being queued are in the store (tests, shutdown)."""
        while self._queuing:
            await asyncio.gather(*list(self._queuing.values()), return_exceptions=True)

    async def aclose(self) -> None:
        await self.wait_idle()

    # --- completion and failure (through the outbox) ----------------------------------------

    def _entry(self, job: Job, body: dict[str, Any], event: str) -> OutboxEntry:
        key = report_key(job, event)
        wire_key = key.replace(job.id, _job_id(job), 1)
        return OutboxEntry(
            kind=OUTBOX_KIND,
            target=str(job.request["webhook_url"]),
            payload={"event": event, "body": dumps(body)},
            headers={**_base_headers(), IDEMPOTENCY_HEADER: wire_key},
            idempotency_key=key,
        )

    def completion_report(self, job: Job, result: dict[str, Any]) -> OutboxEntry | None:
        if not job.request.get("webhook_url"):
            log.warning("job %s has no webhook_url: nothing to report", job.id)
            return None
        body = completion_body(job, result, self.settings, now=self.wall_clock())
        return self._entry(job, body, "complete")

    async def completed(self, job: Job, result: dict[str, Any]) -> None:
        self.throttle.forget(job.id)
        if job.request.get("webhook_url"):
            log.info("🔔 job %s: completion webhook queued", job.id)
            self._notify()

    def failure_report(self, job: Job, error: SpeakEncoderError) -> OutboxEntry | None:
        if not job.request.get("webhook_url"):
            return None
        body = failure_body(job, error.message, self.settings, now=self.wall_clock())
        return self._entry(job, body, "failed")

    async def failed(self, job: Job, error: SpeakEncoderError) -> None:
        self.throttle.forget(job.id)
        if job.request.get("webhook_url"):
            log.info("🔔 job %s: failure webhook queued (%s)", job.id, error.kind)
            self._notify()

    async def released(self, job: Job) -> None:
        self.throttle.forget(job.id)


# --- the outbox -------------------------------------------------------------------------------


def _destination(item: OutboxItem) -> tuple[str, dict[str, str]]:
    """Where ``item`` goes *now* and with which headers: the job's current ``webhook_url``
    and ``api_key`` (a job offered again may have new ones), else what was stored."""
    headers = {k: v for k, v in item.headers.items() if k.lower() != "x-api-key"}
    request = item.request
    if request is None:
        return item.target, dict(item.headers)
    url = request.get("webhook_url")
    target = item.target
    if isinstance(url, str) and url:
        target = progress_url(url) if item.progress else url
    api_key = request.get("api_key")
    if isinstance(api_key, str) and api_key:
        headers["X-API-Key"] = api_key
    return target, headers


class OutboxDeliverer:
    """Delivers the outbox's webhook rows (kinds ``webhook`` and ``webhook.progress``) at least
    once — exactly one node of a fleet sends each row (claims), one row of a job at a time;
    other kinds are left to their own deliverers."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        *,
        guard: UrlGuard | None = None,
        clock: Callable[[], float] = time.time,
        poll_interval: float = DELIVERY_POLL_S,
        jitter: Callable[[], float] = random.random,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.poll_interval = poll_interval
        self.jitter = jitter
        self.owner = owner or settings.node_name
        self._sender = _Sender(settings, guard)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[str]] = set()

    @property
    def lease_seconds(self) -> float:
        """How long a claimed row stays this node's: two full timeouts and a margin."""
        return 2 * max(self.settings.webhook_timeout, PROGRESS_TIMEOUT_S) + CLAIM_MARGIN_S

    def notify(self) -> None:
        """Something was queued: deliver now rather than at the next poll."""
        self._wake.set()

    def backoff(self, failures: int) -> float:
        """Seconds before the next attempt after ``failures`` failed deliveries (≥ 1)."""
        policy = Backoff(
            self.settings.webhook_retry_base, self.settings.webhook_retry_max, DELIVERY_JITTER
        )
        return policy.delay(failures, draw=self.jitter)

    async def _claim(self, limit: int) -> list[OutboxItem]:
        return await asyncio.to_thread(
            self.store.outbox_claim,
            self.owner,
            kinds=WEBHOOK_KINDS,
            lease_seconds=self.lease_seconds,
            limit=limit,
            now=self.clock(),
        )

    def _spawn(self, item: OutboxItem) -> None:
        task = asyncio.get_running_loop().create_task(self.deliver(item), name=f"webhook-{item.id}")
        self._tasks.add(task)

        def done(t: asyncio.Task[str]) -> None:
            self._tasks.discard(t)
            self._wake.set()  # a job's next row may be claimable now
            if not t.cancelled() and t.exception() is not None:
                log.error("webhook delivery %s failed: %r", item.idempotency_key, t.exception())

        task.add_done_callback(done)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver rows as they come due until ``stop`` is set (errors are logged, never
        fatal); up to ``DELIVERY_CONCURRENCY`` at once, a slow receiver holding up no other."""
        try:
            while not stop.is_set():
                self._wake.clear()
                room = DELIVERY_CONCURRENCY - len(self._tasks)
                if room > 0:
                    try:
                        for item in await self._claim(room):
                            self._spawn(item)
                    except Exception:
                        log.exception("webhook delivery pass failed (will try again)")
                waiters = [
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                ]
                await asyncio.wait(
                    waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in waiters:
                    waiter.cancel()
        finally:
            tasks = list(self._tasks)
            if tasks:  # let the sends in flight end (each is bounded by its timeout)
                await asyncio.wait(tasks, timeout=self.lease_seconds)
            for task in tasks:
                task.cancel()

    async def deliver_due(self) -> int:
        """Claim and deliver the due rows, waiting for each job's rows in turn; returns how
        many were attempted (tests, a one-off flush)."""
        attempted = 0
        gate = asyncio.Semaphore(DELIVERY_CONCURRENCY)

        async def one(item: OutboxItem) -> None:
            async with gate:
                await self.deliver(item)

        while True:
            items = await self._claim(DELIVERY_BATCH)
            if not items:
                return attempted
            await asyncio.gather(*(one(item) for item in items))
            attempted += len(items)

    async def deliver(self, item: OutboxItem) -> str:
        """Send one claimed ``item``; record the outcome: ``delivered``, ``retry``,
        ``given_up``, ``dropped`` (progress), ``retargeted`` or ``lost``."""
        body_text = item.payload.get("body")
        if not isinstance(body_text, str):
            return await self._record(item, "the stored webhook has no body", retry=False)
        target, headers = _destination(item)
        body = body_text.encode()
        headers = self._sender.signed(headers, body, self.clock())
        host = _host_of(target)
        timeout = PROGRESS_TIMEOUT_S if item.progress else self.settings.webhook_timeout
        try:
            response = await self._sender.post(
                target, body, headers, timeout=timeout, what="webhook_url"
            )
        except UnsafeUrl as exc:
            return await self._record(item, exc.message, retry=False)
        except (httpx.HTTPError, NetworkError, TimeoutError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
            return await self._record(item, f"{host}: {reason}"[:500], retry=True)
        status = response.status_code
        if 200 <= status < 300:
            await asyncio.to_thread(
                self.store.outbox_delivered, item.id, self.owner, now=self.clock()
            )
            if item.progress:
                log.debug("progress webhook of job %s delivered (HTTP %d)", item.job_id, status)
            else:
                log.info("🔔 webhook %s delivered to %s (HTTP %d)", item.idempotency_key, host,
                         status)  # fmt: skip
            return "delivered"
        error = f"{host} answered HTTP {status} {response.reason_phrase}".strip()
        if 300 <= status < 400:
            return await self._record(item, error + " (redirects are not followed)", retry=False)
        retry = retryable_status(status) or status in RETRY_4XX
        return await self._record(item, error, retry=retry, retry_after=_retry_after(response))

    async def _record(
        self, item: OutboxItem, error: str, *, retry: bool, retry_after: float | None = None
    ) -> str:
        failures = item.attempts + 1
        given_up = item.progress or not retry or failures >= self.settings.webhook_max_attempts
        next_at: float | None = None
        if not given_up:
            delay = self.backoff(failures)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.settings.webhook_retry_max))
            next_at = self.clock() + delay
        outcome = await asyncio.to_thread(
            self.store.outbox_failed, item.id, error=error, next_attempt_at=next_at,
            owner=self.owner, revision=item.revision, now=self.clock(),
        )  # fmt: skip
        if outcome == "dropped":
            log.debug("progress webhook of job %s not delivered: %s", item.job_id, error)
        elif outcome == "retargeted":
            log.info("🔁 webhook %s: %s — its job has a new report target: sending again",
                     item.idempotency_key, error)  # fmt: skip
            self.notify()
        elif outcome == "given_up":
            log.error(
                "🔕 webhook %s given up after %d attempt(s): %s",
                item.idempotency_key, failures, error,
            )  # fmt: skip
        elif outcome == "retry":
            log.warning(
                "🔁 webhook %s attempt %d failed: %s; next in %.0f s",
                item.idempotency_key, failures, error, (next_at or 0) - self.clock(),
            )  # fmt: skip
        return outcome


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


__all__ = [
    "OUTBOX_KIND",
    "PROGRESS_KIND",
    "WEBHOOK_KINDS",
    "OutboxDeliverer",
    "ProgressThrottle",
    "WebhookHooks",
    "completion_body",
    "failure_body",
    "iso_utc",
    "progress_url",
    "sign",
    "verify_signature",
]
