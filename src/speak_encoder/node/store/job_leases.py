"""The scheduler's side of a run: claiming a job under a lease, renewing it, the stage, progress
and checkpoints it records, and handing the job back to the queue (``requeue``, ``recover``).

A job whose lease expired (a dead node's) is claimable again; the writes of a run act only
under the caller's lease (the concurrency rules: :mod:`~speak_encoder.node.store.jobs`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, or_, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from speak_encoder.errors import JobNotFound
from speak_encoder.node.models import Job, JobState, Stage
from speak_encoder.node.store.engine import StoreBase, dumps, loads, now_or
from speak_encoder.node.store.job_rows import NO_LEASE, RUNNING, owned, require_job
from speak_encoder.node.store.schema import ACTIVE_STATES, checkpoints, jobs


class JobLeases(StoreBase):
    """Claims, leases, progress and checkpoints (see the module docstring)."""

    def claim(self, owner: str, *, lease_seconds: float, now: float | None = None) -> Job | None:
        """Take the next job (priority DESC, created_at ASC) under a lease, or ``None``.

        Candidates: queued; retry_wait that is due; running whose lease expired (a dead node's
        job). A dead node's job whose cancel was requested is cancelled here instead.
        """
        at = now_or(now)
        with self._write() as conn:
            _cancel_abandoned(conn, at)
            found = conn.execute(
                select(jobs.c.id, jobs.c.state)
                .where(_claimable(at))
                .order_by(jobs.c.priority.desc(), jobs.c.created_at.asc())
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if found is None:
                return None
            job_id, state = found
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    # a dead node's job: its node stopped under it
                    interruptions=jobs.c.interruptions + (1 if state == RUNNING else 0),
                    state=RUNNING,
                    lease_owner=owner,
                    lease_expires_at=at + lease_seconds,
                    started_at=func.coalesce(jobs.c.started_at, at),
                    next_attempt_at=None,
                    updated_at=at,
                )
            )
            return require_job(conn, job_id)

    def renew_lease(
        self,
        job_id: str,
        owner: str,
        *,
        lease_seconds: float,
        now: float | None = None,
    ) -> bool:
        """Extend the lease; ``False`` when the job is no longer ours or a cancel was asked."""
        at = now_or(now)
        with self._write() as conn:
            done = conn.execute(
                update(jobs)
                .where(owned(job_id, owner), jobs.c.cancel_requested.is_(False))
                .values(lease_expires_at=at + lease_seconds, updated_at=at)
            )
            return done.rowcount == 1

    def set_stage(self, job_id: str, owner: str, stage: Stage) -> None:
        with self._write() as conn:
            conn.execute(
                update(jobs)
                .where(owned(job_id, owner))
                .values(stage=Stage(stage).value, updated_at=time.time())
            )

    def set_progress(self, job_id: str, owner: str, stage: Stage, fraction: float) -> None:
        """Merge ``{stage: fraction}`` into the job's progress (owner only)."""
        with self._write() as conn:
            text = conn.execute(
                select(jobs.c.progress).where(owned(job_id, owner)).with_for_update()
            ).scalar()
            if text is None:
                return
            progress = dict(loads(text))
            progress[Stage(stage).value] = float(fraction)
            conn.execute(
                update(jobs)
                .where(owned(job_id, owner))
                .values(progress=dumps(progress), updated_at=time.time())
            )

    def save_checkpoint(
        self, job_id: str, stage: Stage, data: dict[str, Any], *, node: str
    ) -> None:
        """Record (or replace) what ``stage`` left behind. :class:`JobNotFound` if no job."""
        values = {
            "job_id": job_id,
            "stage": Stage(stage).value,
            "data": dumps(data),
            "node": node,
            "created_at": time.time(),
        }
        try:
            with self._write() as conn:
                if conn.execute(select(jobs.c.id).where(jobs.c.id == job_id)).first() is None:
                    raise JobNotFound(f"no job {job_id!r} in the job store")
                conn.execute(self._upsert_checkpoint(values))
        except IntegrityError:
            raise JobNotFound(f"no job {job_id!r} in the job store") from None

    def _upsert_checkpoint(self, values: dict[str, Any]) -> Any:
        changed = ("data", "node", "created_at")
        keys = [checkpoints.c.job_id, checkpoints.c.stage]
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql as pg  # only a fleet needs it

            pg_stmt = pg.insert(checkpoints).values(**values)
            return pg_stmt.on_conflict_do_update(
                index_elements=keys, set_={c: pg_stmt.excluded[c] for c in changed}
            )
        lite_stmt = sqlite.insert(checkpoints).values(**values)
        return lite_stmt.on_conflict_do_update(
            index_elements=keys, set_={c: lite_stmt.excluded[c] for c in changed}
        )

    def clear_checkpoints(self, job_id: str, stages: Iterable[Stage] | None = None) -> None:
        query = delete(checkpoints).where(checkpoints.c.job_id == job_id)
        if stages is not None:
            query = query.where(checkpoints.c.stage.in_([Stage(s).value for s in stages]))
        with self._write() as conn:
            conn.execute(query)

    def requeue(self, job_id: str, owner: str) -> bool:
        """Give a running job back to the queue (shutdown): attempts and checkpoints kept.

        A job whose cancel was requested meanwhile becomes ``cancelled`` instead.
        """
        at = time.time()
        with self._write() as conn:
            done = conn.execute(
                update(jobs).where(owned(job_id, owner)).values(**_back_to_queue(at), **NO_LEASE)
            )
            return done.rowcount == 1

    def recover(self, owner: str) -> list[str]:
        """At start: this node's ``running`` jobs go back to the queue; return their ids.

        (Jobs whose cancel was requested are cancelled instead and not returned.)
        """
        at = time.time()
        mine = and_(jobs.c.state == RUNNING, jobs.c.lease_owner == owner)
        with self._write() as conn:
            ids = conn.execute(
                select(jobs.c.id).where(mine, jobs.c.cancel_requested.is_(False))
            ).scalars()
            requeued = sorted(ids)
            conn.execute(
                update(jobs)
                .where(mine)
                .values(**_back_to_queue(at), **NO_LEASE, interruptions=jobs.c.interruptions + 1)
            )
        return requeued


def _claimable(at: float) -> ColumnElement[bool]:
    return and_(
        jobs.c.state.in_(ACTIVE_STATES),
        or_(
            jobs.c.state == JobState.QUEUED.value,
            and_(jobs.c.state == JobState.RETRY_WAIT.value, jobs.c.next_attempt_at <= at),
            and_(
                jobs.c.state == RUNNING,
                jobs.c.lease_expires_at < at,
                jobs.c.cancel_requested.is_(False),
            ),
        ),
    )


def _back_to_queue(at: float) -> dict[str, Any]:
    """Values that return a job to the queue, or cancel it if a cancel was requested."""
    cancelled = jobs.c.cancel_requested.is_(True)
    return {
        "state": case((cancelled, JobState.CANCELLED.value), else_=JobState.QUEUED.value),
        "finished_at": case((cancelled, at), else_=None),
        "next_attempt_at": None,
        "updated_at": at,
    }


def _cancel_abandoned(conn: Connection, at: float) -> None:
    conn.execute(
        update(jobs)
        .where(
            jobs.c.state == RUNNING,
            jobs.c.cancel_requested.is_(True),
            jobs.c.lease_expires_at < at,
        )
        .values(state=JobState.CANCELLED.value, finished_at=at, updated_at=at, **NO_LEASE)
    )


__all__ = ["JobLeases"]
