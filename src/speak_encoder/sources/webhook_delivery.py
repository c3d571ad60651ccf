"""Delivery of the webhook reports in the outbox (docs/protocols.md §5), and their signature.

:class:`OutboxDeliverer` claims due rows (queued by
:class:`~speak_encoder.sources.webhooks.WebhookHooks`) under a lease (one node of a fleet sends
each) and delivers them at least once, surviving restarts: ``WEBHOOK_TIMEOUT`` per request
(``PROGRESS_TIMEOUT_S`` and one attempt for a progress ping); network errors, 5xx, 408 and 429
are retried after ``WEBHOOK_RETRY_BASE × 2^n`` (capped at ``WEBHOOK_RETRY_MAX``, ±10 % jitter);
other 4xx and 3xx (redirects are not followed) give up at once; ``WEBHOOK_MAX_ATTEMPTS``
failures give up.

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
rebinding).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from speak_encoder.backoff import Backoff
from speak_encoder.config import Settings
from speak_encoder.errors import NetworkError
from speak_encoder.http_errors import retryable_status
from speak_encoder.node.models import OutboxItem
from speak_encoder.node.store import JobStore
from speak_encoder.sources.webhooks import PROGRESS_TIMEOUT_S, WEBHOOK_KINDS, progress_url
from speak_encoder.urlguard import PinnedUrl, UnsafeUrl, UrlGuard

log = logging.getLogger(__name__)

#: Seconds added to a claim's lease beyond two request timeouts.
CLAIM_MARGIN_S = 30.0
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
    "OutboxDeliverer",
    "sign",
    "verify_signature",
]
