"""The jobs table's rows and records: a row ↔ :class:`Job` / :class:`Checkpoint`, a job read
in a transaction, and the ownership predicate every run-side write uses.

Shared by the job queries' modules (``job_reads``, ``job_offers``, ``job_leases``,
``job_finish``); nothing here opens a transaction of its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, and_, select
from sqlalchemy.sql.elements import ColumnElement

from speak_encoder.errors import JobNotFound
from speak_encoder.node.models import Checkpoint, Job, JobState, NewJob, SourceKind, Stage
from speak_encoder.node.store.engine import dumps, loads
from speak_encoder.node.store.schema import jobs

#: The state of a job under a lease.
RUNNING = JobState.RUNNING.value
#: The values that clear a job's lease.
NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


def owned(job_id: str, owner: str) -> ColumnElement[bool]:
    """The job ``job_id``, running under ``owner``'s lease."""
    return and_(jobs.c.id == job_id, jobs.c.state == RUNNING, jobs.c.lease_owner == owner)


def get_job(conn: Connection, job_id: str) -> Job | None:
    """The job ``job_id`` as ``conn`` sees it, or ``None``."""
    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return None if row is None else job_from_row(row)


def require_job(conn: Connection, job_id: str) -> Job:
    """The job ``job_id`` as ``conn`` sees it; :class:`JobNotFound` if there is none."""
    job = get_job(conn, job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id!r} in the job store")
    return job


def new_job_row(job_id: str, job: NewJob, at: float) -> dict[str, Any]:
    """The row of a new, queued job."""
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


def job_from_row(row: RowMapping) -> Job:
    """A jobs row as a :class:`Job`."""
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


def checkpoint_from_row(row: RowMapping) -> Checkpoint:
    """A checkpoints row as a :class:`Checkpoint`."""
    return Checkpoint(
        job_id=row["job_id"],
        stage=Stage(row["stage"]),
        data=loads(row["data"]),
        node=row["node"],
        created_at=row["created_at"],
    )


__all__ = [
    "NO_LEASE",
    "RUNNING",
    "checkpoint_from_row",
    "get_job",
    "job_from_row",
    "new_job_row",
    "owned",
    "require_job",
]
