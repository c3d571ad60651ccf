"""What the scheduler tells a job's source while the job runs (the node's side of a source).

A source (Direct API, legacy gateway, embed gateway) registers one :class:`SourceHooks` per
:class:`~speak_encoder.node.models.SourceKind`; local jobs (`speak-encoder submit`) have none.
The protocol lives in the node layer because the node calls it; sources implement it.

* :meth:`progress` is called on every heartbeat tick (about every 2 s) of each running job,
  whether or not progress moved: an implementation throttles (webhooks: ≤ 1 per 10 s unless
  ≥ 5 points) and keeps the job alive upstream (gateway: a ping ≥ every 60 s in every stage).
  It must not block: it schedules its own I/O.
* :meth:`completion_report` (the job's ``report`` stage) builds, without sending anything, the
  report of a job that is done; the scheduler stores it in the same transaction as the
  completion, so the report never leaves before the job is complete in the store, and a crash
  keeps both or neither. ``None``: nothing to report.
* :meth:`completed` runs once, after the completion and its report were stored.
* :meth:`failure_report` builds (without sending anything) the report of a job that failed for
  good, from the typed error (its message, ``kind`` and ``retryable`` as
  :mod:`speak_encoder.errors` defines them); the scheduler stores it in the same transaction
  as the failure itself, so a crash can never keep one without the other. ``None``: nothing
  to report.
* :meth:`failed` runs once, after the failure and its report were stored (wake a deliverer,
  forget per-job state).
* :meth:`released` runs when the node hands a job back on shutdown.
"""

from __future__ import annotations

from typing import Any, Protocol

from speak_encoder.errors import SpeakEncoderError
from speak_encoder.node.models import Job, OutboxEntry, Stage


class SourceHooks(Protocol):
    def progress(self, job: Job, stage: Stage, fraction: float) -> None: ...

    def completion_report(self, job: Job, result: dict[str, Any]) -> OutboxEntry | None: ...

    async def completed(self, job: Job, result: dict[str, Any]) -> None: ...

    def failure_report(self, job: Job, error: SpeakEncoderError) -> OutboxEntry | None: ...

    async def failed(self, job: Job, error: SpeakEncoderError) -> None: ...

    async def released(self, job: Job) -> None: ...


def report_key(job: Job, event: str) -> str:
    """The outbox idempotency key of ``job``'s ``event`` report in its current generation
    (``<job_id>:<event>``, then ``<job_id>:<event>:<generation>`` once reopened or retried)."""
    base = f"{job.id}:{event}"
    return base if job.generation == 0 else f"{base}:{job.generation}"


__all__ = ["SourceHooks", "report_key"]
