"""The job model: states, stages and the records the job store keeps (pure data).

State machine::

    queued ──claim──► running ──ok──► complete
      ▲                  │ ├──permanent error / attempts exhausted──► failed
      │                  │ ├──retryable error──► retry_wait ──(due)──► running …
      │                  │ └──operator cancel──► cancelled
      └──shutdown / lease lost / crash recovery (checkpoints kept)

``attempts`` counts failed attempts (each failure once); a job fails for good when it reaches
``MAX_ATTEMPTS``.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass, field
from typing import Any


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """Still to be worked on (counts against QUEUE_MAX; its work folder is kept)."""
        return self in (JobState.QUEUED, JobState.RUNNING, JobState.RETRY_WAIT)

    @property
    def finished(self) -> bool:
        return not self.active


class Stage(enum.StrEnum):
    FETCH = "fetch"
    PROBE = "probe"
    PLAN = "plan"
    ENCODE = "encode"
    VERIFY = "verify"
    PUBLISH = "publish"
    REPORT = "report"


#: The stages in the order a job runs them.
STAGES: tuple[Stage, ...] = tuple(Stage)


class SourceKind(enum.StrEnum):
    """Where a job came from (the job-sources issue adds the remote ones)."""

    LOCAL = "local"  # `speak-encoder submit`
    DIRECT = "direct"  # Direct API
    GATEWAY = "gateway"  # legacy 3Speak gateway
    EMBED = "embed"  # embed gateway


_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def new_job_id() -> str:
    """A locally generated id (never built from outside input: it names a work folder)."""
    return uuid.uuid4().hex


def is_job_id(text: str) -> bool:
    return bool(_JOB_ID.match(text))


@dataclass(frozen=True, slots=True)
class NewJob:
    """What a job source submits."""

    source: str  # SOURCE as `speak-encoder encode` takes it
    kind: SourceKind = SourceKind.LOCAL
    short: bool = False
    rungs: tuple[str, ...] | None = None  # None = the full ladder
    priority: int = 0  # higher first
    request: dict[str, Any] = field(default_factory=dict)  # the source's own request, as data
    external_id: str | None = None  # e.g. the gateway's job id
    dedup_key: str | None = None  # e.g. "owner/permlink/input_cid"
    size_hint: int | None = None  # announced source size in bytes, when known


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    kind: SourceKind
    source: str
    short: bool
    rungs: tuple[str, ...] | None
    priority: int
    request: dict[str, Any]
    external_id: str | None
    dedup_key: str | None
    size_hint: int | None
    state: JobState
    stage: Stage | None
    attempts: int
    progress: dict[str, float]  # stage → 0..1
    error: str | None
    error_kind: str | None
    result: dict[str, Any] | None
    created_at: float  # epoch seconds, UTC
    updated_at: float
    started_at: float | None
    finished_at: float | None
    next_attempt_at: float | None
    lease_owner: str | None
    lease_expires_at: float | None
    cancel_requested: bool
    #: Times the node died while running it (crash recovery, expired lease): not attempts.
    interruptions: int = 0
    #: Times a completed job was offered again and reopened to report once more.
    generation: int = 0

    def to_json(self) -> dict[str, Any]:
        """The public view (`jobs show --json`, the dashboard): no local paths."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "source": self.source,
            "short": self.short,
            "rungs": list(self.rungs) if self.rungs else None,
            "priority": self.priority,
            "external_id": self.external_id,
            "state": self.state.value,
            "stage": self.stage.value if self.stage else None,
            "attempts": self.attempts,
            "progress": self.progress,
            "error": self.error,
            "error_kind": self.error_kind,
            "result": self.result,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "next_attempt_at": self.next_attempt_at,
            "node": self.lease_owner,
            "cancel_requested": self.cancel_requested,
            "interruptions": self.interruptions,
            "generation": self.generation,
        }


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a finished stage left behind: enough to resume at the next stage."""

    job_id: str
    stage: Stage
    data: dict[str, Any]
    node: str  # the node that wrote it (local files are only valid there)
    created_at: float


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A report (webhook, gateway call) to deliver at least once, surviving restarts."""

    id: int
    job_id: str | None
    kind: str  # e.g. "webhook", "gateway.finishJob"
    target: str  # URL
    payload: dict[str, Any]
    headers: dict[str, str]
    idempotency_key: str
    attempts: int
    next_attempt_at: float
    state: str  # pending | delivered | given_up
    last_error: str | None
    created_at: float
    #: Bumped whenever the job's report target changes (see ``JobStore.offer``).
    revision: int = 0
    #: A progress report: best effort, sent once, never retried.
    progress: bool = False
    #: The node delivering it now (a claim under a lease), if any.
    claimed_by: str | None = None
    #: The job's request as it is *now* (claims join it): where a webhook goes and with which
    #: key; ``None`` for an item without a job (or whose job was pruned).
    request: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A report to queue: what :class:`OutboxItem` becomes once stored."""

    kind: str
    target: str
    payload: dict[str, Any]
    headers: dict[str, str]
    idempotency_key: str
    progress: bool = False


@dataclass(frozen=True, slots=True)
class Offer:
    """What :meth:`JobStore.offer` did with a job offered by a source.

    ``outcome``: ``created`` (a new job), ``duplicate`` (an active job already has it; its
    report target unchanged), ``retargeted`` (an active job, or a finished job's report still
    waiting in the outbox, now reports to the new target), ``reopened`` (a completed job was
    offered again: it reports once more, to the new target, after checking its output is
    still held).
    """

    job: Job
    outcome: str

    @property
    def created(self) -> bool:
        return self.outcome == "created"


__all__ = [
    "STAGES",
    "Checkpoint",
    "Job",
    "JobState",
    "NewJob",
    "Offer",
    "OutboxEntry",
    "OutboxItem",
    "SourceKind",
    "Stage",
    "is_job_id",
    "new_job_id",
]
