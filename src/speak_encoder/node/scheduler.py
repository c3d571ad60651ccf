"""The scheduler: claims jobs from the store, runs them, retries, watches, shuts down.

* Up to ``MAX_CONCURRENT_JOBS`` jobs at once, claimed FIFO by priority from the store (the one
  source of truth: a claim is a lease, renewed by each job's heartbeat).
* Intake pauses while a guard says so (memory critical, disk low) and during shutdown.
* The watchdog cancels a job that made no progress in any stage for ``STUCK_TIMEOUT`` or ran
  longer than ``JOB_TIMEOUT``; the process group of its ffmpeg dies with it.
* An attempt that fails is decided by :func:`~speak_encoder.node.retry.decide`: retry later
  (retryable errors, up to ``MAX_ATTEMPTS``) or fail for good (permanent errors at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from speak_encoder.config import Settings
from speak_encoder.errors import (
    InsufficientDisk,
    InternalError,
    JobCancelled,
    ResourceError,
    SpeakEncoderError,
    StallError,
)
from speak_encoder.logs import bind_job_id
from speak_encoder.node.activity import Activity
from speak_encoder.node.cache import TTLCache
from speak_encoder.node.hooks import SourceHooks
from speak_encoder.node.models import Job, OutboxEntry, SourceKind
from speak_encoder.node.retry import Outcome, decide
from speak_encoder.node.runner import JobRun, job_dir_for, run_job
from speak_encoder.node.store import JobStore

log = logging.getLogger(__name__)

#: Seconds between two claims when the queue is empty (a submit in this process wakes it).
POLL_INTERVAL_S = 1.0
#: Seconds between watchdog rounds and progress writes to the store.
WATCH_INTERVAL_S = 2.0
#: Finished results kept in memory for the dashboard, at most this many.
RESULT_CACHE_ENTRIES = 256

#: Seconds intake pauses when the next job does not fit on the disk.
DISK_RETRY_S = 60.0
PAUSE_JOB_DISK = "the next job does not fit on the disk"

CANCEL_SHUTDOWN = "shutdown"
CANCEL_OPERATOR = "operator"
CANCEL_WATCHDOG = "watchdog"
CANCEL_TIMEOUT = "timeout"
CANCEL_LEASE_LOST = "lease lost"


@dataclass
class RunningJob:
    job: Job
    activity: Activity
    task: asyncio.Task[None]


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        *,
        node: str,
        hooks: Mapping[SourceKind, SourceHooks] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.node = node
        self.hooks: Mapping[SourceKind, SourceHooks] = hooks or {}
        self.running: dict[str, RunningJob] = {}
        self.pause_reasons: set[str] = set()
        self.results: TTLCache[str, dict[str, Any]] = TTLCache(
            max_entries=RESULT_CACHE_ENTRIES, ttl=settings.result_ttl_hours * 3600
        )
        self.stats = {"completed": 0, "failed": 0, "retried": 0, "watchdog_kills": 0}
        self._wake = asyncio.Event()
        self._stopping = False

    # --- control ---------------------------------------------------------------------------

    def wake(self) -> None:
        """A job was submitted: look for work now."""
        self._wake.set()

    def pause(self, reason: str) -> None:
        if reason not in self.pause_reasons:
            log.warning("⏸️ intake paused: %s", reason)
        self.pause_reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.pause_reasons:
            self.pause_reasons.discard(reason)
            log.info("▶️ intake resumed (%s cleared)", reason)
            self.wake()

    @property
    def free_slots(self) -> int:
        return max(0, self.settings.max_concurrent_jobs - len(self.running))

    @property
    def accepting(self) -> bool:
        return not self._stopping and not self.pause_reasons and self.free_slots > 0

    # --- the main loop -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until ``stop`` is set, then shut down gracefully."""
        watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
        try:
            while not stop.is_set():
                if self.accepting:
                    job = await asyncio.to_thread(
                        self.store.claim, self.node, lease_seconds=self.settings.lease_seconds
                    )
                    if job is not None:
                        if await self._interrupted_too_often(job):
                            continue
                        if await self._room_for(job):
                            self._start(job)
                        continue
                self._wake.clear()
                waiters = [
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                ]
                await asyncio.wait(
                    waiters, timeout=POLL_INTERVAL_S, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in waiters:
                    waiter.cancel()
        finally:
            await self.shutdown(self.settings.shutdown_grace)
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait for a submit, a finished job, the stop signal, or the poll interval."""
        self._wake.clear()
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(waiters, timeout=POLL_INTERVAL_S, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def shutdown(self, grace: float) -> None:
        """Stop intake; give running jobs ``grace`` seconds, then requeue them."""
        self._stopping = True
        if not self.running:
            return
        log.info("shutting down: %d running job(s) get %.0f s to finish", len(self.running), grace)
        tasks = [r.task for r in self.running.values()]
        _, pending = await asyncio.wait(tasks, timeout=grace) if grace > 0 else (set(), set(tasks))
        for running in list(self.running.values()):
            if running.task in pending:
                self._cancel(running, CANCEL_SHUTDOWN)
        if pending:
            await asyncio.wait(pending)

    def cancel_all_now(self) -> None:
        """Second signal: cancel everything at once (jobs go back to the queue)."""
        self._stopping = True
        for running in list(self.running.values()):
            self._cancel(running, CANCEL_SHUTDOWN)

    async def _interrupted_too_often(self, job: Job) -> bool:
        """A job under which the node died MAX_ATTEMPTS times fails instead of looping."""
        if job.interruptions < self.settings.max_attempts:
            return False
        message = (
            f"the node stopped {job.interruptions} times while running this job (killed, "
            "out of memory or crashed): given up so that it cannot take the node down again"
        )
        await self._fail(job, ResourceError(message), count_attempt=False)
        log.error("❌ job %s failed: %s", job.id, message)
        await asyncio.to_thread(shutil.rmtree, job_dir_for(self.settings, job.id), True)
        return True

    async def _room_for(self, job: Job) -> bool:
        """A job whose size is known starts only with size × DISK_FACTOR + reserve free."""
        if not job.size_hint:
            return True
        need = job.size_hint * self.settings.disk_factor + self.settings.disk_reserve_bytes
        work = self.settings.work_dir
        free = (
            await asyncio.to_thread(shutil.disk_usage, work if work.exists() else work.parent)
        ).free
        if free >= need:
            return True
        await asyncio.to_thread(self.store.requeue, job.id, self.node)
        log.warning(
            "💽 job %s needs about %.0f MB of disk, %.0f MB free: not started",
            job.id, need / 1e6, free / 1e6,
        )  # fmt: skip
        self.pause(PAUSE_JOB_DISK)
        asyncio.get_running_loop().call_later(DISK_RETRY_S, self.resume, PAUSE_JOB_DISK)
        return False

    # --- one job -------------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        activity = Activity(job.id)
        task = asyncio.create_task(self._execute(job, activity), name=f"job-{job.id}")
        self.running[job.id] = RunningJob(job, activity, task)
        log.info("▶️ job %s started (%s, attempt %d)", job.id, job.source[:120], job.attempts + 1)

    def _cancel(self, running: RunningJob, reason: str) -> None:
        if running.activity.cancel_reason is None:
            running.activity.cancel_reason = reason
        running.task.cancel()

    async def _execute(self, job: Job, activity: Activity) -> None:
        bind_job_id(job.id)  # every log line of this job's task carries its id
        run = JobRun(
            job=job,
            settings=self.settings,
            store=self.store,
            node=self.node,
            job_dir=job_dir_for(self.settings, job.id),
            activity=activity,
            hooks=self.hooks,
        )
        heartbeat = asyncio.create_task(self._heartbeat(run), name=f"heartbeat-{job.id}")
        try:
            result = await run_job(run)
        except asyncio.CancelledError:
            await self._after_cancel(run)
        except SpeakEncoderError as exc:
            await self._after_failure(run, exc)
        except Exception as exc:  # a bug: log it whole, then treat it as transient
            log.exception("job %s hit an unexpected error", job.id)
            await self._after_failure(run, InternalError(f"internal error: {exc!r}"[:500]))
        else:
            await self._after_success(run, result)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self.running.pop(job.id, None)
            self.wake()

    async def _heartbeat(self, run: JobRun) -> None:
        """Renew the lease, write progress, and notice an operator's cancel or a lost lease."""
        renew_every = self.settings.lease_seconds / 3
        last_renew = time.monotonic()
        while True:
            await asyncio.sleep(min(WATCH_INTERVAL_S, renew_every))
            activity = run.activity
            hooks = self.hooks.get(run.job.kind)
            if hooks is not None:
                fraction = activity.fractions.get(activity.stage.value, 0.0)
                self._guarded(hooks.progress, run.job, activity.stage, fraction)
            if activity.dirty:
                activity.dirty = False
                await asyncio.to_thread(
                    self.store.set_progress, run.job.id, self.node, activity.stage,
                    activity.fractions.get(activity.stage.value, 0.0),
                )  # fmt: skip
            if time.monotonic() - last_renew >= renew_every:
                last_renew = time.monotonic()
                kept = await asyncio.to_thread(
                    self.store.renew_lease, run.job.id, self.node,
                    lease_seconds=self.settings.lease_seconds,
                )  # fmt: skip
                if not kept:
                    current = await asyncio.to_thread(self.store.get, run.job.id)
                    wanted = current is not None and current.cancel_requested
                    running = self.running.get(run.job.id)
                    if running is not None:
                        self._cancel(running, CANCEL_OPERATOR if wanted else CANCEL_LEASE_LOST)
                    return

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            now = time.monotonic()
            for running in list(self.running.values()):
                activity = running.activity
                if activity.idle_seconds(now) > self.settings.stuck_timeout:
                    log.warning(
                        "🐕 job %s made no progress in %s for %.0f s: cancelling it",
                        running.job.id, activity.stage.value, activity.idle_seconds(now),
                    )  # fmt: skip
                    self.stats["watchdog_kills"] += 1
                    self._cancel(running, CANCEL_WATCHDOG)
                elif activity.age_seconds(now) > self.settings.job_timeout:
                    log.warning("🐕 job %s exceeded JOB_TIMEOUT: cancelling it", running.job.id)
                    self.stats["watchdog_kills"] += 1
                    self._cancel(running, CANCEL_TIMEOUT)

    # --- outcomes ------------------------------------------------------------------------------

    def _guarded(self, fn: Any, *args: Any) -> None:
        """Call a source hook; its failure is logged, never the job's."""
        try:
            fn(*args)
        except Exception:
            log.exception("source hook %s failed", getattr(fn, "__qualname__", fn))

    async def _notify(self, job: Job, event: str, *args: Any) -> None:
        hooks = self.hooks.get(job.kind)
        if hooks is None:
            return
        try:
            await getattr(hooks, event)(job, *args)
        except Exception:
            log.exception("source hook %s of job %s failed", event, job.id)

    async def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # Shielded: a second cancel must not leave the store half-updated.
        return await asyncio.shield(asyncio.to_thread(fn, *args, **kwargs))

    def _clean(self, run: JobRun) -> None:
        shutil.rmtree(run.job_dir, ignore_errors=True)

    async def _fail(
        self, job: Job, error: SpeakEncoderError, *, count_attempt: bool = True
    ) -> None:
        """Fail ``job`` for good, its source's failure report (built from the typed ``error``)
        stored in the same transaction; then tell the source."""
        hooks = self.hooks.get(job.kind)
        report: OutboxEntry | None = None
        if hooks is not None:
            try:
                report = hooks.failure_report(job, error)
            except Exception:
                log.exception("source hook failure_report of job %s failed", job.id)
        failed = await self._db(
            self.store.fail, job.id, self.node, error=error.message, kind=error.kind,
            count_attempt=count_attempt, report=report,
        )  # fmt: skip
        if failed:
            await self._notify(job, "failed", error)

    async def _after_success(self, run: JobRun, result: dict[str, Any]) -> None:
        """Complete the job, its source's completion report stored in the same transaction;
        then tell the source."""
        completed = await self._db(
            self.store.complete, run.job.id, self.node, result, report=run.work.report
        )
        if completed:
            self.results.put(run.job.id, result)
            self.stats["completed"] += 1
            log.info("✅ job %s complete: %s", run.job.id, result.get("cid"))
            await self._notify(run.job, "completed", result)
        await asyncio.to_thread(self._clean, run)

    async def _after_cancel(self, run: JobRun) -> None:
        reason = run.activity.cancel_reason
        job_id = run.job.id
        if reason == CANCEL_SHUTDOWN:
            await self._db(self.store.requeue, job_id, self.node)
            log.info("job %s requeued for the next start (checkpoints kept)", job_id)
            await self._notify(run.job, "released")
        elif reason == CANCEL_OPERATOR:
            await self._db(self.store.mark_cancelled, job_id, self.node)
            await asyncio.to_thread(self._clean, run)
            log.info("job %s cancelled by the operator", job_id)
        elif reason == CANCEL_LEASE_LOST:
            log.warning("job %s: lease lost to another node; stopped here", job_id)
        elif reason in (CANCEL_WATCHDOG, CANCEL_TIMEOUT):
            limit = "STUCK_TIMEOUT" if reason == CANCEL_WATCHDOG else "JOB_TIMEOUT"
            error = StallError(
                f"cancelled by the watchdog ({limit}): no progress in the "
                f"{run.activity.stage.value} stage"
            )
            await self._after_failure(run, error)
        else:  # cancelled from outside the scheduler (the service is going down hard)
            await self._db(self.store.requeue, job_id, self.node)
            raise asyncio.CancelledError

    async def _after_failure(self, run: JobRun, error: SpeakEncoderError) -> None:
        job = run.job
        if isinstance(error, JobCancelled):
            await self._db(self.store.mark_cancelled, job.id, self.node)
            await asyncio.to_thread(self._clean, run)
            return
        decision = decide(
            error,
            failures_so_far=job.attempts,
            max_attempts=self.settings.max_attempts,
            base=self.settings.retry_base,
            cap=self.settings.retry_max,
        )
        if decision.outcome is Outcome.RETRY:
            await self._db(
                self.store.retry_later, job.id, self.node,
                error=error.message, kind=error.kind, delay_s=decision.delay_s,
            )  # fmt: skip
            self.stats["retried"] += 1
            log.warning(
                "🔁 job %s: %s (%s); retry in %.0f s", job.id, error.message, decision.reason,
                decision.delay_s,
            )  # fmt: skip
            if isinstance(error, InsufficientDisk | ResourceError):
                self.wake()
            return
        await self._fail(job, error)
        self.stats["failed"] += 1
        log.error("❌ job %s failed: %s (%s)", job.id, error.message, decision.reason)
        await asyncio.to_thread(self._clean, run)


__all__ = [
    "CANCEL_LEASE_LOST",
    "CANCEL_OPERATOR",
    "CANCEL_SHUTDOWN",
    "CANCEL_TIMEOUT",
    "CANCEL_WATCHDOG",
    "DISK_RETRY_S",
    "PAUSE_JOB_DISK",
    "POLL_INTERVAL_S",
    "RESULT_CACHE_ENTRIES",
    "WATCH_INTERVAL_S",
    "RunningJob",
    "Scheduler",
]
