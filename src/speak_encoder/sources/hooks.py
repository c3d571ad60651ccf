"""What the scheduler tells a job's source while the job runs.

A source (Direct API, legacy gateway, embed gateway) registers one :class:`SourceHooks` per
:class:`~speak_encoder.node.models.SourceKind`; local jobs (`speak-encoder submit`) have none.

* :meth:`progress` is called on every heartbeat tick (about every 2 s) of each running job,
  whether or not progress moved: an implementation throttles (webhooks: ≤ 1 per 10 s unless
  ≥ 5 points) and keeps the job alive upstream (gateway: a ping ≥ every 60 s in every stage).
  It must not block: it schedules its own I/O.
* :meth:`report` runs as the job's ``report`` stage: it must be idempotent (a crash between
  the report and the checkpoint runs it again) — enqueue into the store's outbox with an
  idempotency key rather than calling out directly.
* :meth:`failed` runs once, when the job has failed for good (not on a retried attempt).
* :meth:`released` runs when the node hands a job back on shutdown.
"""

from __future__ import annotations

from typing import Any, Protocol

from speak_encoder.node.models import Job, Stage


class SourceHooks(Protocol):
    def progress(self, job: Job, stage: Stage, fraction: float) -> None: ...

    async def report(self, job: Job, result: dict[str, Any]) -> dict[str, Any]: ...

    async def failed(self, job: Job, error: str, kind: str) -> None: ...

    async def released(self, job: Job) -> None: ...
