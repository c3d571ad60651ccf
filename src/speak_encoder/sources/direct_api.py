"""The Direct API (docs/protocols.md §4): 3Speak pushes jobs to the node ("managed mode").

Why this module is long: it is one API: its response models (the OpenAPI schema), the outer ASGI
layer that bounds every request, and the routes of :func:`create_app`. Each part is small and
only means something with the others.

Routes: ``GET /health`` (no auth), ``POST /encode``, ``GET /job/{job_id}``, ``GET /jobs``;
the OpenAPI schema at ``/openapi.json`` (no auth: the schema is public). The Swagger UI at
``/docs`` loads its script from a CDN, so it is off unless ``DIRECT_API_DOCS=true``.

Every other request needs ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``, compared in
constant time with ``DIRECT_API_KEY`` (at least 16 characters); with no key configured every
such request is refused. A client address that fails :data:`~speak_encoder.asgi_server.
AUTH_MAX_FAILURES` times within a minute gets 429 (with ``Retry-After``) without its key being
checked until the oldest failure ages out. A Host other than ``DIRECT_API_HOST``, loopback,
``localhost`` or ``ALLOWED_HOSTS`` gets 400; headers and bodies have read deadlines and the
server holds at most ``HTTP_MAX_CONNECTIONS`` connections (:mod:`speak_encoder.asgi_server`).

Every error — 400, 401, 404, 405, 413, 429, 500, 503 — has the §4 shape
``{"job_id":"","status":"failed","created_at":<ISO>,"error":<text>}``. Request bodies are
limited to ``DIRECT_API_MAX_BODY`` bytes while they are read (a Content-Length is checked
first but not trusted: chunked bodies and lying lengths are counted as they arrive).
Responses never hold a local path or a secret (the stored ``api_key`` is never returned), and
request headers are never logged: uvicorn's access log is off; one line per request gives
method, path (no query), status and duration.

``status`` words and the ``progress`` figure are described in
:mod:`speak_encoder.sources.direct_request`. ``GET /jobs``: ``total`` = every job the store
holds (history included), ``pending`` = queued or waiting for a retry, ``active`` = running.

:func:`serve` runs uvicorn inside the current event loop (no signal handlers of its own: the
service's lifespan owns SIGTERM) until ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from speak_encoder import __version__, asgi_server
from speak_encoder.config import Settings
from speak_encoder.errors import NetworkError, QueueFull, StoreUnavailable
from speak_encoder.node.models import Job, JobState, is_job_id
from speak_encoder.node.store import JobStore
from speak_encoder.sources.direct_request import (
    OFFER_LOG,
    DirectJobRequest,
    job_progress,
    public_error,
    to_new_job,
    wire_status,
)
from speak_encoder.sources.webhooks import iso_utc
from speak_encoder.urlguard import UnsafeUrl, UrlGuard

log = logging.getLogger(__name__)

#: Seconds the webhook_url's DNS lookup may take at submission.
SUBMIT_DNS_TIMEOUT_S = 10.0
#: Validation problems listed in one 400 answer, at most.
MAX_LISTED_PROBLEMS = 10
#: Keys of a rendition shown in ``GET /job`` (never a path).
_RENDITION_KEYS = (
    "name", "width", "height", "bandwidth", "average_bandwidth", "codecs", "frame_rate",
    "segments",
)  # fmt: skip

SUBMITTED = "Job submitted successfully"
#: The two ways to send the key (module level: FastAPI resolves annotations in module scope).
_API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
_BEARER = HTTPBearer(auto_error=False, scheme_name="Bearer")
NOT_FOUND = "Job not found"


# --- response models (the OpenAPI schema; responses are built as plain JSON) ---------------


class Health(BaseModel):
    status: str
    ready: bool
    timestamp: str


class EncodeAccepted(BaseModel):
    job_id: str
    status: str
    created_at: str
    message: str
    progress: int


class JobView(BaseModel):
    job_id: str
    status: str
    created_at: str
    updated_at: str
    progress: int
    result: dict[str, Any] | None
    error: str | None


class JobCounts(BaseModel):
    total: int
    pending: int
    active: int


class ErrorBody(BaseModel):
    job_id: str
    status: str
    created_at: str
    error: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Invalid request"),
        (401, "Missing or wrong API key, or none configured"),
        (413, "Request body too large"),
        (429, "Queue full (see Retry-After)"),
        (503, "Job store unavailable"),
    )
}


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, *, job_id: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.job_id = job_id
        self.headers = headers


def error_body(message: str, *, job_id: str = "") -> dict[str, Any]:
    return {
        "job_id": job_id,
        "status": "failed",
        "created_at": iso_utc(time.time()),
        "error": message,
    }


def error_response(
    status: int, message: str, *, job_id: str = "", headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(message, job_id=job_id), status_code=status, headers=headers)


# --- the outer ASGI layer: body limit, last-resort errors, request log, headers -------------


class _Edge:
    """Body-size limit, a 500 in the §4 shape for any escaped exception, one log line per
    request (never its headers or query), ``nosniff`` / ``no-store`` on every response."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        state = {"status": 0}

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = int(message["status"])
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Cache-Control"] = "no-store"
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if isinstance(body, JSONResponse):
                await body(scope, receive, send_marked)
                return
            if body is None:  # the client went away
                return
            await self.app(scope, _replay(body, receive), send_marked)
        except Exception:
            log.exception("Direct API: %s %r failed", scope.get("method"), scope.get("path"))
            if not state["status"]:
                await error_response(500, "internal error")(scope, receive, send_marked)
        finally:
            log.info(
                "Direct API: %s %r → %d (%.0f ms)",
                scope.get("method"), str(scope.get("path", ""))[:200], state["status"],
                (time.monotonic() - started) * 1000,
            )  # fmt: skip

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | JSONResponse | None:
        too_large = error_response(
            413, f"the request body is larger than DIRECT_API_MAX_BODY ({self.max_body} bytes)"
        )
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return error_response(400, "invalid Content-Length header")
            if int(length) > self.max_body:
                return too_large
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.max_body:
                return too_large
            if not message.get("more_body", False):
                return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# --- helpers --------------------------------------------------------------------------------


def _problems(exc: ValidationError | RequestValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "is required"
        parts.append(f"{where}: {msg}")
    shown = "; ".join(parts[:MAX_LISTED_PROBLEMS])
    more = len(parts) - MAX_LISTED_PROBLEMS
    return f"invalid request: {shown}" + (f" (and {more} more)" if more > 0 else "")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _public_result(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if not result:
        return None
    renditions = [
        {k: r[k] for k in _RENDITION_KEYS if k in r}
        for r in result.get("renditions") or []
        if isinstance(r, dict)
    ]
    cid = result.get("cid")
    return {
        "manifest_cid": cid,
        "video_url": result.get("manifest"),
        "qualities_encoded": list(result.get("qualities_encoded") or []),
        "renditions": renditions,
        "duration": result.get("duration"),
    }


def job_view(job: Job, settings: Settings) -> dict[str, Any]:
    """``GET /job/{id}``: status, progress and the public result (no paths, no api_key)."""
    result = _public_result(job.result) if job.state is JobState.COMPLETE else None
    return {
        "job_id": job.id,
        "status": wire_status(job),
        "created_at": iso_utc(job.created_at),
        "updated_at": iso_utc(job.updated_at),
        "progress": job_progress(job),
        "result": result,
        "error": public_error(job.error, settings) if job.error else None,
    }


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except StoreUnavailable:
        log.exception("Direct API: the job store is unavailable")
        raise ApiError(
            503, "the job store is unavailable: try again later", headers={"Retry-After": "30"}
        ) from None


# --- the app --------------------------------------------------------------------------------


def create_app(
    settings: Settings,
    store: JobStore,
    wake: Callable[[], None],
    *,
    ready: Callable[[], bool],
    guard: UrlGuard | None = None,
) -> FastAPI:
    """The Direct API over ``store``; ``wake()`` is called after each new job.

    ``guard`` checks webhook URLs (default: from ``settings``; tests inject a resolver).
    """
    url_guard = guard or UrlGuard.from_settings(settings)
    configured = settings.direct_api_key.get_secret_value() if settings.direct_api_key else ""
    expected = configured.encode()

    throttle = asgi_server.AuthThrottle()

    async def require_key(
        request: Request,
        x_api_key: Annotated[str | None, Security(_API_KEY_HEADER)],
        authorization: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
    ) -> None:
        if not expected:
            raise ApiError(
                401, "the Direct API has no DIRECT_API_KEY configured: every request is refused"
            )
        client = asgi_server.client_of(request.scope)
        wait = throttle.retry_after(client)
        if wait is not None:
            raise ApiError(
                429,
                f"too many failed authentications from this address: try again in {wait:.0f} s",
                headers={"Retry-After": str(round(wait))},
            )
        given = x_api_key or (authorization.credentials if authorization else None)
        if not given:  # not a guess: not counted
            raise ApiError(401, "missing API key: send X-API-Key or Authorization: Bearer")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
            throttle.failed(client)
            raise ApiError(401, "invalid API key")

    app = FastAPI(
        title="speak-encoder Direct API",
        version=__version__,
        description="Jobs pushed to a speak-encoder node (3Speak managed mode).",
        docs_url="/docs" if settings.direct_api_docs else None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, job_id=exc.job_id, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _problems(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: "no such route", 405: f"method {request.method} not allowed here"}
        text = messages.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, text, headers=getattr(exc, "headers", None))

    @app.get("/health", response_model=Health, tags=["node"])
    async def health() -> JSONResponse:
        """Liveness and readiness (no authentication)."""
        is_ready = bool(ready())
        return JSONResponse(
            {
                "status": "healthy" if is_ready else "starting",
                "ready": is_ready,
                "timestamp": iso_utc(time.time()),
            }
        )

    request_schema = DirectJobRequest.model_json_schema()

    @app.post(
        "/encode",
        response_model=EncodeAccepted,
        responses=_ERRORS,
        dependencies=[Depends(require_key)],
        tags=["jobs"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_schema}},
            }
        },
    )
    async def encode(request: Request) -> JSONResponse:
        """Submit a job (a duplicate of a queued, running or recent job returns that job)."""
        raw = await request.body()
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise ApiError(400, "the body must be a JSON object") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        try:
            req = DirectJobRequest.model_validate(data)
        except ValidationError as exc:
            raise ApiError(400, _problems(exc)) from None
        try:
            async with asyncio.timeout(SUBMIT_DNS_TIMEOUT_S):
                await url_guard.check(req.webhook_url, what="webhook_url")
        except UnsafeUrl as exc:
            raise ApiError(400, exc.message) from None
        except NetworkError as exc:
            raise ApiError(400, f"webhook_url: {exc.message}") from None
        except TimeoutError:
            raise ApiError(400, "webhook_url: the DNS lookup timed out") from None
        new = to_new_job(req, settings)
        with _store_errors():
            try:
                offer = await asyncio.to_thread(
                    store.offer,
                    new,
                    queue_max=settings.queue_max,
                    dedup_window_s=settings.dedup_window_hours * 3600,
                    report_target=req.report_target(),
                )
            except QueueFull as exc:
                seconds = max(1, round(exc.retry_after))
                raise ApiError(429, exc.message, headers={"Retry-After": str(seconds)}) from None
        job = offer.job
        log.info("📥 direct job %s %s: %r/%r", job.id, OFFER_LOG[offer.outcome],
                 req.owner[:64], req.permlink[:64])  # fmt: skip
        if offer.outcome in ("created", "reopened"):
            wake()
        return JSONResponse(
            {
                "job_id": job.id,
                "status": wire_status(job),
                "created_at": iso_utc(job.created_at),
                "message": SUBMITTED,
                "progress": job_progress(job),
            }
        )

    @app.get(
        "/job/{job_id}",
        response_model=JobView,
        responses={**_ERRORS, 404: {"model": ErrorBody, "description": NOT_FOUND}},
        dependencies=[Depends(require_key)],
        tags=["jobs"],
    )
    async def get_job(job_id: str) -> JSONResponse:
        """A job's status, progress and result."""
        job = None
        if is_job_id(job_id):
            with _store_errors():
                job = await asyncio.to_thread(store.get, job_id)
        if job is None:
            return error_response(404, NOT_FOUND, job_id=job_id[:128])
        return JSONResponse(job_view(job, settings))

    @app.get(
        "/jobs",
        response_model=JobCounts,
        responses=_ERRORS,
        dependencies=[Depends(require_key)],
        tags=["jobs"],
    )
    async def count_jobs() -> JSONResponse:
        """How many jobs the node holds, waits for and runs."""
        with _store_errors():
            counts = await asyncio.to_thread(store.counts)
        pending = counts.get(JobState.QUEUED.value, 0) + counts.get(JobState.RETRY_WAIT.value, 0)
        return JSONResponse(
            {
                "total": sum(counts.values()),
                "pending": pending,
                "active": counts.get(JobState.RUNNING.value, 0),
            }
        )

    app.add_middleware(_Edge, max_body=settings.direct_api_max_body)
    app.add_middleware(
        asgi_server.HostGuard,
        allowed=asgi_server.allowed_hosts(settings, settings.direct_api_host),
        reject=lambda message: error_response(400, message),
    )
    return app


# --- serving --------------------------------------------------------------------------------


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (a clear :class:`ConfigError` if that fails)."""
    return asgi_server.bind_socket(host, port, settings_names="DIRECT_API_HOST/DIRECT_API_PORT")


async def serve(
    app: FastAPI,
    settings: Settings,
    *,
    stop: asyncio.Event,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` on DIRECT_API_HOST:DIRECT_API_PORT (or ``sock``) until ``stop`` is set."""
    if sock is None:
        sock = bind_socket(settings.direct_api_host, settings.direct_api_port)
    host, port = sock.getsockname()[:2]
    log.info("Direct API listening on %s:%s (OpenAPI at /openapi.json)", host, port)
    limits = asgi_server.HttpLimits.from_settings(settings)
    await asgi_server.serve_app(app, sock, stop=stop, name="Direct API", limits=limits)


__all__ = [
    "ApiError",
    "bind_socket",
    "create_app",
    "error_body",
    "job_view",
    "serve",
]
