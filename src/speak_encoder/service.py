"""`speak-encoder run`: the long-running node service and its lifespan.

Start (``run`` holds the data folder's lock, :mod:`speak_encoder.node.lock`): open the store
(migrations, an old pins file taken over), kill any process a crashed run's jobs left behind
(:mod:`speak_encoder.node.children`), take back this node's jobs a crash left ``running``,
remove work folders of unknown or finished jobs. Then run, each as a task owned here: the
scheduler (with its watchdog), the memory/disk monitor, the pending-pin retrier and the
history pruner. SIGTERM/SIGINT: stop intake, give running jobs ``SHUTDOWN_GRACE`` seconds,
requeue the rest with their checkpoints, exit 0. A second signal cancels at once (jobs are
requeued; even a kill -9 leaves a consistent store: the next start resumes them).

The top of the program, beside the CLI: it wires the node (store, scheduler, monitor), the job
sources (:mod:`speak_encoder.sources`) and the operator server (:mod:`speak_encoder.web`), so it
stands above all of them (dependencies point down; ``tests/unit/test_layers.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from speak_encoder.config import Settings
from speak_encoder.node.children import kill_leftovers
from speak_encoder.node.hooks import SourceHooks
from speak_encoder.node.models import SourceKind, is_job_id
from speak_encoder.node.monitor import Monitor
from speak_encoder.node.scheduler import Scheduler
from speak_encoder.node.store import JobStore
from speak_encoder.private_files import (
    ENCODE_DIR,
    PRIVATE_UMASK,
    ensure_private_dir,
    is_stale_work_dir,
    remove_tree,
)
from speak_encoder.storage.pins import PINS_DB_NAME

if TYPE_CHECKING:
    from speak_encoder.sources.embed import EmbedSource
    from speak_encoder.sources.gateway import GatewaySource

log = logging.getLogger(__name__)

#: Seconds between two passes over the pending-pin queue (at most: never more than
#: PIN_RETRY_BASE, the shortest back-off an entry can have) and two history prunes.
PIN_RETRY_INTERVAL_S = 60.0
PRUNE_INTERVAL_S = 3600.0


def clean_work_dir(work_dir: Path, keep: set[str]) -> list[str]:
    """Remove the work folders the node made that belong to no active job (crashes, finished
    jobs), and nothing else.

    TEMP_DIR may hold the operator's own files or be shared: only a real folder (never a
    symlink, never a file) named like a job id (or ``job-<hex>`` of ``speak-encoder encode``),
    owned by this user and holding the node's work marker whose process is gone is removed —
    without following any symlink inside it (:mod:`speak_encoder.private_files`).
    """
    removed: list[str] = []
    if not work_dir.is_dir():
        return removed
    with os.scandir(work_dir) as entries:
        for entry in entries:
            named = is_job_id(entry.name) or bool(ENCODE_DIR.fullmatch(entry.name))
            if entry.name in keep or not is_stale_work_dir(entry, named=named):
                continue
            remove_tree(Path(entry.path))
            removed.append(entry.name)
    return removed


async def _every(interval: float, action: Callable[[], Awaitable[object]], what: str) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await action()
        except Exception:
            log.exception("%s failed (will try again)", what)


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        hooks: Mapping[SourceKind, SourceHooks] | None = None,
        redetect: bool = False,
    ) -> None:
        self.settings = settings
        self.redetect = redetect
        self.node = settings.node_name
        self.store = JobStore.from_settings(settings)
        self.scheduler = Scheduler(settings, self.store, node=self.node, hooks=hooks)
        self.monitor = Monitor(
            work_dir=settings.work_dir,
            warn_mb=settings.memory_warn_mb,
            critical_mb=settings.memory_critical_mb,
            disk_reserve_mb=settings.disk_reserve_mb,
            log_interval=settings.memory_log_interval,
            pause=self.scheduler.pause,
            resume=self.scheduler.resume,
            pruners=[self.scheduler.results.prune],
        )
        self.started_at = time.time()
        self.ready = False
        self.exit_code = 0
        #: The gateway pollers when enabled (the dashboard shows their health, and the legacy
        #: gateway's update notice).
        self.gateway_source: GatewaySource | None = None
        self.embed_source: EmbedSource | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.stop = asyncio.Event()
        self._signals = 0

    def startup(self) -> None:
        version = self.store.migrate()
        leftovers = kill_leftovers(self.settings.work_dir)  # before any job resumes
        self.store.import_pins_file(
            self.settings.data_dir / PINS_DB_NAME, node=self.settings.node_name
        )
        recovered = self.store.recover(self.node)
        os.umask(PRIVATE_UMASK)  # the node's files (and its ffmpeg's) are 0600, folders 0700
        ensure_private_dir(self.settings.data_dir)
        ensure_private_dir(self.settings.work_dir)
        removed = clean_work_dir(self.settings.work_dir, self.store.active_ids())
        log.info(
            "node %s ready: store schema v%d, %d job(s) resumed after a crash, %d stale work "
            "folder(s) removed, %d leftover process(es) killed",
            self.node, version, len(recovered), len(removed), len(leftovers),
        )  # fmt: skip

    async def _detect_hardware(self) -> None:
        """Hardware encoders, tested once at start (cached in DATA_DIR) — never fatal."""
        if not self.settings.hardware_acceleration:
            log.info("🎛️ HARDWARE_ACCELERATION=false: jobs use libx264")
            return
        from speak_encoder.pipeline.encode_job import hardware_report

        try:
            report = await hardware_report(self.settings, redetect=self.redetect)
        except Exception as exc:
            log.warning("🎛️ hardware detection failed (%s): jobs use libx264", exc)
            return
        log.info("🎛️ hardware: %s", report.summary())

    def _source_ended(self, task: asyncio.Future[None]) -> None:
        """A job source must run until the node stops: if one dies, the node stops too."""
        if task.cancelled() or self.stop.is_set():
            return
        error = task.exception()
        log.error("a job source stopped: %s — stopping the node", error or "it returned")
        self.exit_code = 1
        self.stop.set()

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "%s: stopping intake; running jobs get %.0f s (signal again to stop now)",
                signal.Signals(signum).name, self.settings.shutdown_grace,
            )  # fmt: skip
            self.stop.set()
        else:
            log.warning("second signal: cancelling running jobs now (they will resume)")
            self.scheduler.cancel_all_now()

    async def _retry_pins(self) -> None:
        if not self.settings.publish_targets:
            return
        from speak_encoder.storage.targets import retry_pending

        summary = await retry_pending(self.settings, self.store.pin_queue(self.settings))
        if summary.attempted:
            log.info(
                "📌 pending pins: %d pinned, %d still failing, %d given up",
                len(summary.done), len(summary.failed), len(summary.expired),
            )  # fmt: skip

    async def _prune(self) -> None:
        older = time.time() - self.settings.history_days * 86400
        removed = await asyncio.to_thread(self.store.prune, older_than=older)
        if removed:
            log.info("🗑️ pruned %d finished job(s) older than %g days", removed,
                     self.settings.history_days)  # fmt: skip

    def _job_sources(self) -> list[Awaitable[None]]:
        """Start the configured job sources; their hooks are registered before any claim.

        Imported only when enabled: a node without remote sources stays small. Webhook
        delivery also runs when the outbox still holds reports from an earlier run.
        """
        settings, store, scheduler = self.settings, self.store, self.scheduler
        runs: list[Awaitable[None]] = []
        webhooks = deliverer = None
        pending = store.outbox_counts().get("pending", 0)
        if settings.direct_api_enabled or settings.embed_gateway_enabled or pending:
            from speak_encoder.sources.webhook_delivery import OutboxDeliverer
            from speak_encoder.sources.webhooks import WebhookHooks

            deliverer = OutboxDeliverer(settings, store)  # one per process
            webhooks = WebhookHooks(settings, store, on_enqueue=deliverer.notify)
            self._closers.append(webhooks.aclose)
            scheduler.hooks = {**scheduler.hooks, SourceKind.DIRECT: webhooks,
                               SourceKind.EMBED: webhooks}  # fmt: skip
            runs.append(deliverer.run(self.stop))
        if settings.direct_api_enabled:
            from speak_encoder.sources.direct_api import create_app, serve

            app = create_app(settings, store, scheduler.wake, ready=lambda: self.ready)
            runs.append(serve(app, settings, stop=self.stop))
            log.info("🔌 Direct API on http://%s:%d", settings.direct_api_host,
                     settings.direct_api_port)  # fmt: skip
        if settings.gateway_enabled or settings.embed_gateway_enabled:
            from speak_encoder.node.identity import load_identity

            identity = load_identity(settings)
            log.info("🪪 node identity %s", identity.did)
            if settings.gateway_enabled:
                from speak_encoder.sources.gateway import GatewaySource

                self.gateway_source = GatewaySource(settings, store, scheduler, identity)
                runs.append(self.gateway_source.run(self.stop))
            if settings.embed_gateway_enabled:
                from speak_encoder.sources.embed import EmbedSource

                self.embed_source = EmbedSource(
                    settings, store, scheduler, identity, webhooks=webhooks, deliverer=deliverer
                )
                runs.append(self.embed_source.run(self.stop))
        return runs

    def _operator_server(self) -> asyncio.Future[None]:
        """/health, /ready and /metrics on DASHBOARD_HOST:DASHBOARD_PORT.

        Its own stop event: it keeps answering ("stopping", 503 on /ready) during the
        shutdown grace, and is cancelled with the other helpers at the very end.
        """
        from speak_encoder.web.app import bind_web_socket, create_web_app, serve_web
        from speak_encoder.web.dashboard import Dashboard

        sock = bind_web_socket(self.settings.dashboard_host, self.settings.dashboard_port)
        dashboard = Dashboard(self, stopping=self.stop.is_set)
        web = create_web_app(
            self, stopping=self.stop.is_set, routes=dashboard.routes, lifespan=dashboard.lifespan
        )
        task = asyncio.ensure_future(serve_web(web, stop=asyncio.Event(), sock=sock))
        task.add_done_callback(self._source_ended)
        return task

    async def serve(self) -> int:
        await asyncio.to_thread(self.startup)
        await self._detect_hardware()
        await asyncio.to_thread(self.monitor.check)  # guards apply before the first claim
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        helpers: list[asyncio.Future[None]] = [
            asyncio.create_task(self.monitor.run(), name="monitor"),
            asyncio.create_task(
                _every(
                    min(PIN_RETRY_INTERVAL_S, self.settings.pin_retry_base),
                    self._retry_pins,
                    "pin retry",
                )
            ),
            asyncio.create_task(_every(PRUNE_INTERVAL_S, self._prune, "history prune")),
        ]
        try:
            helpers.append(self._operator_server())
            for run in self._job_sources():
                source = asyncio.ensure_future(run)
                source.add_done_callback(self._source_ended)
                helpers.append(source)
            await self._prune()
            self.ready = True
            await self.scheduler.run(self.stop)
        finally:
            self.ready = False
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for close in self._closers:
                with contextlib.suppress(Exception):
                    await close()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            self.store.close()
        log.info("node %s stopped", self.node)
        return self.exit_code


__all__ = ["PIN_RETRY_INTERVAL_S", "PRUNE_INTERVAL_S", "Service", "clean_work_dir"]
