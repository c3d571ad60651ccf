"""Submitting and offering jobs: a new job, or a duplicate applied to the job that has its dedup
key (the concurrency rules: :mod:`~speak_encoder.node.store.jobs`).

A job offered again by its source (:meth:`JobOffers.offer`: a Direct API duplicate, an embed
re-claim) is never encoded twice, and is never left without a report: an active job takes
the new report target (``webhook_url``/``api_key``) for every later report; a completed job
whose report still waits in the outbox sends it to the new target; a completed job whose
report went out (or is on its way at that moment) is *reopened* (``generation`` + 1, back to
``queued`` with its checkpoints) so that it checks its output is still held and reports once
more. A job that failed for good is not a
duplicate: the offer starts a new run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from speak_encoder.errors import QueueFull
from speak_encoder.node.models import Job, JobState, NewJob, Offer, Stage, new_job_id
from speak_encoder.node.store.engine import PG_LOCK_SUBMIT, StoreBase, dumps, now_or
from speak_encoder.node.store.job_rows import NO_LEASE, job_from_row, new_job_row, require_job
from speak_encoder.node.store.outbox import has_waiting_final, retarget_rows
from speak_encoder.node.store.schema import ACTIVE_STATES, checkpoints, jobs

#: ``retry_after`` of a refused submission (seconds).
QUEUE_FULL_RETRY_AFTER_S = 60.0


class JobOffers(StoreBase):
    """Submitting and offering jobs (see the module docstring)."""

    def submit(
        self,
        job: NewJob,
        *,
        queue_max: int,
        dedup_window_s: float = 0.0,
        now: float | None = None,
    ) -> tuple[Job, bool]:
        """Enqueue ``job`` → ``(job, True)``, or ``(existing, False)`` for a duplicate.

        Raises :class:`QueueFull` (nothing stored) when ``queue_max`` jobs are active.
        """
        offer = self.offer(job, queue_max=queue_max, dedup_window_s=dedup_window_s, now=now)
        return offer.job, offer.created

    def offer(
        self,
        job: NewJob,
        *,
        queue_max: int,
        dedup_window_s: float = 0.0,
        report_target: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> Offer:
        """Enqueue ``job``, or apply it to the job that already has its dedup key.

        ``report_target`` (e.g. ``{"webhook_url": …, "api_key": …}``) is where the source
        wants this job's reports to go *now*; without it a duplicate changes nothing (see the
        module docstring for what a duplicate does with it). Raises :class:`QueueFull`
        (nothing stored) when a new or reopened job finds ``queue_max`` jobs active.
        """
        at = now_or(now)
        since = at - dedup_window_s
        try:
            with self._write() as conn:
                self._pg_lock(conn, PG_LOCK_SUBMIT)
                existing = self._duplicate(conn, job.dedup_key, since)
                if existing is None:
                    _check_room(conn, queue_max)
                    job_id = new_job_id()
                    conn.execute(insert(jobs).values(**new_job_row(job_id, job, at)))
                    return Offer(require_job(conn, job_id), "created")
                return self._reoffer(conn, existing, report_target, queue_max, at)
        except IntegrityError:
            # Another submission of the same dedup key won the race (unique partial index).
            with self._read() as conn:
                existing = self._duplicate(conn, job.dedup_key, since)
            if existing is None:
                raise
            return Offer(existing, "duplicate")

    def _reoffer(
        self,
        conn: Connection,
        existing: Job,
        target: Mapping[str, Any] | None,
        queue_max: int,
        at: float,
    ) -> Offer:
        if target is None:
            return Offer(existing, "duplicate")
        changed = any(existing.request.get(k) != v for k, v in target.items())
        values: dict[str, Any] = {}
        if changed:
            values["request"] = dumps({**existing.request, **target})
        if existing.state is JobState.COMPLETE and not has_waiting_final(conn, existing.id, at):
            _check_room(conn, queue_max)
            values.update(
                state=JobState.QUEUED.value,
                generation=jobs.c.generation + 1,
                finished_at=None,
                next_attempt_at=None,
                cancel_requested=False,
                updated_at=at,
                **NO_LEASE,
            )
            conn.execute(update(jobs).where(jobs.c.id == existing.id).values(**values))
            conn.execute(
                delete(checkpoints).where(
                    checkpoints.c.job_id == existing.id,
                    checkpoints.c.stage == Stage.REPORT.value,
                )
            )
            return Offer(require_job(conn, existing.id), "reopened")
        if not changed:
            return Offer(existing, "duplicate")
        conn.execute(update(jobs).where(jobs.c.id == existing.id).values(updated_at=at, **values))
        retarget_rows(conn, existing.id, at)
        return Offer(require_job(conn, existing.id), "retargeted")

    def _duplicate(self, conn: Connection, key: str | None, since: float) -> Job | None:
        if key is None:
            return None
        active = conn.execute(
            select(jobs).where(jobs.c.dedup_key == key, jobs.c.state.in_(ACTIVE_STATES))
        ).mappings()
        row = active.first()
        if row is None:
            recent = conn.execute(
                select(jobs)
                .where(
                    jobs.c.dedup_key == key,
                    jobs.c.state == JobState.COMPLETE.value,
                    jobs.c.finished_at >= since,
                )
                .order_by(jobs.c.finished_at.desc())
                .limit(1)
            ).mappings()
            row = recent.first()
        return None if row is None else job_from_row(row)


def _check_room(conn: Connection, queue_max: int) -> None:
    active = conn.execute(
        select(func.count()).select_from(jobs).where(jobs.c.state.in_(ACTIVE_STATES))
    ).scalar_one()
    if active >= queue_max:
        raise QueueFull(
            f"the queue is full: {active} jobs are waiting or running (QUEUE_MAX={queue_max}); "
            f"submit again in about {QUEUE_FULL_RETRY_AFTER_S:.0f} s",
            retry_after=QUEUE_FULL_RETRY_AFTER_S,
        )


__all__ = ["QUEUE_FULL_RETRY_AFTER_S", "JobOffers"]
