"""The reference 3Speak legacy encoder gateway (docs/protocols.md §2) as one real server.

Why this module is long: it is one fake of one protocol. Its routes share one job table and one
lock, so the state and the handlers that change it stay together.

Used by the tests and by ``speak-encoder dev-gateway`` (try a node without the real network)::

    with ReferenceGateway(reassign_after=5) as gw:
        job = gw.add_job("https://example.org/clip.mp4", size=1_234_567)
        ...                                 # point a node at gw.url (GATEWAY_URL)
        assert gw.job(job["id"]).status == "complete"
        assert [c.route for c in gw.calls(did=node_did)][:2] == ["updateNode", "heartbeat"]

It is a Starlette app served by uvicorn on a background thread (its own event loop, see
:class:`~speak_encoder.testing.serving.ReferenceServer`). Every call
is recorded (:class:`Call`: route, method, caller DID, decoded payload, answer status, time).
Every JWS-POST is verified with :func:`~speak_encoder.node.identity.verify_jws` against the DID in
its ``kid``: a bad or missing signature is a 401. Faults can be queued per route
(:meth:`ReferenceGateway.fail_next`): ``500``, ``timeout`` (the request hangs), ``malformed``
(broken JSON, status 200), ``html`` (a proxy's HTML page, status 502), ``404``, ``401``.

Job life (legacy, §2)::

    queued ─myJob (pre-assign)─► assigned ─acceptJob─► accepted ─pingJob(progressPct>1)─► running
    queued ─getJob + acceptJob─► accepted
    accepted / running ─finishJob─► complete
    accepted / running ─failJob(retryable=false)─► failed
    assigned / accepted / running ─rejectJob, failJob(retryable=true), no ping for
                                   REASSIGN_AFTER s─► queued (no owner)

The embed gateway (§3) is modelled from the real server's code by
:class:`~speak_encoder.testing.embed_server.EmbedServer` (a server of its own).

Behaviours guessed (the real gateways' source is not public; the node must not depend on them):

- answer bodies: errors are ``{"success": false, "message": …}``; ``getJob``/``myJob``'s "none"
  is a 404 ``{"message": "no jobs available"}`` for ``getJob`` and ``{"success": true, "job":
  null}`` for ``myJob`` (fault ``404`` gives the other form);
- statuses ``queued``/``assigned``/``accepted``/``running``/``complete``/``failed``;
  ``jobstatus`` answers ``{"job_id", "status", "assigned_to", "progress", "download_pct",
  "result"}`` with ``assigned_to`` as the bare ``did:key:…``;
- ``acceptJob`` of a job held by another node: 409 "job already accepted by another encoder";
  by the same node: 200 (idempotent); an unknown job: 404;
- ``pingJob``/``finishJob``/``failJob``/``rejectJob`` on a job not assigned to the caller: 409
  "job is not assigned to this node"; ``finishJob`` of a job the caller already completed: 500
  "job already completed" (what made upstream treat such 5xx as success); a successful
  ``finishJob`` answers the newer ``{"status": "success", …}``;
- ``pingJob`` requires ``progressPct`` a number ≥ 1 and ``download_pct`` 0..100 (else 400);
  ``failJob`` requires the exact §2 body (else 400); a retryable failure re-queues the job for
  any node, a permanent one fails it;
- the re-assignment clock starts at the assignment and restarts at every ping; an expired job
  goes back to ``queued`` with no owner;
- ``myJob`` pre-assigns (when ``preassign`` is on) the oldest queued job to the caller — a node
  polling in turn is round-robin; ``updateNode`` answers ``{"success": true, "encoder":
  {"name", "tier": "community"}}`` for both gateways; ``heartbeat`` answers ``{"status": "ok",
  "message", "needs_update", "latest_version"}``;
- ``stats`` answers counts per status and the number of registered nodes.

Non-spec helpers (this server only): ``POST /_reference/jobs`` ``{"uri", "size"?}`` adds a legacy
job, ``GET /_reference/jobs`` lists them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from speak_encoder.node.identity import InvalidJws, normalize_did, verify_jws
from speak_encoder.sources.gateway_protocol import ROUTE_PREFIX, iso_now
from speak_encoder.testing.serving import (
    DEFAULT_HANG_S,
    FAULTS,
    HTML_PAGE,
    Fault,
    ReferenceServer,
)

#: Seconds without a ping after which a job is given to someone else (the real gateway: ~5 min).
DEFAULT_REASSIGN_AFTER_S: Final = 300.0
JWS_ROUTES: Final = frozenset(
    {
        "updateNode",
        "acceptJob",
        "rejectJob",
        "pingJob",
        "finishJob",
        "failJob",
        "myJob",
        "heartbeat",
    }
)
GET_ROUTES: Final = frozenset({"stats", "getJob", "jobstatus"})
ACTIVE: Final = ("assigned", "accepted", "running")


@dataclass(frozen=True, slots=True)
class Call:
    """One request the gateway answered."""

    route: str  # e.g. "acceptJob", "jobstatus" (without the id)
    method: str
    did: str | None  # the verified signer of a JWS-POST
    payload: dict[str, Any] | None  # the decoded JWS payload (or None)
    status: int
    at: float  # time.time()
    fault: str | None = None
    arg: str | None = None  # jobstatus/{arg}
    user_agent: str = ""


@dataclass
class GatewayJob:
    """A job the gateway holds (a legacy §2 job)."""

    id: str
    kind: Literal["legacy"]
    body: dict[str, Any]  # the §2 job object
    status: str = "queued"
    assigned_to: str | None = None
    assigned_at: float | None = None
    last_ping: float | None = None
    progress: float = 0.0
    download_pct: float = 0.0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    accepted_by: list[str] = field(default_factory=list)
    reassignments: int = 0

    def job_object(self) -> dict[str, Any]:
        """The §2 job object as getJob/myJob answer it."""
        return {**self.body, "status": self.status, "assigned_to": self.assigned_to}

    def snapshot(self) -> GatewayJob:
        return GatewayJob(**{k: _copy(v) for k, v in self.__dict__.items()})


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value)) if isinstance(value, dict | list) else value


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "message": message}, status_code=status)


class ReferenceGateway(ReferenceServer):
    """The reference gateway (see the module docstring). Use as a context manager."""

    thread_name = "reference-gateway"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        reassign_after: float = DEFAULT_REASSIGN_AFTER_S,
        preassign: bool = True,
        needs_update: bool = False,
        latest_version: str | None = None,
        hang_seconds: float = DEFAULT_HANG_S,
    ) -> None:
        super().__init__(host=host, port=port, hang_seconds=hang_seconds)
        self.reassign_after = reassign_after
        self.preassign = preassign
        self.needs_update = needs_update
        self.latest_version = latest_version
        self.refuse_signatures = False  # every JWS-POST answered 401 while set
        self.nodes: dict[str, dict[str, Any]] = {}  # did → node_info
        self._jobs: dict[str, GatewayJob] = {}
        self._calls: list[Call] = []
        self._lock = threading.RLock()
        self.app = Starlette(
            routes=[
                Route(ROUTE_PREFIX + "jobstatus/{job_id}", self._jobstatus, methods=["GET"]),
                Route(ROUTE_PREFIX + "{route}", self._dispatch, methods=["GET", "POST"]),
                Route("/_reference/jobs", self._admin_jobs, methods=["GET", "POST"]),
            ]
        )

    # --- test controls ---------------------------------------------------------------------

    def add_job(
        self,
        uri: str,
        *,
        size: int | None = None,
        owner: str = "alice",
        permlink: str | None = None,
        fmt: str = "mp4",
        job_id: str | None = None,
        profiles: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Queue a legacy job; returns its §2 job object."""
        jid = job_id or str(uuid.uuid4())
        body: dict[str, Any] = {
            "id": jid,
            "created_at": iso_now(),
            "input": {"uri": uri, "size": size if size is not None else 0, "format": fmt},
            "metadata": {"video_owner": owner, "video_permlink": permlink or jid[:8]},
            "storageMetadata": {
                "app": "3speak",
                "key": f"{owner}/{permlink or jid[:8]}",
                "type": "video",
            },
            "profiles": profiles
            or [
                {"name": "1080p", "size": "?x1080"},
                {"name": "720p", "size": "?x720"},
                {"name": "480p", "size": "?x480"},
            ],
            "output": [],
        }
        with self._lock:
            self._jobs[jid] = GatewayJob(id=jid, kind="legacy", body=body)
            return self._jobs[jid].job_object()

    def reassign(self, job_id: str, did: str | None) -> None:
        """Give a job to another node (or back to the queue with ``None``), as the gateway
        does after a missed ping."""
        with self._lock:
            job = self._jobs[job_id]
            job.assigned_to = normalize_did(did) if did else None
            job.status = "accepted" if did else "queued"
            job.assigned_at = job.last_ping = time.time()
            job.reassignments += 1

    def job(self, job_id: str) -> GatewayJob:
        with self._lock:
            self._expire()
            return self._jobs[job_id].snapshot()

    def jobs(self) -> list[GatewayJob]:
        with self._lock:
            self._expire()
            return [job.snapshot() for job in self._jobs.values()]

    def calls(self, route: str | None = None, *, did: str | None = None) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self._calls
                if (route is None or c.route == route)
                and (did is None or c.did == normalize_did(did))
            ]

    # --- the state machine -----------------------------------------------------------------

    def _expire(self) -> None:
        now = time.time()
        for job in self._jobs.values():
            if job.kind != "legacy" or job.status not in ACTIVE:
                continue
            since = job.last_ping or job.assigned_at or now
            if now - since > self.reassign_after:
                job.status, job.assigned_to = "queued", None
                job.assigned_at = job.last_ping = None
                job.reassignments += 1

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    async def _fault_response(self, fault: str) -> Response:
        if fault == "500":
            return _error(500, "Internal Server Error")
        if fault == "404":
            return _error(404, "Not Found")
        if fault == "401":
            return _error(401, "invalid signature")
        if fault == "malformed":
            return Response('{"success": true, "job": {"id": ', media_type="application/json")
        if fault == "html":
            return Response(HTML_PAGE, status_code=502, media_type="text/html")
        await asyncio.sleep(self.hang_seconds)  # timeout
        return _error(504, "Gateway Timeout")

    async def _jobstatus(self, request: Request) -> Response:
        return await self._handle(request, "jobstatus", str(request.path_params["job_id"]))

    async def _dispatch(self, request: Request) -> Response:
        return await self._handle(request, str(request.path_params["route"]), None)

    async def _handle(self, request: Request, route: str, arg: str | None) -> Response:
        method = request.method
        known = route in JWS_ROUTES if method == "POST" else route in GET_ROUTES
        did: str | None = None
        payload: dict[str, Any] | None = None
        fault = self.faults.take(route) if known else None
        if fault is not None:
            response = await self._fault_response(fault)
            self._record(Call(route, method, None, None, response.status_code, time.time(),
                              fault, arg, request.headers.get("user-agent", "")))  # fmt: skip
            return response
        if not known:
            response = _error(404, f"Cannot {method} {request.url.path}")
        elif method == "POST":
            try:
                body = json.loads(await request.body())
                jws = body.get("jws") if isinstance(body, dict) else None
                if not isinstance(jws, dict):
                    raise ValueError("no jws")
            except ValueError:
                response = _error(400, 'the body must be {"jws": <general JWS>}')
            else:
                try:
                    payload = verify_jws(jws)
                    kid = str(jws["signatures"][0]["protected"])
                    did = _signer(kid)
                except (InvalidJws, KeyError, IndexError, TypeError):
                    response = _error(401, "invalid signature")
                else:
                    if self.refuse_signatures:
                        response = _error(401, "invalid signature")
                    else:
                        with self._lock:
                            self._expire()
                            response = self._post(route, did, payload)
        else:
            with self._lock:
                self._expire()
                response = self._get(route, arg)
        self._record(Call(route, method, did, payload, response.status_code, time.time(), None,
                          arg, request.headers.get("user-agent", "")))  # fmt: skip
        return response

    # GET routes (caller anonymous)
    def _get(self, route: str, arg: str | None) -> Response:
        if route == "stats":
            counts: dict[str, int] = {}
            for job in self._jobs.values():
                counts[job.status] = counts.get(job.status, 0) + 1
            return JSONResponse({"jobs": counts, "nodes": len(self.nodes)})
        if route == "getJob":
            for queued in self._jobs.values():
                if queued.kind == "legacy" and queued.status == "queued" and not queued.assigned_to:
                    return JSONResponse(queued.job_object())
            return _error(404, "no jobs available")
        found = self._jobs.get(arg or "")
        if found is None:
            return _error(404, "job not found")
        return JSONResponse(
            {
                "job_id": found.id,
                "status": found.status,
                "assigned_to": found.assigned_to,
                "progress": found.progress,
                "download_pct": found.download_pct,
                "result": found.result,
            }
        )

    # JWS-POST routes (caller = the verified DID)
    def _post(self, route: str, did: str, payload: dict[str, Any]) -> Response:
        if route == "updateNode":
            info = payload.get("node_info")
            if not isinstance(info, dict) or not isinstance(info.get("name"), str):
                return _error(400, "node_info.name is required")
            self.nodes[did] = info
            return JSONResponse(
                {"success": True, "encoder": {"name": info["name"], "tier": "community"}}
            )
        if route == "heartbeat":
            if not isinstance(payload.get("timestamp"), str):
                return _error(400, "timestamp is required")
            return JSONResponse(
                {
                    "status": "ok",
                    "message": "heartbeat received",
                    "needs_update": self.needs_update,
                    "latest_version": self.latest_version,
                }
            )
        if route == "myJob":
            return self._my_job(did)
        job_id = payload.get("job_id")
        job = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            return _error(404, "job not found")
        mine = job.assigned_to == did and job.status in ACTIVE
        if route == "acceptJob":
            if job.status in ("complete", "failed"):
                return _error(409, f"job in invalid state: {job.status}")
            if job.assigned_to not in (None, did):
                return _error(409, "job already accepted by another encoder")
            if job.status not in ("accepted", "running"):
                job.status = "accepted"
            job.assigned_to, job.assigned_at = did, time.time()
            job.accepted_by.append(did)
            return JSONResponse({"success": True, "message": "job accepted"})
        if route == "finishJob":
            if job.status == "complete" and job.assigned_to == did:
                return _error(500, "job already completed")
            if not mine:
                return JSONResponse(
                    {"status": "error", "message": "job is not assigned to this node"},
                    status_code=409,
                )
            output = payload.get("output")
            cid = output.get("cid") if isinstance(output, dict) else None
            if not isinstance(cid, str) or not cid:
                return JSONResponse({"status": "error", "error": "output.cid is required"},
                                    status_code=400)  # fmt: skip
            job.status, job.result = "complete", {"cid": cid}
            job.progress = 100.0
            return JSONResponse({"status": "success", "message": "job completed"})
        if not mine:
            return _error(409, "job is not assigned to this node")
        if route == "pingJob":
            pct, dl = payload.get("progressPct"), payload.get("download_pct")
            if not isinstance(pct, int | float) or isinstance(pct, bool) or pct < 1:
                return _error(400, "progressPct must be a number >= 1")
            if not isinstance(dl, int | float) or isinstance(dl, bool) or not 0 <= dl <= 100:
                return _error(400, "download_pct must be a number in 0..100")
            job.progress, job.download_pct, job.last_ping = float(pct), float(dl), time.time()
            if pct > 1:
                job.status = "running"
            return JSONResponse({"success": True})
        if route == "rejectJob":
            job.status, job.assigned_to, job.assigned_at, job.last_ping = "queued", None, None, None
            return JSONResponse({"success": True, "message": "job rejected"})
        # failJob
        problem = _fail_body_problem(payload)
        if problem:
            return _error(400, problem)
        job.error = payload["error"]
        if payload["error"]["retryable"]:
            job.status, job.assigned_to, job.assigned_at = "queued", None, None
        else:
            job.status = "failed"
        return JSONResponse({"success": True})

    def _my_job(self, did: str) -> Response:
        # legacy: a job pre-assigned to the caller and not yet accepted, or a new pre-assignment
        for job in self._jobs.values():
            if job.kind == "legacy" and job.status == "assigned" and job.assigned_to == did:
                return JSONResponse({"success": True, "job": job.job_object()})
        if self.preassign:
            for job in self._jobs.values():
                if job.kind == "legacy" and job.status == "queued" and job.assigned_to is None:
                    job.status, job.assigned_to, job.assigned_at = "assigned", did, time.time()
                    return JSONResponse({"success": True, "job": job.job_object()})
        return JSONResponse({"success": True, "job": None})

    # --- non-spec helpers --------------------------------------------------------------------

    async def _admin_jobs(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse([job.job_object() for job in self.jobs()])
        try:
            body = json.loads(await request.body())
            uri = body["uri"]
            size = body.get("size")
            if not isinstance(uri, str) or not (size is None or isinstance(size, int)):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _error(400, 'body: {"uri": SOURCE, "size"?: int}')
        return JSONResponse(self.add_job(uri, size=size))


def _signer(protected: str) -> str:
    import base64

    header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    return normalize_did(str(header["kid"]))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fail_body_problem(payload: dict[str, Any]) -> str | None:
    error = payload.get("error")
    if not isinstance(error, dict):
        return "error must be an object"
    expected = {"error": str, "timestamp": str, "retryable": bool, "encoder_version": str}
    for key, kind in expected.items():
        if not isinstance(error.get(key), kind):
            return f"error.{key} must be a {kind.__name__}"
    if not isinstance(payload.get("timestamp"), str):
        return "timestamp must be an ISO string"
    if not _number(payload.get("encoder_time")):
        return "encoder_time must be a number (ms since the epoch)"
    return None


__all__ = [
    "DEFAULT_HANG_S",
    "DEFAULT_REASSIGN_AFTER_S",
    "FAULTS",
    "Call",
    "Fault",
    "GatewayJob",
    "ReferenceGateway",
]
