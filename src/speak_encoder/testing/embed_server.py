"""A reference model of the real 3Speak **embed server**, the upstream of the embed gateway
(docs/protocols.md §3).

The real server is the public repository ``Mantequilla-Soft/embedvideos`` (Express + MongoDB).
This module models what it does for encoders, from its code (read, not copied): ``src/index.ts``
(routes), ``src/database/mongodb.ts`` (the record updates), ``src/dispatcher/jobDispatcher.ts``
(managed mode; the newest stored version, commit ``a175cfe``, with tiers and the stall check)
and ``src/utils/jws.ts``. Use it like the other reference servers::

    with EmbedServer() as embed:
        embed.add_video("alice", "clip", CID)               # video `processing` + job `pending`
        ...                                                  # a node polls embed.url (§3)
        embed.wait_for(lambda: embed.job("alice", "clip").status == "completed", timeout=60)
        assert embed.video("clip").status == "published"

Records (one Python attribute per real field; the real camelCase name in brackets):

- **videos** by ``permlink``: ``status`` (``processing`` → ``published`` / ``failed``; uploads
  are not modelled, so a video starts ``processing`` with its ``input_cid`` pinned),
  ``manifest_cid``, ``encoding_progress`` [encodingProgress], ``short``, ``frontend_app``,
  ``original_filename`` [originalFilename], ``size``;
- **jobs** by ``(owner, permlink)`` (unique, as the real ``createJob`` index): ``status``
  (``pending`` / ``encoding`` / ``completed`` / ``failed``), ``attempt_count`` [attemptCount],
  ``assigned_worker`` [assignedWorker], ``encoder_job_id`` [encoderJobId], ``callback_token``
  [callbackToken], ``encoding_progress``, ``encoding_stage`` [encodingStage], ``last_error``
  [lastError], ``webhook_received_at`` [webhookReceivedAt], ``premium``, ``short``,
  ``file_size`` [fileSize], ``updated_at`` [updatedAt: the stall clock];
- **encoders** by ``name``: managed ones (``name``, ``url``, ``api_key``, ``enabled``, ``tier``,
  ``max_file_size``) and community ones, created by ``updateNode``
  (``upsertCommunityEncoder``): name ``community-<last 12 characters of the DID>`` (stable, not
  chosen by the node), ``did``, ``display_name`` (the node's own name), ``hive_account``,
  ``peer_id``, ``commit_hash``, ``tier`` ``lite``, ``access`` ``community``, ``enabled`` true,
  ``banned`` false.

Routes modelled (answers worded as the real code words them):

- ``POST /webhook`` (the encoders' reports): ``X-API-Key`` must be the server's webhook key or
  the job's **current** ``callback_token`` (else 401 ``{"error":"Unauthorized"}``: a token of an
  earlier claim is refused). ``complete`` → video ``published`` with ``manifest_cid`` and
  progress 100, job ``completed``; ``failed`` → requeued (``pending``, worker cleared,
  ``attempt_count`` + 1, video back to ``processing``) while ``attempt_count`` < 2, then
  ``failed`` for good with the video; any other status → 400 ``{"error":"Unknown status"}``.
  Neither checks the job's state first: a completion for a ``pending`` job completes it.
- ``POST /webhook/progress``: 400 without ``owner``/``permlink``/numeric ``progress``, 404
  ``{"error":"Job not found"}``, then the same auth (so an unknown job is a 404 whatever the key),
  then job → ``encoding`` with the progress and stage **and video → ``processing``** — a ping
  that arrives after the completion un-publishes the video, as the real server does.
- ``POST /api/v0/gateway/updateNode`` / ``myJob`` / ``heartbeat`` (JWS-POSTs, verified with
  :func:`~speak_encoder.node.identity.verify_jws`; the signer is the ``kid``'s DID; any failure is
  401 ``{"error":"Invalid JWS signature"}``). ``updateNode`` accepts ``{"node_info": {…}}`` or the
  flat object and answers ``{"success":true,"encoder":{"name","did","tier","access","enabled"}}``.
  ``myJob``: 404 ``{"error":"Encoder not registered"}``, 403 ``{"error":"Encoder is disabled or
  banned"}``, else the oldest ``pending`` job with ``premium`` and ``short`` false (and a known
  size within the encoder's ``max_file_size``, when one is set) is claimed atomically: job →
  ``encoding``, ``assigned_worker`` = the encoder's name and a **fresh random callback token per
  claim**, sent as ``api_key``; answer ``{"success":true,"job":{"owner","permlink","input_cid":
  "<IPFS gateway>/<cid>","short","premium":false,"webhook_url","api_key","frontend_app",
  "originalFilename"}}`` or ``{"success":true,"job":null}`` (a claimed job whose video has no
  ``input_cid`` is reset and ``null`` answered). ``heartbeat``: 404 when not registered, else
  ``{"success":true}`` — it does **not** check ``enabled``/``banned`` (the real code does not),
  and it has no ``needs_update``.
- ``GET /video/<permlink>`` (the video document or 404 ``{"error":"Video not found"}``),
  ``GET /health``, ``GET /`` (a redirect to ``/demo.html``), and Express's own answers: an
  unknown route is a 404 HTML page ``Cannot <METHOD> <path>``, a body that is not JSON a 400.

Managed mode (the dispatcher, :meth:`EmbedServer.dispatch_once`, every ``dispatch_interval``
seconds in the background when set; the real one runs every 30 s and at start, and is off by
default here as with ``DISPATCHER_ENABLED=false``): first the stall check
(:meth:`~EmbedServer.reset_stalled` with ``stall_after``, 30 min as the real one), then up to 5
jobs, each claimed atomically (**any** pending job: premium, short and free alike) and POSTed to
``<encoder.url>/encode`` with ``X-API-Key: <encoder.api_key>`` and ``{"owner","permlink",
"input_cid":"<IPFS gateway>/<cid>","short","premium","webhook_url","api_key":<the server's webhook
key>,"frontend_app","originalFilename"}``. Encoders are chosen as the real ``getNextEncoder``:
enabled managed ones only; short → any tier (size-capped first); premium → ``performance`` then
``standard``; free → ``standard`` then ``lite``; round-robin per group. A 2xx makes the job
``encoding`` with ``encoder_job_id`` = the answer's ``job_id``; a failure (no encoder, connection
error, non-2xx, not JSON) adds 1 to ``attempt_count`` and puts the job back to ``pending`` with
``last_error``, and when the count was already 3, fails job and video (``Max attempts exceeded:
…``).

Admin actions (methods, and the real ``POST /admin/jobs/<owner>/<permlink>/redispatch`` as
``/_reference/jobs/…/redispatch``): :meth:`~EmbedServer.redispatch` (``resetJob``: ``pending``,
``attempt_count`` 0, worker, encoder job id, error and progress cleared — **not** the callback
token, which stays valid until the next claim, as in the real code — video ``processing``);
:meth:`~EmbedServer.reset_stalled` (``encoding`` jobs not updated for ``older_than_s``: the first
two stalls → ``pending``, ``attempt_count`` + 1, ``last_error`` "Reset due to stall (no progress
update)"; the third → ``failed``, video too); :meth:`~EmbedServer.remove_encoder` (``heartbeat``/
``myJob`` are then 404 until the node registers again — as a new, enabled encoder);
:meth:`~EmbedServer.set_encoder` (``enabled``, ``banned``, …).

Test helpers: :meth:`~EmbedServer.add_video`, :meth:`~EmbedServer.add_managed_encoder`, snapshots
(:meth:`~EmbedServer.video`, :meth:`~EmbedServer.job`, :meth:`~EmbedServer.encoder`, …), the log
of every request in and out (:class:`EmbedCall`: route, headers of interest, parsed body,
verified JWS payload and signer, answer, receive and answer times), :meth:`~EmbedServer.wait_for`
(a condition wait with a deadline) and :meth:`~EmbedServer.fail_next` (faults per route, as the
reference gateway's: ``500``, ``timeout``, ``malformed``, ``html``, ``404``, ``401`` — the last
two answered with the real server's bodies for that route). Knobs: ``progress_delay`` /
``webhook_delay`` hold a received report that long before it is processed (a slow receiver, to
test the order in which reports take effect).

Not modelled: uploads (TUS, simple, chunked, upload tokens), deferred encodes, gated content (and
the trusted-encoder rules), replacements, Hive links, thumbnails, users' stats and bans, premium
look-ups (a job's ``premium`` is given), unpinning the input, the admin HTTP routes' password and
the other admin routes, the public ``/api/v0/encoders/*`` status routes, several dispatcher
replicas, cycles that overlap (``setInterval`` does not wait for the previous cycle).

Guesses (not in the code read): each handler's record updates are applied at once under one lock
(the real handlers interleave their ``await``-ed MongoDB calls); a claim ties on ``createdAt`` in
insertion order; the body of Express's 400 page ("Bad Request") and of a proxy's 504 after a
``timeout`` fault; the dispatcher's ``User-Agent`` (``node``) and the wording of a dispatch error
for a connection failure (``fetch failed``, Node's) or an answer that is not JSON; the
dispatcher's request timeout (``dispatch_timeout``; Node's fetch waits up to 300 s for headers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, Self, TypeVar

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from speak_encoder.node.identity import InvalidJws, verify_jws
from speak_encoder.sources.gateway_protocol import ROUTE_PREFIX
from speak_encoder.testing.embed_records import (
    DispatchResult,
    EmbedAdminError,
    EmbedCall,
    EmbedJob,
    Encoder,
    StallOutcome,
    Video,
)
from speak_encoder.testing.express import (
    BadJson,
    express_json,
    express_page,
    is_number,
    js_string,
    json_error,
    parse_answer,
    truthy,
)
from speak_encoder.testing.serving import DEFAULT_HANG_S, HTML_PAGE, ReferenceServer

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The IPFS gateway prefix of every ``input_cid`` the real server hands out.
IPFS_GATEWAY: Final = "https://ipfs.3speak.tv/ipfs"
#: The webhook key of this model when none is given (the real one: ``WEBHOOK_API_KEY``).
DEFAULT_WEBHOOK_KEY: Final = "embed-webhook-key"
#: A failure webhook requeues the job while its attempt count is below this.
MAX_ENCODE_ATTEMPTS: Final = 2
#: A dispatch error fails the job when its attempt count was already this (``attemptCount >= 3``).
DISPATCH_MAX_ATTEMPTS: Final = 3
#: Jobs claimed per dispatcher cycle.
DISPATCH_BATCH: Final = 5
#: Seconds between two cycles of the real dispatcher (``dispatcher.start(30)``).
DISPATCH_INTERVAL_S: Final = 30.0
#: Seconds the dispatcher waits for an encoder's answer (a guess, see the module docstring).
DISPATCH_TIMEOUT_S: Final = 30.0
#: Seconds without an update after which an ``encoding`` job is stalled (``getStalledJobs(30)``).
STALL_AFTER_S: Final = 30 * 60.0
#: The stall that fails a job instead of resetting it: when its attempt count is already this.
STALL_GIVE_UP_ATTEMPTS: Final = 2
#: Characters of the DID that name a community encoder (``community-${did.slice(-12)}``).
COMMUNITY_NAME_CHARS: Final = 12
#: Random bytes of a callback token (``randomBytes(32).toString('hex')``).
CALLBACK_TOKEN_BYTES: Final = 32
#: Longest wait of :meth:`EmbedServer.wait_for` between two checks of its predicate (seconds).
WAIT_RECHECK_S: Final = 0.1
#: Seconds between two checks of a held request's gate (:meth:`EmbedServer.hold`).
HOLD_POLL_S: Final = 0.01
#: Request headers kept in the call log (lower case).
HEADERS_OF_INTEREST: Final = (
    "x-api-key",
    "content-type",
    "user-agent",
    "idempotency-key",
    "x-speak-signature",
)
GATEWAY_ROUTES: Final = ("updateNode", "myJob", "heartbeat")
#: Methods answered by Express's own 404 on an unknown path.
EXPRESS_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
TIERS: Final = ("performance", "standard", "lite")

STALL_RESET_ERROR: Final = "Reset due to stall (no progress update)"
UNAUTHORIZED: Final = {"error": "Unauthorized"}
BAD_JWS: Final = {"error": "Invalid JWS signature"}
NOT_REGISTERED: Final = {"error": "Encoder not registered"}
REFUSED: Final = {"error": "Encoder is disabled or banned"}
JOB_NOT_FOUND: Final = {"error": "Job not found"}
SERVER_ERROR: Final = {"error": "Internal server error"}


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: int
    body: Any
    did: str | None = None
    payload: dict[str, Any] | None = None


#: What a JWS route's handler returns: the answer body (200), or (status, body).
_Answer = dict[str, Any] | tuple[int, Any]
_MISSING: Final = object()


# --- the server ------------------------------------------------------------------------------


class EmbedServer(ReferenceServer):
    """The reference embed server (see the module docstring). Use as a context manager."""

    thread_name = "reference-embed-server"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_key: str = DEFAULT_WEBHOOK_KEY,
        webhook_url: str | None = None,
        ipfs_gateway: str = IPFS_GATEWAY,
        progress_delay: float = 0.0,
        webhook_delay: float = 0.0,
        stall_after: float = STALL_AFTER_S,
        dispatch_interval: float | None = None,
        dispatch_timeout: float = DISPATCH_TIMEOUT_S,
        hang_seconds: float = DEFAULT_HANG_S,
    ) -> None:
        super().__init__(host=host, port=port, hang_seconds=hang_seconds)
        self.webhook_key = webhook_key
        self._webhook_url = webhook_url
        self.ipfs_gateway = ipfs_gateway.rstrip("/")
        self.progress_delay = progress_delay
        self.webhook_delay = webhook_delay
        self.stall_after = stall_after
        self.dispatch_interval = dispatch_interval
        self.dispatch_timeout = dispatch_timeout
        self._videos: dict[str, Video] = {}
        self._jobs: dict[tuple[str, str], EmbedJob] = {}
        self._encoders: dict[str, Encoder] = {}
        self._calls: list[EmbedCall] = []
        self._seq = 0
        self._changes = 0  # bumped on every change (wait_for)
        self._in_flight: dict[str, int] = {}  # route → requests received, not yet answered
        self._holds: dict[str, threading.Event] = {}
        self._round_robin: dict[str, int] = {}
        self._cond = threading.Condition(threading.RLock())
        self._dispatcher: threading.Thread | None = None
        self._dispatcher_stop = threading.Event()
        self._http: httpx.Client | None = None  # the dispatcher's (created on first use)
        prefix = ROUTE_PREFIX
        self.app = Starlette(
            routes=[
                Route("/webhook", self._webhook_route, methods=["POST"]),
                Route("/webhook/progress", self._progress_route, methods=["POST"]),
                Route(prefix + "updateNode", self._update_node_route, methods=["POST"]),
                Route(prefix + "myJob", self._my_job_route, methods=["POST"]),
                Route(prefix + "heartbeat", self._heartbeat_route, methods=["POST"]),
                Route("/video/{permlink}", self._video_route, methods=["GET"]),
                Route("/health", self._health_route, methods=["GET"]),
                Route("/", self._root_route, methods=["GET"]),
                Route("/_reference/videos", self._reference_videos, methods=["GET", "POST"]),
                Route(
                    "/_reference/jobs/{owner}/{permlink}/redispatch",
                    self._reference_redispatch,
                    methods=["POST"],
                ),
                Route("/{path:path}", self._unknown_route, methods=[*EXPRESS_METHODS]),
            ]
        )

    @property
    def webhook_url(self) -> str:
        """The ``webhook_url`` handed to encoders (the real ``WEBHOOK_URL``): ``<url>/webhook``."""
        return self._webhook_url or f"{self.url}/webhook"

    # --- lifecycle (the background dispatcher) ------------------------------------------------

    def start(self) -> Self:
        super().start()
        if self.dispatch_interval is not None:
            self.start_dispatcher(self.dispatch_interval)
        return self

    def stop(self) -> None:
        self.stop_dispatcher()
        super().stop()
        with self._cond:
            client, self._http = self._http, None
        if client is not None:
            client.close()

    def start_dispatcher(self, interval: float = DISPATCH_INTERVAL_S) -> None:
        """Run :meth:`dispatch_once` now and every ``interval`` seconds (a background thread)."""
        if self._dispatcher is not None:
            return
        self._dispatcher_stop.clear()

        def loop() -> None:
            while True:
                try:
                    self.dispatch_once()
                except Exception:  # the real cycle logs and carries on
                    log.exception("embed server: dispatcher cycle failed")
                if self._dispatcher_stop.wait(interval):
                    return

        self._dispatcher = threading.Thread(target=loop, name="embed-dispatcher", daemon=True)
        self._dispatcher.start()

    def stop_dispatcher(self) -> None:
        self._dispatcher_stop.set()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=self.dispatch_timeout + 5)
        self._dispatcher = None

    # --- test controls ------------------------------------------------------------------------

    def add_video(
        self,
        owner: str,
        permlink: str,
        input_cid: str,
        *,
        short: bool = False,
        premium: bool = False,
        frontend_app: str | None = None,
        original_filename: str | None = None,
        size: int | None = None,
    ) -> EmbedJob:
        """A video whose upload is pinned (``processing``) and its ``pending`` job (as
        ``processUploadAsync`` + ``createEncodeJob`` leave them); returns the job."""
        with self._cond:
            if permlink in self._videos or (owner, permlink) in self._jobs:
                raise ValueError(f"E11000 duplicate key: {owner}/{permlink} already exists")
            now = time.time()
            self._videos[permlink] = Video(
                owner=owner, permlink=permlink, input_cid=input_cid, short=short,
                frontend_app=frontend_app, original_filename=original_filename, size=size,
                created_at=now, updated_at=now,
            )  # fmt: skip
            self._seq += 1
            job = EmbedJob(
                owner=owner, permlink=permlink, premium=premium, short=short, file_size=size,
                created_at=now, updated_at=now, seq=self._seq,
            )  # fmt: skip
            self._jobs[(owner, permlink)] = job
            self._changed()
            return copy.deepcopy(job)

    def add_managed_encoder(
        self,
        name: str,
        url: str,
        api_key: str,
        *,
        enabled: bool = True,
        tier: str = "standard",
        max_file_size: int | None = None,
    ) -> Encoder:
        """A managed encoder the dispatcher pushes jobs to (``POST /admin/encoders``); jobs go to
        ``<url>/encode`` (no trailing ``/`` in ``url``: the real one does not strip it either)."""
        if tier not in TIERS:
            raise EmbedAdminError(400, f"tier must be one of: {', '.join(TIERS)}")
        with self._cond:
            if name in self._encoders:
                raise EmbedAdminError(409, f"Encoder '{name}' already exists")
            encoder = Encoder(name=name, url=url, api_key=api_key, enabled=enabled,
                              tier=tier, max_file_size=max_file_size)  # fmt: skip
            self._encoders[name] = encoder
            self._changed()
            return copy.deepcopy(encoder)

    def video(self, permlink: str) -> Video:
        with self._cond:
            return copy.deepcopy(self._videos[permlink])

    def videos(self) -> list[Video]:
        with self._cond:
            return [copy.deepcopy(v) for v in self._videos.values()]

    def job(self, owner: str, permlink: str) -> EmbedJob:
        with self._cond:
            return copy.deepcopy(self._jobs[(owner, permlink)])

    def jobs(self) -> list[EmbedJob]:
        with self._cond:
            return [copy.deepcopy(j) for j in self._sorted_jobs()]

    def encoder(self, name_or_did: str) -> Encoder:
        """An encoder by its name, or a community encoder by its DID."""
        with self._cond:
            found = self._find_encoder(name_or_did)
            if found is None:
                raise KeyError(name_or_did)
            return copy.deepcopy(found)

    def encoders(self) -> list[Encoder]:
        with self._cond:
            return [copy.deepcopy(e) for e in self._encoders.values()]

    def calls(
        self,
        route: str | None = None,
        *,
        did: str | None = None,
        direction: Literal["in", "out"] | None = None,
    ) -> list[EmbedCall]:
        with self._cond:
            return [
                c
                for c in self._calls
                if (route is None or c.route == route)
                and (did is None or c.did == did)
                and (direction is None or c.direction == direction)
            ]

    def offers(self, did: str | None = None) -> list[dict[str, Any]]:
        """The jobs ``myJob`` handed out (to ``did``), oldest first."""
        answers = [c.answer for c in self.calls("myJob", did=did) if c.status == 200]
        return [a["job"] for a in answers if isinstance(a, dict) and isinstance(a.get("job"), dict)]

    def pending_requests(self, route: str) -> int:
        """Requests of ``route`` received and not answered yet (held, delayed or hanging)."""
        with self._cond:
            return self._in_flight.get(route, 0)

    @contextlib.contextmanager
    def hold(self, route: str) -> Iterator[None]:
        """Requests of ``route`` that arrive inside this block wait until it ends before they
        are processed (a receiver that is slow for as long as a test needs, deterministically)."""
        gate = threading.Event()
        with self._cond:
            self._holds[route] = gate
        try:
            yield
        finally:
            with self._cond:
                self._holds.pop(route, None)
            gate.set()

    def wait_for(
        self, predicate: Callable[[], T | None], timeout: float = 10.0, what: str = ""
    ) -> T:
        """Wait until ``predicate()`` is truthy and return its value; AssertionError after
        ``timeout`` seconds. Re-checked after every change of this server and at least every
        ``WAIT_RECHECK_S`` (so it may also watch something else, e.g. a node's log). The
        predicate runs without this server's lock held: it may even call the server over HTTP."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                seen = self._changes
            value = predicate()
            if value:
                return value
            with self._cond:
                left = deadline - time.monotonic()
                if left <= 0:
                    recent = [(c.route, c.status) for c in self._calls[-8:]]
                    raise AssertionError(
                        f"timed out after {timeout:g} s waiting for {what or repr(predicate)}; "
                        f"last calls: {recent}"
                    )
                if self._changes == seen:
                    self._cond.wait(min(left, WAIT_RECHECK_S))

    def wait_for_calls(
        self,
        route: str,
        count: int = 1,
        *,
        where: Callable[[EmbedCall], bool] | None = None,
        timeout: float = 10.0,
    ) -> list[EmbedCall]:
        """Wait until ``count`` calls of ``route`` (matching ``where``) were answered."""

        def matching() -> list[EmbedCall] | None:
            found = [c for c in self.calls(route) if where is None or where(c)]
            return found if len(found) >= count else None

        return self.wait_for(matching, timeout, f"{count} call(s) of {route}")

    # --- admin actions ------------------------------------------------------------------------

    def redispatch(self, owner: str, permlink: str) -> dict[str, Any]:
        """``POST /admin/jobs/<owner>/<permlink>/redispatch``: the answer, or EmbedAdminError."""
        status, body = self._redispatch(owner, permlink)
        if status != 200:
            raise EmbedAdminError(status, str(body["error"]))
        return body

    def reset_stalled(self, older_than_s: float) -> list[StallOutcome]:
        """The dispatcher's stall check: ``encoding`` jobs not updated for ``older_than_s``."""
        cutoff = time.time() - older_than_s
        outcomes: list[StallOutcome] = []
        with self._cond:
            for job in self._sorted_jobs():
                if job.status != "encoding" or not job.updated_at < cutoff:
                    continue
                now = time.time()
                if job.attempt_count >= STALL_GIVE_UP_ATTEMPTS:
                    job.status, job.updated_at = "failed", now
                    job.last_error = f"Stalled {job.attempt_count + 1} times — giving up"
                    self._update_video(job.permlink, "failed")
                    outcomes.append(StallOutcome(job.owner, job.permlink, "failed"))
                    continue
                self._clear_assignment(job)
                job.status, job.last_error, job.updated_at = "pending", STALL_RESET_ERROR, now
                job.attempt_count += 1
                outcomes.append(StallOutcome(job.owner, job.permlink, "reset"))
            if outcomes:
                self._changed()
        return outcomes

    def remove_encoder(self, name_or_did: str) -> None:
        """``DELETE /admin/encoders/<name>`` (a community encoder may be named by its DID)."""
        with self._cond:
            found = self._find_encoder(name_or_did)
            if found is None:
                raise EmbedAdminError(404, "Encoder not found")
            del self._encoders[found.name]
            self._changed()

    def set_encoder(
        self,
        name_or_did: str,
        *,
        enabled: bool | None = None,
        banned: bool | None = None,
        url: str | None = None,
        api_key: str | None = None,
        tier: str | None = None,
        max_file_size: int | object | None = _MISSING,
    ) -> dict[str, Any]:
        """``PATCH /admin/encoders/<name>``; returns the updates made."""
        updates: dict[str, Any] = {}
        if url is not None:
            updates["url"] = url
        if api_key is not None:
            updates["api_key"] = api_key
        if enabled is not None:
            updates["enabled"] = enabled
        if tier is not None:
            if tier not in TIERS:
                raise EmbedAdminError(400, f"tier must be one of: {', '.join(TIERS)}")
            updates["tier"] = tier
        if max_file_size is not _MISSING:
            updates["max_file_size"] = max_file_size
        if banned is not None:
            updates["banned"] = banned
        with self._cond:
            found = self._find_encoder(name_or_did)
            if found is None:
                raise EmbedAdminError(404, "Encoder not found")
            if not updates:
                raise EmbedAdminError(400, "No valid fields to update")
            for key, value in updates.items():
                setattr(found, key, value)
            found.updated_at = time.time()
            self._changed()
        return updates

    @staticmethod
    def community_name(did: str) -> str:
        """The name ``updateNode`` gives the encoder of ``did``."""
        return f"community-{did[-COMMUNITY_NAME_CHARS:]}"

    # --- the dispatcher -----------------------------------------------------------------------

    def dispatch_once(self) -> list[DispatchResult]:
        """One dispatcher cycle: the stall check, then up to DISPATCH_BATCH jobs pushed."""
        self.reset_stalled(self.stall_after)
        results: list[DispatchResult] = []
        with self._cond:
            if self._http is None:
                self._http = httpx.Client(timeout=self.dispatch_timeout, follow_redirects=False)
            client = self._http
        for _ in range(DISPATCH_BATCH):
            with self._cond:
                job = self._claim_managed()
                if job is None:
                    break
                claimed = copy.deepcopy(job)
            results.append(self._dispatch(client, claimed))
        return results

    def _claim_managed(self) -> EmbedJob | None:
        for job in self._sorted_jobs():
            if job.status == "pending":
                job.status, job.updated_at = "encoding", time.time()
                self._changed()
                return job
        return None

    def _dispatch(self, client: httpx.Client, job: EmbedJob) -> DispatchResult:
        encoder: Encoder | None = None
        try:
            with self._cond:
                video = self._videos.get(job.permlink)
                if video is None:
                    raise _DispatchError(f"Video not found: {job.permlink}")
                if not video.input_cid:
                    raise _DispatchError(f"Video has no input_cid: {job.permlink}")
                file_size = video.size if video.size is not None else job.file_size
                request = {
                    "owner": job.owner,
                    "permlink": job.permlink,
                    "input_cid": f"{self.ipfs_gateway}/{video.input_cid}",
                    "short": video.short,
                    "premium": job.premium,
                    "webhook_url": self.webhook_url,
                    "api_key": self.webhook_key,
                    "frontend_app": video.frontend_app,
                    "originalFilename": video.original_filename,
                }
                encoder = copy.deepcopy(self._next_encoder(job.premium, file_size, video.short))
            job_id = self._post_encode(client, encoder, request)
        except _DispatchError as exc:
            return self._dispatch_failed(job, encoder, exc.message)
        with self._cond:
            live = self._jobs.get((job.owner, job.permlink))
            if live is not None:
                live.status, live.encoder_job_id = "encoding", job_id
                live.assigned_worker, live.assigned_at = encoder.name, time.time()
                live.last_error, live.updated_at = None, time.time()
            self._changed()
        return DispatchResult(job.owner, job.permlink, encoder.name, True, job_id)

    def _post_encode(self, client: httpx.Client, encoder: Encoder, request: dict[str, Any]) -> Any:
        url = f"{encoder.url}/encode"
        headers = {"Content-Type": "application/json", "X-API-Key": encoder.api_key,
                   "User-Agent": "node"}  # fmt: skip
        content = json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode()
        sent, wall = time.monotonic(), time.time()
        kept = {k.lower(): v for k, v in headers.items() if k.lower() in HEADERS_OF_INTEREST}
        status, answer, error = 0, None, None
        try:
            try:
                response = client.post(url, content=content, headers=headers)
            except httpx.HTTPError:
                raise _DispatchError("fetch failed") from None
            status, answer = response.status_code, parse_answer(response.content)
            if not response.is_success:
                raise _DispatchError(f"Encoder API error: {status} - {response.text}")
            try:
                result = json.loads(response.content)
            except ValueError:
                raise _DispatchError(json_error(response.text)) from None
            return result.get("job_id") if isinstance(result, dict) else None
        except _DispatchError as exc:
            error = exc.message
            raise
        finally:
            self._record(EmbedCall("encode", "POST", url, "out", kept, request, status, answer,
                                   sent, time.monotonic(), wall, error=error))  # fmt: skip

    def _dispatch_failed(
        self, job: EmbedJob, encoder: Encoder | None, message: str
    ) -> DispatchResult:
        with self._cond:
            live = self._jobs.get((job.owner, job.permlink))
            status = "pending"
            if live is not None:
                live.attempt_count += 1
                live.status, live.last_error, live.updated_at = "pending", message, time.time()
                if job.attempt_count >= DISPATCH_MAX_ATTEMPTS:
                    live.status = status = "failed"
                    live.last_error = f"Max attempts exceeded: {message}"
                    self._update_video(job.permlink, "failed")
            self._changed()
        name = encoder.name if encoder is not None else None
        return DispatchResult(job.owner, job.permlink, name, False, error=message,
                              job_status=status)  # fmt: skip

    def _next_encoder(self, premium: bool, file_size: int | None, short: bool) -> Encoder:
        candidates = [e for e in self._encoders.values() if e.enabled and e.access == "managed"]
        if short:
            sized = [e for e in candidates if _fits(e, file_size)]
            return self._pick(sized or candidates, "short")
        if premium:
            for tier in ("performance", "standard"):
                group = _by_tier_and_size(candidates, tier, file_size)
                if group:
                    return self._pick(group, tier)
            raise _DispatchError("No suitable managed encoders available for premium job")
        for tier, key in (("standard", "free-standard"), ("lite", "free-lite")):
            group = _by_tier_and_size(candidates, tier, file_size)
            if group:
                return self._pick(group, key)
        raise _DispatchError("No suitable encoders available for free job")

    def _pick(self, encoders: list[Encoder], key: str) -> Encoder:
        if not encoders:
            raise _DispatchError(f"No encoders available for tier: {key}")
        counter = self._round_robin.get(key, 0)
        self._round_robin[key] = counter + 1
        return encoders[counter % len(encoders)]

    # --- record updates (the real Database methods) -------------------------------------------

    def _changed(self) -> None:
        """Wake :meth:`wait_for` (the lock is held)."""
        self._changes += 1
        self._cond.notify_all()

    def _sorted_jobs(self) -> list[EmbedJob]:
        return sorted(self._jobs.values(), key=lambda j: (j.created_at, j.seq))

    def _find_encoder(self, name_or_did: str) -> Encoder | None:
        found = self._encoders.get(name_or_did)
        if found is None:
            found = next((e for e in self._encoders.values() if e.did == name_or_did), None)
        return found

    def _update_video(self, permlink: str, status: str, **data: Any) -> None:
        video = self._videos.get(permlink)
        if video is None:
            return  # updateOne on a missing document: nothing
        video.status, video.updated_at = status, time.time()
        for key, value in data.items():
            setattr(video, key, value)

    @staticmethod
    def _clear_assignment(job: EmbedJob) -> None:
        job.assigned_worker = job.encoder_job_id = job.assigned_at = None
        job.encoding_progress = job.encoding_stage = None

    def _reset_job(self, job: EmbedJob) -> None:
        """``resetJob`` (the callback token is left as it is)."""
        self._clear_assignment(job)
        job.status, job.attempt_count, job.last_error = "pending", 0, None
        job.updated_at = time.time()

    def _redispatch(self, owner: str, permlink: str) -> tuple[int, dict[str, Any]]:
        with self._cond:
            job = self._jobs.get((owner, permlink))
            if job is None:
                return 404, JOB_NOT_FOUND
            video = self._videos.get(permlink)
            if video is None:
                return 404, {"error": "Video not found"}
            if not video.input_cid:
                return 400, {"error": "Video has no input_cid — nothing to dispatch"}
            previous = job.status
            self._reset_job(job)
            self._update_video(permlink, "processing", encoding_progress=0)
            self._changed()
        return 200, {
            "success": True,
            "message": "Job reset to pending. Dispatcher will pick it up on the next cycle.",
            "job": {"owner": owner, "permlink": permlink, "previousStatus": previous},
        }

    # --- HTTP ---------------------------------------------------------------------------------

    def _record(self, call: EmbedCall) -> None:
        with self._cond:
            self._calls.append(call)
            self._changed()

    async def _serve(
        self,
        request: Request,
        route: str,
        handler: Callable[[Any, dict[str, str]], _Outcome],
        *,
        delay: float = 0.0,
    ) -> Response:
        received, wall = time.monotonic(), time.time()
        headers = {k: v for k in HEADERS_OF_INTEREST if (v := request.headers.get(k)) is not None}
        body = express_json(await request.body(), request.headers.get("content-type", ""))
        with self._cond:
            self._in_flight[route] = self._in_flight.get(route, 0) + 1
            gate = self._holds.get(route)
            self._changed()
        try:
            fault = self.faults.take(route)
            outcome: _Outcome | None = None
            if fault is not None:
                response = await self._fault_response(route, fault, request)
            elif isinstance(body, BadJson):
                response = express_page(400, "Bad Request")
            else:
                # the gate is opened by the test's thread: a threading.Event, polled
                while gate is not None and not gate.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(HOLD_POLL_S)
                if delay > 0:
                    await asyncio.sleep(delay)
                outcome = handler(body, headers)
                response = JSONResponse(outcome.body, status_code=outcome.status)
        finally:
            with self._cond:
                self._in_flight[route] -= 1
        self._record(
            EmbedCall(
                route, request.method, request.url.path, "in", headers,
                None if isinstance(body, BadJson) else body,
                response.status_code,
                outcome.body if outcome is not None else parse_answer(bytes(response.body)),
                received, time.monotonic(), wall,
                did=outcome.did if outcome else None,
                payload=outcome.payload if outcome else None, fault=fault,
            )
        )  # fmt: skip
        return response

    async def _fault_response(self, route: str, fault: str, request: Request) -> Response:
        gateway = route in GATEWAY_ROUTES
        if fault == "500":
            return JSONResponse(SERVER_ERROR, status_code=500)
        if fault == "401":
            return JSONResponse(BAD_JWS if gateway else UNAUTHORIZED, status_code=401)
        if fault == "404":
            if gateway:
                return JSONResponse(NOT_REGISTERED, status_code=404)
            if route == "webhook/progress":
                return JSONResponse(JOB_NOT_FOUND, status_code=404)
            return express_page(404, f"Cannot {request.method} {request.url.path}")
        if fault == "malformed":
            return Response('{"success":true,"job":{"owner":', media_type="application/json")
        if fault == "html":
            return Response(HTML_PAGE, status_code=502, media_type="text/html")
        await asyncio.sleep(self.hang_seconds)  # timeout: the proxy in front gives up
        return Response(HTML_PAGE.replace("502 Bad Gateway", "504 Gateway Time-out"),
                        status_code=504, media_type="text/html")  # fmt: skip

    # POST /webhook
    async def _webhook_route(self, request: Request) -> Response:
        return await self._serve(request, "webhook", self._webhook, delay=self.webhook_delay)

    def _authorized(self, api_key: str | None, job: EmbedJob | None) -> bool:
        if api_key == self.webhook_key:
            return True
        return (
            bool(api_key)
            and job is not None
            and bool(job.callback_token)
            and (job.callback_token == api_key)
        )

    def _webhook(self, body: Any, headers: dict[str, str]) -> _Outcome:
        fields = body if isinstance(body, dict) else {}
        api_key = headers.get("x-api-key")
        owner, permlink = fields.get("owner"), fields.get("permlink")
        with self._cond:
            if api_key != self.webhook_key:
                if not truthy(owner) or not truthy(permlink) or not api_key:
                    return _Outcome(401, UNAUTHORIZED)
                if not self._authorized(api_key, self._job_at(owner, permlink)):
                    return _Outcome(401, UNAUTHORIZED)
            status = fields.get("status")
            if status == "complete":
                self._update_video(_key(permlink), "published",
                                   manifest_cid=fields.get("manifest_cid"),
                                   encoding_progress=100)  # fmt: skip
                job = self._job_at(owner, permlink)
                if job is not None:
                    job.status, job.updated_at = "completed", time.time()
                    job.webhook_received_at = time.time()
                self._changed()
                return _Outcome(200, {"success": True,
                                      "message": "Webhook processed successfully"})  # fmt: skip
            if status == "failed":
                return self._webhook_failed(owner, permlink, fields.get("error"))
            return _Outcome(400, {"error": "Unknown status"})

    def _webhook_failed(self, owner: Any, permlink: Any, error: Any) -> _Outcome:
        job = self._job_at(owner, permlink)
        now = time.time()
        reason = error if truthy(error) else "Encoding failed"
        if job is not None and job.attempt_count < MAX_ENCODE_ATTEMPTS:
            attempt = job.attempt_count + 1
            self._clear_assignment(job)
            job.status, job.webhook_received_at, job.updated_at = "pending", now, now
            job.last_error = (
                f"{js_string(reason)} (attempt {attempt}/{MAX_ENCODE_ATTEMPTS + 1}, requeueing)"
            )
            job.attempt_count += 1
            self._update_video(_key(permlink), "processing", encoding_progress=0)
            self._changed()
            message = "Webhook processed (failure recorded, job requeued)"
            return _Outcome(200, {"success": True, "message": message})
        self._update_video(_key(permlink), "failed", encoding_progress=0)
        if job is not None:
            job.status, job.webhook_received_at, job.updated_at = "failed", now, now
            job.last_error = reason
        self._changed()
        return _Outcome(200, {"success": True, "message": "Webhook processed (failure recorded)"})

    # POST /webhook/progress
    async def _progress_route(self, request: Request) -> Response:
        return await self._serve(request, "webhook/progress", self._progress,
                                 delay=self.progress_delay)  # fmt: skip

    def _progress(self, body: Any, headers: dict[str, str]) -> _Outcome:
        fields = body if isinstance(body, dict) else {}
        owner, permlink = fields.get("owner"), fields.get("permlink")
        progress = fields.get("progress")
        if not truthy(owner) or not truthy(permlink) or not is_number(progress):
            return _Outcome(400, {"error": "owner, permlink, and progress (number) are required"})
        with self._cond:
            job = self._job_at(owner, permlink)
            if job is None:
                return _Outcome(404, JOB_NOT_FOUND)
            if not self._authorized(headers.get("x-api-key"), job):
                return _Outcome(401, UNAUTHORIZED)
            stage = fields.get("stage")
            job.status, job.updated_at = "encoding", time.time()
            job.encoding_progress, job.encoding_stage = progress, stage
            self._update_video(_key(permlink), "processing", encoding_progress=progress)
            self._changed()
        return _Outcome(200, {"success": True})

    def _job_at(self, owner: Any, permlink: Any) -> EmbedJob | None:
        if not isinstance(owner, str) or not isinstance(permlink, str):
            return None
        return self._jobs.get((owner, permlink))

    # JWS-POST /api/v0/gateway/*
    async def _update_node_route(self, request: Request) -> Response:
        return await self._serve(request, "updateNode", self._jws(self._update_node))

    async def _my_job_route(self, request: Request) -> Response:
        return await self._serve(request, "myJob", self._jws(self._my_job))

    async def _heartbeat_route(self, request: Request) -> Response:
        return await self._serve(request, "heartbeat", self._jws(self._heartbeat))

    def _jws(
        self, handler: Callable[[str, dict[str, Any]], _Answer]
    ) -> Callable[[Any, dict[str, str]], _Outcome]:
        """``unwrapJWS(req.body.jws)`` then ``handler(did, payload)``."""

        def run(body: Any, headers: dict[str, str]) -> _Outcome:
            jws = body.get("jws") if isinstance(body, dict) else None
            try:
                if not isinstance(jws, dict):
                    raise InvalidJws("no JWS", "malformed")
                payload = verify_jws(jws)
                did = _kid_did(jws)
            except (InvalidJws, KeyError, IndexError, TypeError, ValueError):
                return _Outcome(401, BAD_JWS)
            answer = handler(did, payload)
            status, answer_body = answer if isinstance(answer, tuple) else (200, answer)
            return _Outcome(status, answer_body, did=did, payload=payload)

        return run

    def _update_node(self, did: str, payload: dict[str, Any]) -> _Answer:
        info = payload.get("node_info")
        node_info: Any = info if truthy(info) else payload
        if not isinstance(node_info, dict):
            node_info = {}
        name = node_info.get("name", _MISSING)
        accounts = node_info.get("cryptoAccounts")
        hive = accounts.get("hive", _MISSING) if isinstance(accounts, dict) else _MISSING
        if hive is _MISSING or not truthy(hive):
            hive = node_info.get("hive_account", _MISSING)
        now = time.time()
        with self._cond:
            encoder = self._find_by_did(did)
            if encoder is None:
                encoder = Encoder(name=self.community_name(did), did=did, access="community",
                                  tier="lite", created_at=now)  # fmt: skip
                self._encoders[encoder.name] = encoder
            given = {
                "display_name": name,
                "hive_account": hive,
                "peer_id": node_info.get("peer_id", _MISSING),
                "commit_hash": node_info.get("commit_hash", _MISSING),
            }
            for attr, value in given.items():
                if value is not _MISSING:
                    setattr(encoder, attr, value)
            encoder.last_seen_at = encoder.updated_at = now
            self._changed()
            return {
                "success": True,
                "encoder": {"name": encoder.name, "did": encoder.did, "tier": encoder.tier,
                            "access": encoder.access, "enabled": encoder.enabled},
            }  # fmt: skip

    def _find_by_did(self, did: str) -> Encoder | None:
        return next((e for e in self._encoders.values() if e.did == did), None)

    def _heartbeat(self, did: str, payload: dict[str, Any]) -> _Answer:
        with self._cond:
            encoder = self._find_by_did(did)
            if encoder is None:
                return 404, NOT_REGISTERED
            encoder.last_seen_at = time.time()
            return {"success": True}

    def _my_job(self, did: str, payload: dict[str, Any]) -> _Answer:
        with self._cond:
            encoder = self._find_by_did(did)
            if encoder is None:
                return 404, NOT_REGISTERED
            if not encoder.enabled or encoder.banned:
                return 403, REFUSED
            encoder.last_seen_at = time.time()
            job = self._claim_community(encoder)
            if job is None:
                return {"success": True, "job": None}
            video = self._videos.get(job.permlink)
            if video is None or not video.input_cid:
                self._reset_job(job)
                return {"success": True, "job": None}
            self._changed()
            return {
                "success": True,
                "job": {
                    "owner": job.owner,
                    "permlink": job.permlink,
                    "input_cid": f"{self.ipfs_gateway}/{video.input_cid}",
                    "short": video.short,
                    "premium": False,
                    "webhook_url": self.webhook_url,
                    "api_key": job.callback_token,
                    "frontend_app": video.frontend_app,
                    "originalFilename": video.original_filename,
                },
            }

    def _claim_community(self, encoder: Encoder) -> EmbedJob | None:
        """``claimNextCommunityJob``: the oldest free long pending job, with a new token."""
        cap = encoder.max_file_size
        for job in self._sorted_jobs():
            if job.status != "pending" or job.premium or job.short:
                continue
            if cap is not None and not (job.file_size is not None and 0 < job.file_size <= cap):
                continue
            now = time.time()
            job.status, job.assigned_worker, job.assigned_at = "encoding", encoder.name, now
            job.updated_at = now
            job.callback_token = secrets.token_hex(CALLBACK_TOKEN_BYTES)
            return job
        return None

    # GET routes and Express's own answers
    async def _video_route(self, request: Request) -> Response:
        permlink = str(request.path_params["permlink"])

        def answer(body: Any, headers: dict[str, str]) -> _Outcome:
            with self._cond:
                video = self._videos.get(permlink)
                if video is None:
                    return _Outcome(404, {"error": "Video not found"})
                return _Outcome(200, video.document())

        return await self._serve(request, "video", answer)

    async def _health_route(self, request: Request) -> Response:
        body = {"status": "ok", "service": "3speak-video-upload", "activeUploads": 0,
                "freeDiskPct": None}  # fmt: skip
        return await self._serve(request, "health", lambda b, h: _Outcome(200, body))

    async def _root_route(self, request: Request) -> Response:
        return RedirectResponse("/demo.html", status_code=302)

    async def _unknown_route(self, request: Request) -> Response:
        return express_page(404, f"Cannot {request.method} {request.url.path}")

    # Non-spec helpers (this model only)
    async def _reference_videos(self, request: Request) -> Response:
        def handle(body: Any, headers: dict[str, str]) -> _Outcome:
            if request.method == "GET":
                return _Outcome(200, [v.document() for v in self.videos()])
            fields = body if isinstance(body, dict) else {}
            try:
                job = self.add_video(
                    str(fields["owner"]), str(fields["permlink"]), str(fields["input_cid"]),
                    short=bool(fields.get("short", False)),
                    premium=bool(fields.get("premium", False)),
                    frontend_app=fields.get("frontend_app"),
                    original_filename=fields.get("originalFilename"),
                    size=fields.get("size"),
                )  # fmt: skip
            except KeyError:
                return _Outcome(400, {"error": "owner, permlink and input_cid are required"})
            except ValueError as exc:
                return _Outcome(409, {"error": str(exc)})
            return _Outcome(200, {"success": True, "owner": job.owner, "permlink": job.permlink,
                                  "status": job.status})  # fmt: skip

        return await self._serve(request, "reference/videos", handle)

    async def _reference_redispatch(self, request: Request) -> Response:
        owner, permlink = str(request.path_params["owner"]), str(request.path_params["permlink"])
        return await self._serve(
            request, "admin/redispatch", lambda b, h: _Outcome(*self._redispatch(owner, permlink))
        )


class _DispatchError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- small helpers -----------------------------------------------------------------------------


def _fits(encoder: Encoder, file_size: int | None) -> bool:
    """Within the encoder's ``max_file_size`` (none: any size; an unknown size fits no cap)."""
    cap = encoder.max_file_size
    return cap is None or (file_size is not None and file_size <= cap)


def _by_tier_and_size(encoders: list[Encoder], tier: str, file_size: int | None) -> list[Encoder]:
    return [e for e in encoders if e.tier == tier and _fits(e, file_size)]


def _key(value: Any) -> str:
    """A record key from a JSON value (a non-string matches no document)."""
    return value if isinstance(value, str) else "\x00not-a-key"


def _kid_did(jws: dict[str, Any]) -> str:
    """``data.kid.split('#')[0]``: the signer's DID as the real server stores it."""
    protected = str(jws["signatures"][0]["protected"])
    header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    return str(header["kid"]).split("#")[0]


__all__ = [
    "DEFAULT_WEBHOOK_KEY",
    "DISPATCH_INTERVAL_S",
    "IPFS_GATEWAY",
    "MAX_ENCODE_ATTEMPTS",
    "STALL_AFTER_S",
    "DispatchResult",
    "EmbedAdminError",
    "EmbedCall",
    "EmbedJob",
    "EmbedServer",
    "Encoder",
    "StallOutcome",
    "Video",
]
