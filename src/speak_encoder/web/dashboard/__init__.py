"""The operator dashboard: one static page, a JSON snapshot, Server-Sent Events and two actions.

Routes (added to the operator app through ``Dashboard(node)``: ``create_web_app(…,
routes=dashboard.routes, lifespan=dashboard.lifespan)``; or ``dashboard_routes(node)``):

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
  (:class:`~speak_encoder.asgi_server.AuthThrottle`).
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

By responsibility:

=================  ==============================================================
``routes``         :class:`Dashboard`: the routes over the node, and its lifespan
``snapshot``       one snapshot of the node (``/api/state`` and every event)
``public``         what of a job leaves the node
``source_health``  the job sources' health, from their pollers' common state
``ipfs``           the IPFS RPC check (a background task the lifespan owns)
``events``         the event stream and its bounds
``auth``           the operator token and its throttle
``actions``        retry / cancel / pins / outbox
``store_files``    the outputs the player may fetch
``node``           what the dashboard reads from the node
=================  ==============================================================
"""

from __future__ import annotations

from speak_encoder.web.dashboard.auth import check_token
from speak_encoder.web.dashboard.events import (
    EVENT_INTERVAL_S,
    MAX_STREAM_S,
    MAX_STREAMS,
    MAX_STREAMS_PER_CLIENT,
)
from speak_encoder.web.dashboard.ipfs import check_ipfs
from speak_encoder.web.dashboard.node import DashboardNode, UpdateNotice
from speak_encoder.web.dashboard.public import public_job
from speak_encoder.web.dashboard.routes import CSP, STATIC_DIR, Dashboard, dashboard_routes
from speak_encoder.web.dashboard.snapshot import snapshot
from speak_encoder.web.dashboard.source_health import source_health
from speak_encoder.web.dashboard.store_files import store_file

__all__ = [
    "CSP",
    "EVENT_INTERVAL_S",
    "MAX_STREAMS",
    "MAX_STREAMS_PER_CLIENT",
    "MAX_STREAM_S",
    "STATIC_DIR",
    "Dashboard",
    "DashboardNode",
    "UpdateNotice",
    "check_ipfs",
    "check_token",
    "dashboard_routes",
    "public_job",
    "snapshot",
    "source_health",
    "store_file",
]
