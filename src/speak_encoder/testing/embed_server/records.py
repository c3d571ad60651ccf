"""The records of the reference embed server (:mod:`speak_encoder.testing.embed_server`).

One dataclass per MongoDB collection the real server keeps (``embed-video``, ``embed-jobs``,
``embed-encoders``), one Python attribute per real field (its camelCase name in the comments),
plus what the model reports: :class:`EmbedCall` (one request in or out), :class:`DispatchResult`,
:class:`StallOutcome` and :class:`EmbedAdminError`. Snapshots handed to tests are copies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from speak_encoder.testing.express import iso

JobStatus = Literal["pending", "encoding", "completed", "failed"]


@dataclass(slots=True)
class Video:
    """A video document (``embed-video``), keyed by ``permlink``."""

    owner: str
    permlink: str
    input_cid: str | None
    status: str = "processing"
    manifest_cid: Any = None
    encoding_progress: Any = 0
    short: bool = False
    frontend_app: str | None = None
    original_filename: str | None = None
    size: int | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def document(self) -> dict[str, Any]:
        """The document as ``GET /video/<permlink>`` answers it (real field names)."""
        return {
            "owner": self.owner,
            "permlink": self.permlink,
            "frontend_app": self.frontend_app,
            "status": self.status,
            "input_cid": self.input_cid,
            "manifest_cid": self.manifest_cid,
            "short": self.short,
            "size": self.size,
            "encodingProgress": self.encoding_progress,
            "originalFilename": self.original_filename,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }


@dataclass(slots=True)
class EmbedJob:
    """An encoding job (``embed-jobs``), keyed by ``(owner, permlink)``."""

    owner: str
    permlink: str
    status: JobStatus = "pending"
    attempt_count: int = 0
    assigned_worker: str | None = None
    encoder_job_id: Any = None
    assigned_at: float | None = None
    callback_token: str | None = None
    encoding_progress: Any = None
    encoding_stage: Any = None
    last_error: Any = None
    webhook_received_at: float | None = None
    premium: bool = False
    short: bool = False
    file_size: int | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    seq: int = 0  # insertion order (ties on created_at)


@dataclass(slots=True)
class Encoder:
    """An encoder (``embed-encoders``): managed (pushed to) or community (polls ``myJob``)."""

    name: str
    url: str = ""
    api_key: str = ""
    enabled: bool = True
    access: Literal["managed", "community"] = "managed"
    tier: str = "standard"
    max_file_size: int | None = None
    banned: bool = False
    did: str | None = None
    display_name: Any = None
    hive_account: Any = None
    peer_id: Any = None
    commit_hash: Any = None
    last_seen_at: float | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class EmbedCall:
    """One request the server answered (``direction="in"``) or its dispatcher sent (``"out"``)."""

    route: str  # "webhook", "webhook/progress", "updateNode", "myJob", "heartbeat", "encode", …
    method: str
    path: str  # the request path (in) or the URL (out)
    direction: Literal["in", "out"]
    headers: dict[str, str]  # HEADERS_OF_INTEREST present (lower-case names)
    body: Any  # the parsed JSON body (None: none or not JSON)
    status: int  # the answer's status (0: no answer, out only)
    answer: Any  # the parsed JSON answer, or its text
    received_at: float  # time.monotonic(): arrived (in) / sent (out)
    answered_at: float  # time.monotonic(): answered (in) / answer received (out)
    at: float  # time.time() at received_at
    did: str | None = None  # the verified signer of a JWS-POST
    payload: dict[str, Any] | None = None  # its verified payload
    fault: str | None = None  # the fault that answered instead (fail_next)
    error: str | None = None  # out: the dispatch error

    @property
    def api_key(self) -> str | None:
        return self.headers.get("x-api-key")


@dataclass(frozen=True, slots=True)
class DispatchResult:
    """What one dispatch of one job did (:meth:`EmbedServer.dispatch_once`)."""

    owner: str
    permlink: str
    encoder: str | None  # the encoder POSTed to (None: none was suitable)
    ok: bool
    encoder_job_id: Any = None
    error: str | None = None
    job_status: str = "encoding"  # the job's status afterwards


@dataclass(frozen=True, slots=True)
class StallOutcome:
    """What the stall check did to one job: ``reset`` to pending, or ``failed`` for good."""

    owner: str
    permlink: str
    outcome: Literal["reset", "failed"]


class EmbedAdminError(Exception):
    """An admin action refused as the real route refuses it (``status``, ``error``)."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error


__all__ = [
    "DispatchResult",
    "EmbedAdminError",
    "EmbedCall",
    "EmbedJob",
    "Encoder",
    "JobStatus",
    "StallOutcome",
    "Video",
]
