"""Jobs and their checkpoints: submitting and offering, claiming under a lease, finishing.

Concurrency, in one paragraph: on PostgreSQL a claim is ``SELECT … FOR UPDATE SKIP LOCKED``
(several nodes share one queue), submissions take a transaction-level advisory lock (the
dedup check and the ``QUEUE_MAX`` count are exact), and migrations take another. On SQLite every
write transaction is ``BEGIN IMMEDIATE`` (the database's write lock is taken up front, so the
read-then-write of a claim or a submit cannot interleave), reads are plain deferred ``BEGIN``,
the journal is WAL and a busy connection waits ``busy_timeout``. In both, a partial unique
index allows at most one *active* job per dedup key whatever happens.

Every ownership-changing call (``complete``, ``fail``, ``retry_later``, ``requeue``,
``mark_cancelled``) acts only on a job that is ``running`` under the caller's lease and
returns ``False`` (changing nothing) otherwise, so a node that lost its lease cannot overwrite
the work of the node that took the job over.

A job offered again by its source (:meth:`JobQueries.offer`: a Direct API duplicate, an embed
re-claim) is never encoded twice, and is never left without a report: an active job takes
the new report target (``webhook_url``/``api_key``) for every later report; a completed job
whose report still waits in the outbox sends it to the new target; a completed job whose
report went out (or is on its way at that moment) is *reopened* (``generation`` + 1, back to
``queued`` with its checkpoints) so that it checks its output is still held and reports once
more. A job that failed for good is not a
duplicate: the offer starts a new run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from speak_encoder.errors import JobNotFound, QueueFull, UsageError
from speak_encoder.node.models import (
    Checkpoint,
    Job,
    JobState,
    NewJob,
    Offer,
    OutboxEntry,
    SourceKind,
    Stage,
    new_job_id,
)
from speak_encoder.node.store.engine import PG_LOCK_SUBMIT, StoreBase, dumps, loads, now_or
from speak_encoder.node.store.outbox import has_waiting_final, insert_row, retarget_rows
from speak_encoder.node.store.schema import (
    ACTIVE_STATES,
    FINISHED_STATES,
    OUTBOX_DELIVERED,
    OUTBOX_GIVEN_UP,
    OUTBOX_PENDING,
    checkpoints,
    jobs,
    outbox,
)

#: ``retry_after`` of a refused submission (seconds).
QUEUE_FULL_RETRY_AFTER_S = 60.0
#: Jobs deleted per transaction by :meth:`JobQueries.prune`.
PRUNE_BATCH = 500

_RUNNING = JobState.RUNNING.value
_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


class JobQueries(StoreBase):
    """Jobs and checkpoints (see the module docstring)."""

    # --- submitting and reading --------------------------------------------------------------

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
                    conn.execute(insert(jobs).values(**_new_row(job_id, job, at)))
                    return Offer(_require_row(conn, job_id), "created")
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
                **_NO_LEASE,
            )
            conn.execute(update(jobs).where(jobs.c.id == existing.id).values(**values))
            conn.execute(
                delete(checkpoints).where(
                    checkpoints.c.job_id == existing.id,
                    checkpoints.c.stage == Stage.REPORT.value,
                )
            )
            return Offer(_require_row(conn, existing.id), "reopened")
        if not changed:
            return Offer(existing, "duplicate")
        conn.execute(update(jobs).where(jobs.c.id == existing.id).values(updated_at=at, **values))
        retarget_rows(conn, existing.id, at)
        return Offer(_require_row(conn, existing.id), "retargeted")

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
        return None if row is None else _job(row)

    def get(self, job_id: str) -> Job | None:
        with self._read() as conn:
            return _get(conn, job_id)

    def require(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r} in the job store")
        return job

    def list_jobs(
        self,
        *,
        states: Iterable[JobState] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs, newest first (optionally only in ``states``)."""
        query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        if states is not None:
            query = query.where(jobs.c.state.in_([JobState(s).value for s in states]))
        with self._read() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).mappings()
            return [_job(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Number of jobs in every state (zeros included)."""
        result = {state.value: 0 for state in JobState}
        with self._read() as conn:
            for state, n in conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)):
                result[state] = int(n)
        return result

    def counts_by_kind(self) -> dict[tuple[str, str], int]:
        """``(state, source kind) → jobs`` in one grouped query (metrics)."""
        query = select(jobs.c.state, jobs.c.kind, func.count()).group_by(jobs.c.state, jobs.c.kind)
        with self._read() as conn:
            return {(str(state), str(kind)): int(n) for state, kind, n in conn.execute(query)}

    def active_ids(self) -> set[str]:
        with self._read() as conn:
            rows = conn.execute(select(jobs.c.id).where(jobs.c.state.in_(ACTIVE_STATES)))
            return {row[0] for row in rows}

    # --- the scheduler's side ----------------------------------------------------------------

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
                    interruptions=jobs.c.interruptions + (1 if state == _RUNNING else 0),
                    state=_RUNNING,
                    lease_owner=owner,
                    lease_expires_at=at + lease_seconds,
                    started_at=func.coalesce(jobs.c.started_at, at),
                    next_attempt_at=None,
                    updated_at=at,
                )
            )
            return _require_row(conn, job_id)

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
                .where(_owned(job_id, owner), jobs.c.cancel_requested.is_(False))
                .values(lease_expires_at=at + lease_seconds, updated_at=at)
            )
            return done.rowcount == 1

    def set_stage(self, job_id: str, owner: str, stage: Stage) -> None:
        with self._write() as conn:
            conn.execute(
                update(jobs)
                .where(_owned(job_id, owner))
                .values(stage=Stage(stage).value, updated_at=time.time())
            )

    def set_progress(self, job_id: str, owner: str, stage: Stage, fraction: float) -> None:
        """Merge ``{stage: fraction}`` into the job's progress (owner only)."""
        with self._write() as conn:
            text = conn.execute(
                select(jobs.c.progress).where(_owned(job_id, owner)).with_for_update()
            ).scalar()
            if text is None:
                return
            progress = dict(loads(text))
            progress[Stage(stage).value] = float(fraction)
            conn.execute(
                update(jobs)
                .where(_owned(job_id, owner))
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

    def checkpoints(self, job_id: str) -> dict[Stage, Checkpoint]:
        with self._read() as conn:
            rows = conn.execute(
                select(checkpoints).where(checkpoints.c.job_id == job_id)
            ).mappings()
            found = [_checkpoint(row) for row in rows]
        return {cp.stage: cp for cp in found}

    def clear_checkpoints(self, job_id: str, stages: Iterable[Stage] | None = None) -> None:
        query = delete(checkpoints).where(checkpoints.c.job_id == job_id)
        if stages is not None:
            query = query.where(checkpoints.c.stage.in_([Stage(s).value for s in stages]))
        with self._write() as conn:
            conn.execute(query)

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

    def requeue(self, job_id: str, owner: str) -> bool:
        """Give a running job back to the queue (shutdown): attempts and checkpoints kept.

        A job whose cancel was requested meanwhile becomes ``cancelled`` instead.
        """
        at = time.time()
        with self._write() as conn:
            done = conn.execute(
                update(jobs).where(_owned(job_id, owner)).values(**_back_to_queue(at), **_NO_LEASE)
            )
            return done.rowcount == 1

    def mark_cancelled(self, job_id: str, owner: str | None) -> bool:
        """Running → cancelled (only under ``owner``'s lease; ``None`` = whoever holds it)."""
        at = time.time()
        where = (
            _owned(job_id, owner)
            if owner is not None
            else and_(jobs.c.id == job_id, jobs.c.state == _RUNNING)
        )
        with self._write() as conn:
            done = conn.execute(
                update(jobs)
                .where(where)
                .values(state=JobState.CANCELLED.value, finished_at=at, updated_at=at, **_NO_LEASE)
            )
            return done.rowcount == 1

    def recover(self, owner: str) -> list[str]:
        """At start: this node's ``running`` jobs go back to the queue; return their ids.

        (Jobs whose cancel was requested are cancelled instead and not returned.)
        """
        at = time.time()
        mine = and_(jobs.c.state == _RUNNING, jobs.c.lease_owner == owner)
        with self._write() as conn:
            ids = conn.execute(
                select(jobs.c.id).where(mine, jobs.c.cancel_requested.is_(False))
            ).scalars()
            requeued = sorted(ids)
            conn.execute(
                update(jobs)
                .where(mine)
                .values(**_back_to_queue(at), **_NO_LEASE, interruptions=jobs.c.interruptions + 1)
            )
        return requeued

    def _finish_owned(
        self, job_id: str, owner: str, *, report: OutboxEntry | None = None, **values: Any
    ) -> bool:
        """End ``owner``'s run of the job with ``values``; ``report`` (if any) is queued in the
        same transaction, tagged with the job's generation."""
        with self._write() as conn:
            done = conn.execute(
                update(jobs).where(_owned(job_id, owner)).values(**values, **_NO_LEASE)
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
            job = _require_row(conn, job_id)
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
            return _require_row(conn, job_id)

    def retry(self, job_id: str) -> Job:
        """Failed/cancelled → queued with attempts 0 (checkpoints kept); else unchanged.

        The job's ``generation`` goes up: the new run reports its own outcome (a second
        failure report included) and sends progress again.
        :class:`UsageError` when another active job has the same dedup key.
        """
        at = time.time()
        try:
            with self._write() as conn:
                job = _require_row(conn, job_id)
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
                        **_NO_LEASE,
                    )
                )
                return _require_row(conn, job_id)
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


# --- queries ---------------------------------------------------------------------------------


def _owned(job_id: str, owner: str) -> ColumnElement[bool]:
    return and_(jobs.c.id == job_id, jobs.c.state == _RUNNING, jobs.c.lease_owner == owner)


def _claimable(at: float) -> ColumnElement[bool]:
    return and_(
        jobs.c.state.in_(ACTIVE_STATES),
        or_(
            jobs.c.state == JobState.QUEUED.value,
            and_(jobs.c.state == JobState.RETRY_WAIT.value, jobs.c.next_attempt_at <= at),
            and_(
                jobs.c.state == _RUNNING,
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
            jobs.c.state == _RUNNING,
            jobs.c.cancel_requested.is_(True),
            jobs.c.lease_expires_at < at,
        )
        .values(state=JobState.CANCELLED.value, finished_at=at, updated_at=at, **_NO_LEASE)
    )


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


def _delete_jobs(conn: Connection, ids: list[str]) -> None:
    conn.execute(delete(checkpoints).where(checkpoints.c.job_id.in_(ids)))
    conn.execute(
        delete(outbox).where(
            outbox.c.job_id.in_(ids), outbox.c.state.in_((OUTBOX_DELIVERED, OUTBOX_GIVEN_UP))
        )
    )
    conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))


def _get(conn: Connection, job_id: str) -> Job | None:
    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return None if row is None else _job(row)


def _require_row(conn: Connection, job_id: str) -> Job:
    job = _get(conn, job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id!r} in the job store")
    return job


# --- rows ↔ records -------------------------------------------------------------------------


def _new_row(job_id: str, job: NewJob, at: float) -> dict[str, Any]:
    return {
        "id": job_id,
        "kind": SourceKind(job.kind).value,
        "source": job.source,
        "short": job.short,
        "rungs": None if job.rungs is None else dumps(list(job.rungs)),
        "priority": job.priority,
        "request": dumps(job.request),
        "external_id": job.external_id,
        "dedup_key": job.dedup_key,
        "size_hint": job.size_hint,
        "state": JobState.QUEUED.value,
        "stage": None,
        "attempts": 0,
        "progress": "{}",
        "created_at": at,
        "updated_at": at,
        "cancel_requested": False,
    }


def _job(row: RowMapping) -> Job:
    rungs = loads(row["rungs"])
    return Job(
        id=row["id"],
        kind=SourceKind(row["kind"]),
        source=row["source"],
        short=bool(row["short"]),
        rungs=None if rungs is None else tuple(rungs),
        priority=int(row["priority"]),
        request=loads(row["request"]),
        external_id=row["external_id"],
        dedup_key=row["dedup_key"],
        size_hint=row["size_hint"],
        state=JobState(row["state"]),
        stage=None if row["stage"] is None else Stage(row["stage"]),
        attempts=int(row["attempts"]),
        progress=loads(row["progress"]),
        error=row["error"],
        error_kind=row["error_kind"],
        result=loads(row["result"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        next_attempt_at=row["next_attempt_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        cancel_requested=bool(row["cancel_requested"]),
        interruptions=int(row["interruptions"]),
        generation=int(row["generation"]),
    )


def _checkpoint(row: RowMapping) -> Checkpoint:
    return Checkpoint(
        job_id=row["job_id"],
        stage=Stage(row["stage"]),
        data=loads(row["data"]),
        node=row["node"],
        created_at=row["created_at"],
    )


__all__ = ["PRUNE_BATCH", "QUEUE_FULL_RETRY_AFTER_S", "JobQueries"]
