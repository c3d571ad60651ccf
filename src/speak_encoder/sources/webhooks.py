"""Webhook reports of direct and embed jobs (docs/protocols.md §5): progress, completion, failure.

This module makes the reports and queues them; :mod:`speak_encoder.sources.webhook_delivery`
sends them. Every report of a job goes through the job store's outbox, one job's reports one
after another (see :mod:`speak_encoder.node.store.outbox`):

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
  retried; a second enqueue is a no-op). The deliverer sends them at least once.

``job_id`` in a body is the job's ``external_id`` when its source set one, else the node's job
id (what ``POST /encode`` returned).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from speak_encoder import USER_AGENT
from speak_encoder.config import Settings
from speak_encoder.errors import SpeakEncoderError, StoreUnavailable
from speak_encoder.node.hooks import report_key
from speak_encoder.node.models import Job, OutboxEntry, Stage
from speak_encoder.node.store import JobStore
from speak_encoder.sources.direct_request import WIRE_STAGES, overall_progress, public_error

log = logging.getLogger(__name__)

#: The master playlist's name in a published folder (``pipeline.ffmpeg.MASTER_NAME``; not
#: imported from there so that an idle node does not load the encoding pipeline).
MASTER_NAME = "manifest.m3u8"
#: Outbox ``kind`` of completion and failure webhooks, and of progress webhooks.
OUTBOX_KIND = "webhook"
PROGRESS_KIND = "webhook.progress"
WEBHOOK_KINDS = frozenset({OUTBOX_KIND, PROGRESS_KIND})
#: Progress pings: timeout, throttle, concurrency and how many jobs' throttles are remembered.
PROGRESS_TIMEOUT_S = 5.0
PROGRESS_MIN_INTERVAL_S = 10.0
PROGRESS_MIN_STEP = 5
PROGRESS_MAX_IN_FLIGHT = 8
PROGRESS_TRACKED_JOBS = 1024

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


def _base_headers() -> dict[str, str]:
    """The stored headers of a webhook row (``X-API-Key`` is added at delivery, from the
    job's current request: never stored twice, always the newest)."""
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT}


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
    :meth:`~speak_encoder.sources.webhook_delivery.OutboxDeliverer.notify`).
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


__all__ = [
    "OUTBOX_KIND",
    "PROGRESS_KIND",
    "WEBHOOK_KINDS",
    "ProgressThrottle",
    "WebhookHooks",
    "completion_body",
    "failure_body",
    "iso_utc",
    "progress_url",
]
