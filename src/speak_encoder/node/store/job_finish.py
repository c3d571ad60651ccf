"""Ending runs: by their owner (``complete``, ``fail``, ``retry_later``, ``mark_cancelled``,
each only under the caller's lease, with the run's report queued in the same transaction) and by
the operator (``request_cancel``, ``retry``, ``prune``).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, select, update
from sqlalchemy.exc import IntegrityError

from speak_encoder.errors import UsageError
from speak_encoder.node.models import Job, JobState, OutboxEntry
from speak_encoder.node.store.engine import StoreBase, dumps, now_or
from speak_encoder.node.store.job_rows import NO_LEASE, RUNNING, owned, require_job
from speak_encoder.node.store.outbox import insert_row
from speak_encoder.node.store.schema import (
    FINISHED_STATES,
    OUTBOX_DELIVERED,
    OUTBOX_GIVEN_UP,
    OUTBOX_PENDING,
    checkpoints,
    jobs,
    outbox,
)

#: Jobs deleted per transaction by :meth:`JobFinish.prune`.
PRUNE_BATCH = 500


class JobFinish(StoreBase):
    """How runs end, and the operator's cancel, retry and prune."""

    def complete(
        self,
        job_id: str,
        owner: str,
        result: dict[str, Any],
        *,
        report: OutboxEntry | None = None,
    ) -> bool:
        """Running → complete, with its completion ``report`` queued in the same transaction:
        the report cannot leave before the job is complete in the store (a job offered again
        the moment its source heard of the completion is already complete here, and reopened)."""
        at = time.time()
        return self._finish_owned(
            job_id,
            owner,
            report=report,
            state=JobState.COMPLETE.value,
            result=dumps(result),
            error=None,
            error_kind=None,
            finished_at=at,
            updated_at=at,
        )

    def fail(
        self,
        job_id: str,
        owner: str,
        *,
        error: str,
        kind: str,
        count_attempt: bool = True,
        report: OutboxEntry | None = None,
    ) -> bool:
        """Running → failed for good, with its failure ``report`` queued in the same
        transaction (a crash cannot keep one without the other)."""
        at = time.time()
        return self._finish_owned(
            job_id,
            owner,
            report=report,
            state=JobState.FAILED.value,
            error=error,
            error_kind=kind,
            attempts=jobs.c.attempts + (1 if count_attempt else 0),
            finished_at=at,
            updated_at=at,
        )

    def retry_later(
        self,
        job_id: str,
        owner: str,
        *,
        error: str,
        kind: str,
        delay_s: float,
        now: float | None = None,
    ) -> bool:
        at = now_or(now)
        return self._finish_owned(
            job_id,
            owner,
            state=JobState.RETRY_WAIT.value,
            error=error,
            error_kind=kind,
            attempts=jobs.c.attempts + 1,
            next_attempt_at=at + delay_s,
            updated_at=at,
        )

    def mark_cancelled(self, job_id: str, owner: str | None) -> bool:
        """Running → cancelled (only under ``owner``'s lease; ``None`` = whoever holds it)."""
        at = time.time()
        where = (
            owned(job_id, owner)
            if owner is not None
            else and_(jobs.c.id == job_id, jobs.c.state == RUNNING)
        )
        with self._write() as conn:
            done = conn.execute(
                update(jobs)
                .where(where)
                .values(state=JobState.CANCELLED.value, finished_at=at, updated_at=at, **NO_LEASE)
            )
            return done.rowcount == 1

    def _finish_owned(
        self, job_id: str, owner: str, *, report: OutboxEntry | None = None, **values: Any
    ) -> bool:
        """End ``owner``'s run of the job with ``values``; ``report`` (if any) is queued in the
        same transaction, tagged with the job's generation."""
        with self._write() as conn:
            done = conn.execute(
                update(jobs).where(owned(job_id, owner)).values(**values, **NO_LEASE)
            )
            if done.rowcount != 1:
                return False
            if report is not None:
                generation = conn.execute(
                    select(jobs.c.generation).where(jobs.c.id == job_id)
                ).scalar_one()
                at = float(values["updated_at"])
                insert_row(
                    conn, self.dialect, report, job_id=job_id, generation=int(generation), at=at
                )
            return True

    # --- the operator's side -----------------------------------------------------------------

    def request_cancel(self, job_id: str) -> Job:
        """Queued/retry_wait → cancelled now; running → ``cancel_requested``; else unchanged."""
        at = time.time()
        with self._write() as conn:
            job = require_job(conn, job_id)
            if job.state in (JobState.QUEUED, JobState.RETRY_WAIT):
                values: dict[str, Any] = {
                    "state": JobState.CANCELLED.value,
                    "finished_at": at,
                    "next_attempt_at": None,
                }
            elif job.state is JobState.RUNNING:
                values = {"cancel_requested": True}
            else:
                return job
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(updated_at=at, **values))
            return require_job(conn, job_id)

    def retry(self, job_id: str) -> Job:
        """Failed/cancelled → queued with attempts 0 (checkpoints kept); else unchanged.

        The job's ``generation`` goes up: the new run reports its own outcome (a second
        failure report included) and sends progress again.
        :class:`UsageError` when another active job has the same dedup key.
        """
        at = time.time()
        try:
            with self._write() as conn:
                job = require_job(conn, job_id)
                if job.state not in (JobState.FAILED, JobState.CANCELLED):
                    return job
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(
                        state=JobState.QUEUED.value,
                        attempts=0,
                        generation=jobs.c.generation + 1,
                        error=None,
                        error_kind=None,
                        result=None,
                        finished_at=None,
                        next_attempt_at=None,
                        cancel_requested=False,
                        updated_at=at,
                        **NO_LEASE,
                    )
                )
                return require_job(conn, job_id)
        except IntegrityError:
            raise UsageError(
                f"job {job_id} cannot be retried: another active job has the same dedup key"
            ) from None

    def prune(self, *, older_than: float) -> int:
        """Delete finished jobs with ``finished_at < older_than`` (their checkpoints and
        delivered/given-up outbox rows too); return how many jobs were deleted. A job with a
        report still pending is kept (its deliverer reads the job's report target)."""
        deleted = 0
        waiting = exists().where(outbox.c.job_id == jobs.c.id, outbox.c.state == OUTBOX_PENDING)
        while True:
            with self._write() as conn:
                ids = list(
                    conn.execute(
                        select(jobs.c.id)
                        .where(
                            jobs.c.state.in_(FINISHED_STATES),
                            jobs.c.finished_at < older_than,
                            ~waiting,
                        )
                        .limit(PRUNE_BATCH)
                    ).scalars()
                )
                if not ids:
                    return deleted
                _delete_jobs(conn, ids)
            deleted += len(ids)


def _delete_jobs(conn: Connection, ids: list[str]) -> None:
    conn.execute(delete(checkpoints).where(checkpoints.c.job_id.in_(ids)))
    conn.execute(
        delete(outbox).where(
            outbox.c.job_id.in_(ids), outbox.c.state.in_((OUTBOX_DELIVERED, OUTBOX_GIVEN_UP))
        )
    )
    conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))


__all__ = ["PRUNE_BATCH", "JobFinish"]
