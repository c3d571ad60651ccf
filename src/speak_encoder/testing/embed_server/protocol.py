"""What the real embed server says and counts: its limits and timings, its error bodies, the
shape of a route handler's answer (:class:`Outcome`) and how a JSON value becomes a record key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

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
#: Seconds the dispatcher waits for an encoder's answer (a guess, see the package docstring).
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
class Outcome:
    """What a route's handler answers: status and body, and what the call log keeps of it."""

    status: int
    body: Any
    did: str | None = None
    payload: dict[str, Any] | None = None


#: What a JWS route's handler returns: the answer body (200), or (status, body).
Answer = dict[str, Any] | tuple[int, Any]
#: A field absent from a request (``undefined``), as opposed to one that is ``null``.
MISSING: Final = object()


def record_key(value: Any) -> str:
    """A record key from a JSON value (a non-string matches no document)."""
    return value if isinstance(value, str) else "\x00not-a-key"


__all__ = [
    "BAD_JWS",
    "CALLBACK_TOKEN_BYTES",
    "COMMUNITY_NAME_CHARS",
    "DEFAULT_WEBHOOK_KEY",
    "DISPATCH_BATCH",
    "DISPATCH_INTERVAL_S",
    "DISPATCH_MAX_ATTEMPTS",
    "DISPATCH_TIMEOUT_S",
    "EXPRESS_METHODS",
    "GATEWAY_ROUTES",
    "HEADERS_OF_INTEREST",
    "HOLD_POLL_S",
    "IPFS_GATEWAY",
    "JOB_NOT_FOUND",
    "MAX_ENCODE_ATTEMPTS",
    "MISSING",
    "NOT_REGISTERED",
    "REFUSED",
    "SERVER_ERROR",
    "STALL_AFTER_S",
    "STALL_GIVE_UP_ATTEMPTS",
    "STALL_RESET_ERROR",
    "TIERS",
    "UNAUTHORIZED",
    "WAIT_RECHECK_S",
    "Answer",
    "Outcome",
    "record_key",
]
