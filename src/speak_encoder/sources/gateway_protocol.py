"""What both 3Speak gateways share on the wire (docs/protocols.md §2, §3): HTTP, JWS-POSTs, answers.

Why this module is long: it is what both gateway pollers share on the wire (HTTP, answers, the
poller loop, small helpers), already taken out of them so that neither duplicates it; split
further, each poller would import one protocol from several places.

* :class:`GatewayHttp` sends ``GET /api/v0/gateway/<route>`` and JWS-POSTs (``{"jws": <general
  JWS>}``, signed by :meth:`~speak_encoder.node.identity.NodeIdentity.sign_jws`) with
  ``User-Agent: speak-encoder/<version>``. It never raises for an HTTP status: every answer comes
  back as a :class:`GatewayAnswer` (status, parsed JSON or ``None``, a short text), and only the
  transport failures (connection refused, timeouts, TLS) become :class:`GatewayError`.
* Callers turn answers into decisions with :func:`raise_for_answer` (the error tree below),
  :func:`is_race_answer` (someone else got the job: skip silently), :func:`is_done_answer` (a
  5xx that means "already finished") and :func:`is_not_ours_answer`.
* :class:`PollRounds` gives a poller's waits (:class:`~speak_encoder.backoff.Backoff`):
  gateway errors are retried with exponential back-off and jitter, never a crash.

Errors (:class:`~speak_encoder.errors.UpstreamError`; the tree is drawn in
:mod:`speak_encoder.errors`)::

    GatewayError              a gateway did not answer, answered 5xx/429 or something unreadable
    ├── GatewayAuthRejected   401/403: the gateway refused our signature (check ENCODER_PRIVATE_KEY)
    └── GatewayRejected       another 4xx: will not succeed as it is (``retryable`` is False)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import httpx

from speak_encoder import USER_AGENT, __version__
from speak_encoder.backoff import DEFAULT_JITTER, Backoff, jittered
from speak_encoder.errors import (  # noqa: F401 (re-exported)
    GatewayAuthRejected,
    GatewayError,
    GatewayNodeRefused,
    GatewayNotRegistered,
    GatewayRejected,
    UpstreamError,
)
from speak_encoder.http_errors import (
    TIMEOUTS,
    StatusClass,
    failure_of,
    retryable_status,
    status_class,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from speak_encoder.config import Settings
    from speak_encoder.node.identity import NodeIdentity
    from speak_encoder.node.scheduler import Scheduler
    from speak_encoder.node.store import JobStore

#: Every route of both gateways lives under this path.
ROUTE_PREFIX: Final = "/api/v0/gateway/"
#: Words of an ``acceptJob`` answer meaning "someone else got it" (§2).
RACE_WORDS: Final = ("already", "accepted", "not assigned", "invalid state")
#: Words of a ``finishJob`` 5xx meaning "already done": a success (§2).
DONE_WORDS: Final = ("already", "completed", "duplicate")
#: Words of a ``pingJob``/``finishJob`` 4xx meaning "this job is not yours (any more)" (a guess:
#: the real gateway's wording is not documented; ownership is always confirmed by ``jobstatus``).
NOT_OURS_WORDS: Final = ("not assigned", "another", "not your", "not owned", "reassigned")
#: Characters of a non-JSON body kept for messages (never a whole HTML page in a log).
TEXT_KEPT: Final = 200
#: Spread of the jitter applied to every wait (± 20 %).
JITTER: Final = DEFAULT_JITTER
#: The hint every log line about a refused signature carries.
KEY_HINT: Final = "check ENCODER_PRIVATE_KEY"
#: Words of a 404 meaning "this gateway does not know the node" / a 403 meaning "disabled or
#: banned" (the embed server's own answers).
NOT_REGISTERED_WORDS: Final = ("not registered",)
REFUSED_WORDS: Final = ("disabled", "banned")
#: Seconds a poller waits before asking again a gateway that disabled or banned the node.
NODE_REFUSED_WAIT_S: Final = 1800.0
#: The state the dashboard shows for such a node.
STATE_REFUSED: Final = "refused: disabled or banned"


@dataclass(frozen=True, slots=True)
class GatewayAnswer:
    """One HTTP answer of a gateway. ``data`` is the parsed JSON body (``None`` if not JSON)."""

    route: str
    status: int
    data: Any
    text: str  # the body's first TEXT_KEPT characters (or "an HTML page")

    @property
    def ok(self) -> bool:
        """2xx, and not a JSON ``{"success": false}``."""
        if not 200 <= self.status < 300:
            return False
        return not (isinstance(self.data, dict) and self.data.get("success") is False)

    @property
    def obj(self) -> dict[str, Any] | None:
        return self.data if isinstance(self.data, dict) else None

    @property
    def message(self) -> str:
        """The gateway's own words: ``message`` or ``error`` of a JSON body, else the text."""
        if isinstance(self.data, dict):
            for key in ("message", "error", "detail"):
                value = self.data.get(key)
                if isinstance(value, str) and value:
                    return value[:TEXT_KEPT]
                if isinstance(value, dict) and isinstance(value.get("message"), str):
                    return str(value["message"])[:TEXT_KEPT]
        return self.text

    def describe(self) -> str:
        """``HTTP 500: <message>`` for logs and errors."""
        message = self.message
        return f"HTTP {self.status}" + (f": {message}" if message else "")


def _body_text(response: httpx.Response) -> str:
    text = response.text.strip()
    head = text[:64].lower()
    if head.startswith(("<!doctype", "<html", "<?xml", "<head", "<body")):
        return "an HTML page (a proxy or error page)"
    return " ".join(text[:TEXT_KEPT].split())


def _answer(route: str, response: httpx.Response) -> GatewayAnswer:
    data: Any = None
    if response.content:
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            data = None
    return GatewayAnswer(route, response.status_code, data, _body_text(response))


class GatewayHttp:
    """HTTP to one gateway: GETs and JWS-POSTs under ``/api/v0/gateway/``.

    The ``httpx.AsyncClient`` is created on first use and re-created after :meth:`aclose`, so a
    late call (e.g. ``rejectJob`` during shutdown) still works.
    """

    def __init__(
        self,
        base_url: str,
        identity: NodeIdentity,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.identity = identity
        self.timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def url(self, route: str) -> str:
        return f"{self.base_url}{ROUTE_PREFIX}{route}"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                transport=self._transport,
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _send(self, method: str, route: str, body: dict[str, Any] | None) -> GatewayAnswer:
        try:
            if body is None:
                response = await self._http().request(method, self.url(route))
            else:
                response = await self._http().request(method, self.url(route), json=body)
        except httpx.HTTPError as exc:
            if failure_of(exc) in TIMEOUTS:
                raise GatewayError(
                    f"{route}: the gateway did not answer within {self.timeout:g} s"
                ) from None
            reason = str(exc) or type(exc).__name__
            raise GatewayError(f"{route}: cannot reach the gateway ({reason})") from None
        return _answer(route, response)

    async def get(self, route: str) -> GatewayAnswer:
        return await self._send("GET", route, None)

    async def post_jws(self, route: str, payload: dict[str, Any]) -> GatewayAnswer:
        """POST ``{"jws": sign(payload)}``."""
        return await self._send("POST", route, {"jws": self.identity.sign_jws(payload)})


# --- reading answers ----------------------------------------------------------------------


def is_race_answer(answer: GatewayAnswer) -> bool:
    """400/409, or a refusal whose message says ``already``/``accepted``/``not assigned``/
    ``invalid state``: another node got the job (§2). Never true for a success."""
    if answer.ok:
        return False
    if answer.status in (400, 409):
        return True
    if answer.status in (401, 403) or (answer.status >= 500 and not answer.obj):
        return False
    lowered = answer.message.lower()
    return any(word in lowered for word in RACE_WORDS)


def is_done_answer(answer: GatewayAnswer) -> bool:
    """A 5xx of ``finishJob`` whose message says ``already``/``completed``/``duplicate``."""
    if answer.status < 500:
        return False
    lowered = answer.message.lower()
    return any(word in lowered for word in DONE_WORDS)


def is_not_ours_answer(answer: GatewayAnswer) -> bool:
    """A refusal saying the job is not (or no longer) assigned to this node."""
    if answer.ok or answer.status in (401, 403, 429) or answer.status >= 500:
        return False
    lowered = answer.message.lower()
    return answer.status in (400, 404, 409, 410) or any(w in lowered for w in NOT_OURS_WORDS)


def is_not_registered_answer(answer: GatewayAnswer) -> bool:
    """A 404 saying the gateway does not know this node ("Encoder not registered")."""
    lowered = answer.message.lower()
    return answer.status == 404 and any(word in lowered for word in NOT_REGISTERED_WORDS)


def raise_for_answer(answer: GatewayAnswer) -> None:
    """Raise the error a non-2xx (or ``success: false``) answer stands for."""
    if answer.ok:
        return
    what = f"{answer.route}: {answer.describe()}"
    lowered = answer.message.lower()
    if answer.status == 403 and any(word in lowered for word in REFUSED_WORDS):
        raise GatewayNodeRefused(
            f"{what} — the gateway's operators disabled or banned this node", status=403
        )
    if is_not_registered_answer(answer):
        raise GatewayNotRegistered(
            f"{what} — the gateway no longer knows this node: registering again", status=404
        )
    kind = status_class(answer.status)
    if kind is StatusClass.AUTH:
        raise GatewayAuthRejected(
            f"{what} — the gateway refused this node's signature ({KEY_HINT})",
            status=answer.status,
        )
    if retryable_status(answer.status) or kind is StatusClass.SUCCESS:
        raise GatewayError(what, status=answer.status)
    raise GatewayRejected(what, status=answer.status)


def json_object(answer: GatewayAnswer) -> dict[str, Any]:
    """The answer's JSON object, or :class:`GatewayError` (broken JSON, an HTML page …)."""
    raise_for_answer(answer)
    if answer.obj is None:
        shown = answer.text or "an empty body"
        raise GatewayError(
            f"{answer.route}: the gateway answered {shown!r} instead of a JSON object",
            status=answer.status,
        )
    return answer.obj


# --- waits --------------------------------------------------------------------------------


#: Longest wait between two poll rounds after repeated errors (seconds).
BACKOFF_MAX_S: Final = 600.0


class PollRounds:
    """How a gateway poller's rounds go: the back-off after failures, when the last round
    succeeded and why the latest failed (the dashboard reads both), one log line per state."""

    def __init__(self, gateway: str, interval: float) -> None:
        self.gateway = gateway
        cap = max(interval, min(BACKOFF_MAX_S, interval * 16))
        self.backoff = Backoff(interval, cap, JITTER).counter()
        self.last_ok_at: float | None = None
        self.last_error: str | None = None
        #: A word for the dashboard when the gateway refuses the node itself (else ``None``).
        self.state: str | None = None
        self._auth_logged = False
        self._refused_logged = False

    def refused(self, exc: GatewayAuthRejected) -> float:
        """The gateway refused our signature: logged once (until a round succeeds)."""
        self.last_error = f"signature refused: {exc.message}"
        if not self._auth_logged:
            log.error("🔑 %s refused the node's signature: %s", self.gateway, exc.message)
            self._auth_logged = True
        else:
            log.debug("%s still refuses the signature (%s)", self.gateway, KEY_HINT)
        return self.backoff.next_delay()

    def node_refused(self, exc: GatewayNodeRefused) -> float:
        """The gateway disabled or banned this node: logged once, asked again after a long
        wait (``NODE_REFUSED_WAIT_S``)."""
        self.last_error, self.state = exc.message, STATE_REFUSED
        delay = max(self.backoff.next_delay(), jittered(NODE_REFUSED_WAIT_S))
        if not self._refused_logged:
            log.error(
                "⛔ %s %s: %s — asking again in %.0f min (nothing to fix on this node)",
                self.gateway, STATE_REFUSED, exc.message, delay / 60,
            )  # fmt: skip
            self._refused_logged = True
        return delay

    def failed(self, what: str, message: str) -> float:
        self.last_error = message
        delay = self.backoff.next_delay()
        log.warning("🌐 %s: %s — retrying in %.0f s", what, message, delay)
        return delay

    def succeeded(self) -> None:
        self.last_ok_at, self.last_error, self.state = time.time(), None, None
        self.backoff.reset()
        self._auth_logged = self._refused_logged = False


class Poller(Protocol):
    """What every gateway poller shows of itself (the legacy gateway's
    :class:`~speak_encoder.sources.gateway.GatewaySource`, the embed gateway's
    :class:`~speak_encoder.sources.embed.EmbedSource`): whether ``updateNode`` went through, and
    how its rounds go. The dashboard reads these and nothing else."""

    @property
    def registered(self) -> bool:
        """Whether the gateway took the node's ``updateNode``."""

    @property
    def rounds(self) -> PollRounds:
        """How its poll rounds go (last success, latest error, a refusal's word)."""


async def sleep_until(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set; ``True`` if stopped."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True


async def run_poller(
    stop: asyncio.Event,
    cycle: Callable[[], Awaitable[float]],
    *,
    companion: asyncio.Task[None] | None,
    close: Callable[[], Awaitable[None]],
) -> None:
    """The run loop both gateway pollers share: ``cycle()`` (one round, returning the wait
    before the next) until ``stop``; then wait for ``companion`` (a report deliverer that ends
    on its own or runs until cancelled); finally cancel it and ``close()`` the client."""
    try:
        while not stop.is_set():
            delay = await cycle()
            if await sleep_until(stop, delay):
                break
        if companion is not None:
            await companion
    finally:
        if companion is not None:
            companion.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await companion
        await close()


# --- small shared helpers -------------------------------------------------------------------


def iso_now() -> str:
    """UTC now as JavaScript's ``Date.toISOString()`` writes it (``2024-01-02T03:04:05.678Z``)."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


#: Seconds the IPFS peer id lookup at registration may take (then it is left out).
PEER_ID_TIMEOUT_S: Final = 5.0


async def local_peer_id(settings: Settings) -> str | None:
    """The local IPFS node's peer id for ``updateNode`` (``None`` if it does not answer in
    ``PEER_ID_TIMEOUT_S``: registration never waits on IPFS)."""
    if not settings.ipfs_api_addr.strip():
        return None
    from speak_encoder.storage.kubo import KuboClient

    try:
        async with KuboClient(
            settings.ipfs_api_addr,
            connect_timeout=PEER_ID_TIMEOUT_S,
            call_timeout=PEER_ID_TIMEOUT_S,
        ) as ipfs:
            return await asyncio.wait_for(ipfs.peer_id(), PEER_ID_TIMEOUT_S)
    except Exception as exc:  # any failure: registered without a peer id
        log.debug("no IPFS peer id for updateNode: %r", exc)
        return None


async def free_capacity(scheduler: Scheduler, store: JobStore) -> int:
    """Jobs this node may still take: free scheduler slots minus jobs already waiting.

    Zero while the scheduler is not accepting (shutdown, memory or disk pause), so a gateway
    poller never holds more jobs than it can start.
    """
    if not scheduler.accepting:
        return 0
    slots = scheduler.free_slots
    counts = await asyncio.to_thread(store.counts)
    waiting = counts.get("queued", 0) + counts.get("retry_wait", 0)
    return max(0, slots - waiting)


__all__ = [
    "DONE_WORDS",
    "KEY_HINT",
    "RACE_WORDS",
    "ROUTE_PREFIX",
    "GatewayAnswer",
    "GatewayAuthRejected",
    "GatewayError",
    "GatewayHttp",
    "GatewayNodeRefused",
    "GatewayNotRegistered",
    "GatewayRejected",
    "PollRounds",
    "Poller",
    "free_capacity",
    "is_done_answer",
    "is_not_ours_answer",
    "is_not_registered_answer",
    "is_race_answer",
    "iso_now",
    "jittered",
    "json_object",
    "local_peer_id",
    "raise_for_answer",
    "run_poller",
    "sleep_until",
]


def read_update_notice(
    answer: Mapping[str, Any], *, was: bool | None, gateway: str
) -> tuple[bool, str | None]:
    """``needs_update``/``latest_version`` of a heartbeat answer, warned about once."""
    needs = bool(answer.get("needs_update"))
    latest = answer.get("latest_version")
    latest_version = str(latest) if latest else None
    if needs and was is not True:
        log.warning(
            "⬆️ the %s says this node needs an update (latest: %s, running %s)",
            gateway, latest_version or "?", __version__,
        )  # fmt: skip
    return needs, latest_version


class GatewayClient:
    """The routes both 3Speak gateways share (§2, §3): ``updateNode``, ``heartbeat``,
    ``myJob``. Raises :class:`GatewayError` (and subclasses) on failure."""

    def __init__(
        self,
        settings: Settings,
        identity: NodeIdentity,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.http = GatewayHttp(
            base_url, identity, timeout=settings.gateway_timeout, transport=transport
        )

    @property
    def base_url(self) -> str:
        return self.http.base_url

    async def aclose(self) -> None:
        await self.http.aclose()

    async def update_node(self, peer_id: str | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": self.settings.node_name,
            "cryptoAccounts": {"hive": self.settings.hive_username},
            "commit_hash": __version__,
        }
        if peer_id:
            info["peer_id"] = peer_id
        answer = await self.http.post_jws("updateNode", {"node_info": info})
        raise_for_answer(answer)
        return answer.obj or {}

    async def heartbeat(self) -> dict[str, Any]:
        answer = await self.http.post_jws(
            "heartbeat", {"timestamp": iso_now(), "version": __version__}
        )
        raise_for_answer(answer)
        return answer.obj or {}

    async def my_job(self) -> dict[str, Any] | None:
        """The job offered (pre-assigned) to this node, or ``None`` (404 / ``job: null``)."""
        answer = await self.http.post_jws("myJob", {"timestamp": iso_now()})
        if answer.status == 404:
            if is_not_registered_answer(answer):  # not "no job": the node must register
                raise_for_answer(answer)
            return None
        data = json_object(answer)
        job = data.get("job")
        return job if isinstance(job, dict) and job else None
