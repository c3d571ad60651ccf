"""Read-only job queries: one job, lists and counts (the CLI, the dashboard, the metrics) and a
job's checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select

from speak_encoder.errors import JobNotFound
from speak_encoder.node.models import Checkpoint, Job, JobState, Stage
from speak_encoder.node.store.engine import StoreBase
from speak_encoder.node.store.job_rows import checkpoint_from_row, get_job, job_from_row
from speak_encoder.node.store.schema import ACTIVE_STATES, checkpoints, jobs


class JobReads(StoreBase):
    """Jobs and checkpoints as they are (no query here writes)."""

    def get(self, job_id: str) -> Job | None:
        with self._read() as conn:
            return get_job(conn, job_id)

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
            return [job_from_row(row) for row in rows]

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

    def checkpoints(self, job_id: str) -> dict[Stage, Checkpoint]:
        with self._read() as conn:
            rows = conn.execute(
                select(checkpoints).where(checkpoints.c.job_id == job_id)
            ).mappings()
            found = [checkpoint_from_row(row) for row in rows]
        return {cp.stage: cp for cp in found}


__all__ = ["JobReads"]
