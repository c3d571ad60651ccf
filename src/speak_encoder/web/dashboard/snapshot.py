"""One snapshot of the node: everything the page shows, as JSON-ready data."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from speak_encoder import __version__
from speak_encoder.config import Settings
from speak_encoder.logs import RingBufferHandler, redact
from speak_encoder.node.models import Job, JobState
from speak_encoder.web.dashboard.ipfs import ipfs_unknown
from speak_encoder.web.dashboard.node import DashboardNode, UpdateNotice
from speak_encoder.web.dashboard.public import public_job
from speak_encoder.web.dashboard.source_health import source_health

log = logging.getLogger("speak_encoder.web.dashboard")

#: Jobs listed per table, log lines per snapshot, points of the memory chart.
LIST_LIMIT: Final = 50
LOG_LINES: Final = 200
CHART_POINTS: Final = 240


def identity_did(settings: Settings) -> str | None:
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


__all__ = ["LIST_LIMIT", "LOG_LINES", "identity_did", "snapshot"]
