"""The operator dashboard: one static page, a JSON snapshot, Server-Sent Events and two actions.

Routes (added to the operator app through ``create_web_app(…, routes=dashboard_routes(node))``):

* ``GET /`` — ``static/index.html`` with a strict Content-Security-Policy (no inline script,
  no CDN: every asset, hls.js included, is served from ``/static``).
* ``GET /static/…`` — the page's files (read-only).
* ``GET /api/state`` — one snapshot as JSON (:func:`snapshot`).
* ``GET /api/events`` — ``text/event-stream``: one snapshot every :data:`EVENT_INTERVAL_S`
  seconds, each carrying the log lines newer than the last one sent (``id:`` is the log
  sequence, so a reconnecting ``EventSource`` resumes with ``Last-Event-ID``). Bounded: at most
  :data:`MAX_STREAMS` streams at once and :data:`MAX_STREAMS_PER_CLIENT` per client address (so
  one client cannot take them all and lock the operator out; 503 beyond), and
  :data:`MAX_STREAM_S` seconds each (the browser reconnects by itself).
* ``POST /api/jobs/{id}/retry`` and ``…/cancel`` — need ``Authorization: Bearer <DASHBOARD_TOKEN>``
  (compared in constant time). Without a configured token every action is refused (403) and the
  page is read-only. A client address with too many wrong tokens in a minute gets 429
  (:class:`~speak_encoder.web.server.AuthThrottle`).
* ``POST /api/pins/retry`` — the same token: retry every pending pin now
  (:func:`~speak_encoder.storage.targets.retry_pending` with ``force``); answers the counts.
* ``POST /api/outbox/retry`` — the same token: re-arm the given-up outbox reports (pending again,
  attempts reset) so the running deliverers send them again; answers how many.
* ``GET /store/{cid}/{path}`` — a finished output from ``DATA_DIR/store/<CID>/`` for the player:
  only a valid CID, only plain names inside that folder (no ``..``, no hidden files, no
  symlink out), only playlist / segment / image types.

What leaves the node is data from :meth:`Job.to_json` minus local paths (a local job's source
shows as its file name; ``result`` keeps only the CID and durations), errors and sources pass
through :func:`~speak_encoder.logs.redact`, and the page renders every value with
``textContent``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final, Protocol

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from speak_encoder import __version__
from speak_encoder.config import Settings
from speak_encoder.errors import JobNotFound, SpeakEncoderError
from speak_encoder.logs import RingBufferHandler, current_ring, redact
from speak_encoder.node.models import Job, JobState, SourceKind, is_job_id
from speak_encoder.node.monitor import Monitor
from speak_encoder.node.scheduler import Scheduler
from speak_encoder.node.store import JobStore
from speak_encoder.storage.cid import is_cid
from speak_encoder.storage.kubo import KuboClient
from speak_encoder.storage.local_store import stored_path
from speak_encoder.web.server import AuthThrottle, client_of

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).with_name("static")
#: Seconds between two snapshots of the event stream.
EVENT_INTERVAL_S: Final = 2.0
#: Event streams served at once (each costs a store read every interval), and per client address.
MAX_STREAMS: Final = 16
MAX_STREAMS_PER_CLIENT: Final = 4
#: Seconds one event stream lasts before the server closes it (the browser reconnects).
MAX_STREAM_S: Final = 600.0
#: Jobs listed per table, log lines per snapshot, points of the memory chart.
LIST_LIMIT: Final = 50
LOG_LINES: Final = 200
CHART_POINTS: Final = 240
#: Seconds between two checks of the node's IPFS RPC (``id``), and one check's timeout.
IPFS_CHECK_INTERVAL_S: Final = 30.0
IPFS_CHECK_TIMEOUT_S: Final = 3.0
#: Longest error text shown for a job source.
ERROR_CHARS: Final = 300

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; worker-src 'none'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: What the player may fetch from the local store, by extension.
STORE_TYPES: Final = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".vtt": "text/vtt",
}
_PLAIN_NAME: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class DashboardNode(Protocol):
    """What the dashboard reads from the running :class:`~speak_encoder.node.service.Service`."""

    settings: Settings
    store: JobStore
    scheduler: Scheduler
    monitor: Monitor
    started_at: float
    node: str


@dataclass(frozen=True, slots=True)
class UpdateNotice:
    needs_update: bool | None
    latest_version: str | None


# --- the data --------------------------------------------------------------------------------


def public_source(job: Job) -> str:
    """The job's source without local paths: a local file shows as its name."""
    if job.kind is SourceKind.LOCAL and "://" not in job.source:
        return PurePosixPath(job.source).name
    return redact(job.source)


def public_job(job: Job, hide: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """:meth:`Job.to_json` minus local paths, errors redacted, owner/permlink when known.

    ``hide`` are ``(local path, shown as)`` pairs replaced in the error text (DATA_DIR …); a
    local job's own source path always shows as its file name.
    """
    data = job.to_json()
    data["source"] = public_source(job)
    if data["error"]:
        error = str(data["error"])
        if job.kind is SourceKind.LOCAL and job.source:
            error = error.replace(job.source, data["source"])
        for path, shown in hide:
            error = error.replace(path, shown)
        data["error"] = redact(error)
    result = job.result or {}
    data["result"] = (
        {k: result.get(k) for k in ("cid", "duration", "elapsed_seconds", "thumbnail")}
        if job.result
        else None
    )
    data["playable"] = job.state is JobState.COMPLETE and is_cid(str(result.get("cid") or ""))
    # The poster from the local store (its CID path, ipfs://<cid>/thumbnail.jpg, is in result).
    data["poster"] = (
        f"/store/{result['cid']}/thumbnail.jpg"
        if data["playable"] and result.get("thumbnail")
        else None
    )
    for key in ("owner", "permlink"):
        value = job.request.get(key) if isinstance(job.request, dict) else None
        data[key] = str(value) if isinstance(value, (str, int)) else None
    return data


def _identity_did(settings: Settings) -> str | None:
    """The node's DID when an identity is configured (never the key; never raises)."""
    try:
        from speak_encoder.node.identity import key_file_path, load_identity

        key = settings.encoder_private_key
        if (key is None or not key.get_secret_value().strip()) and not key_file_path(
            settings
        ).is_file():
            return None
        return str(load_identity(settings).did)
    except Exception as exc:
        log.debug("dashboard: no identity (%s)", exc)
        return None


def _chart(node: DashboardNode) -> list[list[float]]:
    """The monitor history as ``[at, encoder_mb, children_mb, disk_free_mb]`` rows (thinned)."""
    history = list(node.monitor.history)
    step = max(1, -(-len(history) // CHART_POINTS))
    return [
        [round(s.at, 1), round(s.encoder_mb, 1), round(s.children_mb, 1), round(s.disk_free_mb)]
        for s in history[::step]
    ]


def snapshot(
    node: DashboardNode,
    *,
    did: str | None,
    update: UpdateNotice,
    ring: RingBufferHandler | None,
    log_after: int = 0,
    ipfs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data (blocking: run it in a thread)."""
    settings, store, scheduler = node.settings, node.store, node.scheduler
    hide = [(str(settings.work_dir), "$WORK_DIR"), (str(settings.data_dir), "$DATA_DIR")]

    def public(job: Job) -> dict[str, Any]:
        return public_job(job, hide)

    active = []
    for running in list(scheduler.running.values()):
        act = running.activity
        active.append(
            {
                "job": public(running.job),
                "stage": act.stage.value,
                "fractions": dict(act.fractions),
                "speed": act.speed,
                "eta_seconds": act.eta_seconds,
                "detail": redact(act.detail),
            }
        )
    running_ids = set(scheduler.running)
    queue = store.list_jobs(states=[JobState.QUEUED, JobState.RETRY_WAIT], limit=LIST_LIMIT)
    recent = store.list_jobs(states=[JobState.COMPLETE, JobState.CANCELLED], limit=LIST_LIMIT)
    failed = store.list_jobs(states=[JobState.FAILED], limit=LIST_LIMIT)
    others = store.list_jobs(states=[JobState.RUNNING], limit=LIST_LIMIT)
    try:
        pins: dict[str, int] | None = store.pin_counts()
    except Exception:
        pins = None
    logs: list[dict[str, Any]] = []
    last_seq = log_after
    if ring is not None:
        for entry in ring.entries(after=log_after, limit=LOG_LINES):
            logs.append(
                {"seq": entry.seq, "ts": entry.ts, "level": entry.level,
                 "logger": entry.logger, "msg": entry.msg, "job_id": entry.job_id}
            )  # fmt: skip
            last_seq = entry.seq
    return {
        "node": {
            "name": node.node,
            "did": did,
            "version": __version__,
            "started_at": node.started_at,
            "uptime_s": round(max(0.0, time.time() - node.started_at), 1),
            "update_available": bool(update.needs_update),
            "latest_version": update.latest_version,
            "sources": {
                "local": True,
                "direct_api": settings.direct_api_enabled,
                "gateway": settings.gateway_enabled,
                "embed_gateway": settings.embed_gateway_enabled,
            },
            "source_health": source_health(node),
            "ipfs": dict(ipfs) if ipfs is not None else ipfs_unknown(settings),
            "paused": sorted(scheduler.pause_reasons),
            "can_act": settings.dashboard_token is not None
            and bool(settings.dashboard_token.get_secret_value()),
        },
        "active": active,
        # running in the store but not on this node (another node of a fleet)
        "elsewhere": [public(j) for j in others if j.id not in running_ids],
        "queue": [public(j) for j in _newest_first(queue)],
        "recent": [public(j) for j in _newest_first(recent)],
        "failed": [public(j) for j in _newest_first(failed)],
        "counts": store.counts(),
        "outbox": store.outbox_counts(),
        "pins": pins,
        "memory": _chart(node),
        "logs": logs,
        "log_seq": last_seq,
    }


def _newest_first(jobs: Sequence[Job]) -> list[Job]:
    return sorted(jobs, key=lambda j: j.finished_at or j.updated_at or j.created_at, reverse=True)


# --- IPFS and job sources ------------------------------------------------------------------


def ipfs_unknown(settings: Settings) -> dict[str, Any]:
    """The IPFS status before any check: configured or not, nothing known yet."""
    configured = bool(settings.ipfs_api_addr.strip())
    return {
        "configured": configured,
        "ok": None if configured else False,
        "peer_id": None,
        "error": None if configured else "not configured",
        "checked_at": None,
    }


async def check_ipfs(settings: Settings, timeout: float = IPFS_CHECK_TIMEOUT_S) -> dict[str, Any]:
    """Ask the node's IPFS RPC for its ``id`` (short timeouts; never raises)."""
    status = ipfs_unknown(settings)
    if not status["configured"]:
        return status
    status["checked_at"] = time.time()
    try:
        async with KuboClient(
            settings.ipfs_api_addr, connect_timeout=timeout, call_timeout=timeout
        ) as ipfs:
            peer = await asyncio.wait_for(ipfs.peer_id(), timeout * 2)
    except Exception as exc:
        text = exc.message if isinstance(exc, SpeakEncoderError) else str(exc)
        status.update(ok=False, error=redact(text or type(exc).__name__)[:ERROR_CHARS])
        return status
    if peer:
        status.update(ok=True, peer_id=peer)
    else:
        status.update(ok=False, error="the IPFS node answered without a peer id")
    status["checked_at"] = time.time()
    return status


def _source_row(name: str, health: str) -> dict[str, Any]:
    return {"name": name, "enabled": True, "health": health, "registered": None,
            "last_ok_at": None, "last_error": None}  # fmt: skip


def _poller_health(name: str, poller: Any) -> dict[str, Any]:
    """A gateway poller's health from the state it keeps (no URL, token or key)."""
    row = _source_row(name, "not started")
    if poller is None:
        return row
    registered = bool(getattr(poller, "registered", False))
    rounds = getattr(poller, "rounds", poller)  # sources.gateway_protocol.PollRounds
    last_ok = getattr(rounds, "last_ok_at", None)
    error = getattr(rounds, "last_error", None)
    state = getattr(rounds, "state", None)
    row["registered"] = registered
    row["last_ok_at"] = last_ok if isinstance(last_ok, (int, float)) else None
    row["last_error"] = redact(str(error))[:ERROR_CHARS] if error else None
    if isinstance(state, str) and state:  # e.g. "refused: disabled or banned"
        row["health"] = state
    elif row["last_error"]:
        row["health"] = "failing"
    elif row["last_ok_at"] is None:
        row["health"] = "starting"
    else:
        row["health"] = "ok" if registered else "ok (not registered)"
    return row


def _embed_source(node: DashboardNode) -> Any:
    return getattr(node, "embed_source", None)


def source_health(node: DashboardNode) -> list[dict[str, Any]]:
    """The enabled job sources, each with a health word (local is always on)."""
    settings = node.settings
    rows = [_source_row("local", "ok")]
    if settings.direct_api_enabled:
        ready = bool(getattr(node, "ready", False))
        rows.append(_source_row("direct_api", "listening" if ready else "not ready"))
    if settings.gateway_enabled:
        rows.append(_poller_health("gateway", getattr(node, "gateway_source", None)))
    if settings.embed_gateway_enabled:
        rows.append(_poller_health("embed_gateway", _embed_source(node)))
    return rows


# --- auth --------------------------------------------------------------------------------------


def check_token(settings: Settings, header: str | None) -> Response | None:
    """None when ``header`` carries the operator token, else the refusal to send."""
    token = settings.dashboard_token.get_secret_value() if settings.dashboard_token else ""
    if not token:
        return JSONResponse(
            {"error": "read-only dashboard: no DASHBOARD_TOKEN is configured on this node"},
            status_code=403,
        )
    given = ""
    if header and header[:7].lower() == "bearer ":
        given = header[7:].strip()
    if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        return JSONResponse(
            {"error": "missing or wrong operator token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="speak-encoder"'},
        )
    return None


# --- the local store ---------------------------------------------------------------------------


def store_file(settings: Settings, cid: str, path: str) -> Path | None:
    """The file ``path`` inside the stored folder of ``cid``, or None (never outside it)."""
    if not (cid.isalnum() and is_cid(cid)):
        return None
    parts = path.split("/")
    if not parts or len(parts) > 4 or not all(_PLAIN_NAME.match(p) for p in parts):
        return None
    if PurePosixPath(parts[-1]).suffix.lower() not in STORE_TYPES:
        return None
    root = stored_path(settings, cid)
    try:
        root_real = root.resolve(strict=True)
        target = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(root_real) or not target.is_file():
        return None
    return target


# --- the routes --------------------------------------------------------------------------------


def dashboard_routes(
    node: DashboardNode,
    *,
    ring: RingBufferHandler | Callable[[], RingBufferHandler | None] = current_ring,
    update_notice: Callable[[], UpdateNotice] | None = None,
    stopping: Callable[[], bool] | None = None,
    interval: float = EVENT_INTERVAL_S,
    max_stream_s: float = MAX_STREAM_S,
) -> list[BaseRoute]:
    """The dashboard's routes over ``node`` (see the module docstring).

    ``ring`` is the live log (default: the one :func:`~speak_encoder.logs.setup_logging`
    installed); ``stopping`` (the service's ``stop.is_set``) ends the event streams once the
    node stops, so the server's graceful shutdown need not wait for them; ``update_notice``
    says whether a gateway announced a newer version (default: ``node.gateway_source`` when the
    service keeps one).
    """
    settings = node.settings
    did = _identity_did(settings)
    streams = 0
    streams_of: dict[str, int] = {}
    throttle = AuthThrottle()

    def authorize(request: Request) -> Response | None:
        """None when the request carries the operator token, else the refusal to send."""
        client = client_of(request.scope)
        wait = throttle.retry_after(client)
        if wait is not None:
            return JSONResponse(
                {"error": f"too many wrong tokens from this address: try again in {wait:.0f} s"},
                status_code=429,
                headers={"Retry-After": str(round(wait))},
            )
        header = request.headers.get("authorization")
        refused = check_token(settings, header)
        if refused is not None and refused.status_code == 401 and header:
            throttle.failed(client)  # a wrong token (a missing one is not a guess)
        return refused

    ipfs = ipfs_unknown(settings)
    ipfs_task: asyncio.Task[None] | None = None
    ipfs_started: float | None = None
    pins_busy = False

    def get_ring() -> RingBufferHandler | None:
        return ring if isinstance(ring, RingBufferHandler) else ring()

    def get_update() -> UpdateNotice:
        if update_notice is not None:
            return update_notice()
        source = getattr(node, "gateway_source", None)
        return UpdateNotice(
            getattr(source, "needs_update", None), getattr(source, "latest_version", None)
        )

    def take(log_after: int) -> dict[str, Any]:
        return snapshot(
            node, did=did, update=get_update(), ring=get_ring(), log_after=log_after,
            ipfs=dict(ipfs),
        )  # fmt: skip

    async def run_ipfs_check() -> None:
        nonlocal ipfs, ipfs_started
        try:
            ipfs = await check_ipfs(settings)
        except asyncio.CancelledError:  # its event loop ended first: check again next time
            ipfs_started = None
            raise

    async def refresh_ipfs(*, wait: bool) -> None:
        """Start an IPFS check when the last one is older than the interval (never two).

        ``wait``: when nothing is known yet, wait for that first answer (one-shot requests);
        the event stream never waits, it shows the last known status.
        """
        nonlocal ipfs_task, ipfs_started
        if not ipfs["configured"]:
            return
        now = time.monotonic()
        idle = ipfs_task is None or ipfs_task.done()
        if idle and (ipfs_started is None or now - ipfs_started >= IPFS_CHECK_INTERVAL_S):
            ipfs_started = now
            ipfs_task = asyncio.create_task(run_ipfs_check(), name="dashboard-ipfs-check")
        if wait and ipfs["checked_at"] is None and ipfs_task is not None:
            await asyncio.wait({ipfs_task}, timeout=IPFS_CHECK_TIMEOUT_S * 2 + 1)

    async def index(request: Request) -> Response:
        return FileResponse(
            STATIC_DIR / "index.html",
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": CSP},
        )

    async def state(request: Request) -> Response:
        await refresh_ipfs(wait=True)
        data = await asyncio.to_thread(take, _int(request.query_params.get("after")))
        return JSONResponse(data)

    async def events(request: Request) -> Response:
        nonlocal streams
        client = client_of(request.scope)
        if streams >= MAX_STREAMS:
            return JSONResponse({"error": "too many event streams"}, status_code=503)
        if streams_of.get(client, 0) >= MAX_STREAMS_PER_CLIENT:
            return JSONResponse(
                {"error": f"this address has {MAX_STREAMS_PER_CLIENT} event streams open already"},
                status_code=503,
            )
        streams += 1
        streams_of[client] = streams_of.get(client, 0) + 1
        after = _int(request.headers.get("last-event-id"))

        async def stream() -> AsyncIterator[str]:
            nonlocal streams, after
            try:
                yield f"retry: {int(interval * 1000)}\n\n"
                deadline = time.monotonic() + max_stream_s
                while time.monotonic() < deadline:
                    await refresh_ipfs(wait=False)
                    try:
                        data = await asyncio.to_thread(take, after)
                    except Exception as exc:  # the store is down: say so, keep streaming
                        yield _event("error", {"error": redact(str(exc))}, after)
                    else:
                        after = int(data["log_seq"])
                        yield _event("snapshot", data, after)
                    if await request.is_disconnected() or (stopping is not None and stopping()):
                        return
                    await asyncio.sleep(interval)
            finally:
                streams -= 1
                left = streams_of.get(client, 1) - 1
                if left > 0:
                    streams_of[client] = left
                else:
                    streams_of.pop(client, None)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no", "Content-Security-Policy": CSP},
        )

    def action(name: str, fn: Callable[[str], Job]) -> Route:
        async def endpoint(request: Request) -> Response:
            refused = authorize(request)
            if refused is not None:
                return refused
            job_id = str(request.path_params["job_id"])
            if not is_job_id(job_id):
                return JSONResponse({"error": "not a job id"}, status_code=404)
            try:
                job = await asyncio.to_thread(fn, job_id)
            except SpeakEncoderError as exc:
                status = 404 if isinstance(exc, JobNotFound) else 409
                return JSONResponse({"error": redact(str(exc))}, status_code=status)
            log.info("dashboard: %s of job %s by the operator", name, job_id)
            if name == "retry":
                node.scheduler.wake()
            return JSONResponse({"job": public_job(job)})

        return Route(f"/api/jobs/{{job_id}}/{name}", endpoint, methods=["POST"])

    async def retry_pins(request: Request) -> Response:
        nonlocal pins_busy
        refused = authorize(request)
        if refused is not None:
            return refused
        if pins_busy:
            return JSONResponse({"error": "a pin retry is already running"}, status_code=409)
        from speak_encoder.storage.targets import retry_pending

        pins_busy = True
        try:
            summary = await retry_pending(settings, node.store.pin_queue(settings), force=True)
        except SpeakEncoderError as exc:
            return JSONResponse({"error": redact(exc.message)}, status_code=409)
        finally:
            pins_busy = False
        try:
            counts: dict[str, int] | None = await asyncio.to_thread(node.store.pin_counts)
        except Exception:
            counts = None
        log.info(
            "dashboard: pin retry by the operator: %d pinned, %d still failing, %d given up",
            len(summary.done), len(summary.failed), len(summary.expired),
        )  # fmt: skip
        return JSONResponse(
            {"attempted": summary.attempted, "done": len(summary.done),
             "failed": len(summary.failed), "expired": len(summary.expired), "pins": counts}
        )  # fmt: skip

    async def retry_outbox(request: Request) -> Response:
        refused = authorize(request)
        if refused is not None:
            return refused
        try:
            rearmed = await asyncio.to_thread(node.store.outbox_rearm)
            counts = await asyncio.to_thread(node.store.outbox_counts)
        except SpeakEncoderError as exc:
            return JSONResponse({"error": redact(exc.message)}, status_code=503)
        log.info("dashboard: %d given-up outbox report(s) re-armed by the operator", rearmed)
        return JSONResponse({"rearmed": rearmed, "outbox": counts})

    async def stored(request: Request) -> Response:
        cid, path = str(request.path_params["cid"]), str(request.path_params["path"])
        target = await asyncio.to_thread(store_file, settings, cid, path)
        if target is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(target, media_type=STORE_TYPES[target.suffix.lower()])

    return [
        Route("/", index, methods=["GET"]),
        Route("/api/state", state, methods=["GET"]),
        Route("/api/events", events, methods=["GET"]),
        action("retry", node.store.retry),
        action("cancel", node.store.request_cancel),
        Route("/api/pins/retry", retry_pins, methods=["POST"]),
        Route("/api/outbox/retry", retry_outbox, methods=["POST"]),
        Route("/store/{cid}/{path:path}", stored, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


def _event(name: str, data: dict[str, Any], seq: int) -> str:
    return f"id: {seq}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


__all__ = [
    "CSP",
    "STATIC_DIR",
    "UpdateNotice",
    "check_ipfs",
    "check_token",
    "dashboard_routes",
    "public_job",
    "snapshot",
    "source_health",
    "store_file",
]
