"""The outbox: reports (webhooks, gateway calls) delivered at least once, in order, by one node.

Rows are written in the same transaction as the state change they report where that matters
(a job's failure and its failure report: :meth:`JobQueries.fail`), and delivered by whichever
node of a fleet claims them:

* **Claims.** :meth:`OutboxQueries.outbox_claim` takes due rows under a lease (``claimed_by``,
  ``claim_expires_at``) with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and inside ``BEGIN
  IMMEDIATE`` on SQLite, so exactly one node sends each row; the lease of a node that died
  expires and another node takes the row over. Only the claimer may record the outcome.
* **One sequence per job.** A row is claimable only while no other row of its job is claimed
  and no older row of its job is still pending: a job's reports leave one after another, in
  the order they were queued.
* **Progress never follows the final report.** Progress rows (``progress``) are best effort:
  sent once, never retried, and a stale one is dropped rather than sent late.
  :meth:`OutboxQueries.outbox_progress` refuses a progress row once a final row of the job's
  current generation exists (whatever its state), and queuing a final row deletes the job's
  progress rows that are not on their way. With the per-job sequence above, a progress report
  is therefore never *sent* after the job's final report was queued — by construction, on one
  node or across a fleet.
* **Report targets change.** A job offered again with a new ``webhook_url``/``api_key``
  (:meth:`~speak_encoder.node.store.job_offers.JobOffers.offer`) bumps ``revision`` on its rows and
  makes given-up final rows pending again. Webhook deliverers read the target from the job's
  *current* request (claims join it into :attr:`OutboxItem.request`), and a refusal answered
  under an older revision is retried at once instead of given up.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import aliased

from speak_encoder.node.models import OutboxEntry, OutboxItem
from speak_encoder.node.store.engine import StoreBase, dumps, loads, now_or
from speak_encoder.node.store.schema import (
    OUTBOX_DELIVERED,
    OUTBOX_GIVEN_UP,
    OUTBOX_PENDING,
    OUTBOX_STATES,
    jobs,
    outbox,
)

#: Rows examined per claim (candidates skipped by the per-job order are not counted).
CLAIM_SCAN = 200


def insert_row(
    conn: Connection,
    dialect: str,
    entry: OutboxEntry,
    *,
    job_id: str | None,
    generation: int = 0,
    at: float,
) -> bool:
    """Insert ``entry`` unless its idempotency key is known; ``True`` if it was added.

    A final row also deletes the job's progress rows that are not on their way (unclaimed).
    """
    values = {
        "job_id": job_id,
        "kind": entry.kind,
        "target": entry.target,
        "payload": dumps(entry.payload),
        "headers": dumps(entry.headers),
        "idempotency_key": entry.idempotency_key,
        "attempts": 0,
        "next_attempt_at": at,
        "state": OUTBOX_PENDING,
        "created_at": at,
        "updated_at": at,
        "revision": 0,
        "progress": entry.progress,
        "generation": generation,
    }
    key = [outbox.c.idempotency_key]
    stmt: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql as pg  # only a fleet needs it

        stmt = pg.insert(outbox).values(**values).on_conflict_do_nothing(index_elements=key)
    else:
        stmt = sqlite.insert(outbox).values(**values).on_conflict_do_nothing(index_elements=key)
    added = conn.execute(stmt.returning(outbox.c.id)).first() is not None
    if added and job_id is not None and not entry.progress:
        conn.execute(
            delete(outbox).where(
                outbox.c.job_id == job_id,
                outbox.c.progress.is_(True),
                outbox.c.claimed_by.is_(None),
            )
        )
    return added


def retarget_rows(conn: Connection, job_id: str, at: float) -> None:
    """The job's report target changed: bump the revision of its rows; given-up final rows
    become pending again (attempts reset)."""
    conn.execute(
        update(outbox)
        .where(outbox.c.job_id == job_id, outbox.c.state == OUTBOX_PENDING)
        .values(revision=outbox.c.revision + 1, next_attempt_at=at, updated_at=at)
    )
    conn.execute(
        update(outbox)
        .where(
            outbox.c.job_id == job_id,
            outbox.c.state == OUTBOX_GIVEN_UP,
            outbox.c.progress.is_(False),
        )
        .values(
            state=OUTBOX_PENDING,
            attempts=0,
            revision=outbox.c.revision + 1,
            next_attempt_at=at,
            updated_at=at,
        )
    )


def has_final(conn: Connection, job_id: str, *conditions: Any) -> bool:
    """Whether the job has a final (non-progress) row meeting ``conditions``."""
    query = select(outbox.c.id).where(
        outbox.c.job_id == job_id, outbox.c.progress.is_(False), *conditions
    )
    return conn.execute(query.limit(1)).first() is not None


def has_waiting_final(conn: Connection, job_id: str, at: float) -> bool:
    """Whether a final row of the job waits to be sent (pending, and not on its way now: a
    row in flight may be delivered the next moment, so it does not count)."""
    not_in_flight = outbox.c.claimed_by.is_(None) | (outbox.c.claim_expires_at < at)
    return has_final(conn, job_id, outbox.c.state == OUTBOX_PENDING, not_in_flight)


class OutboxQueries(StoreBase):
    """The outbox's queries (see the module docstring)."""

    def outbox_add(
        self,
        *,
        job_id: str | None,
        kind: str,
        target: str,
        payload: dict[str, Any],
        headers: dict[str, str],
        idempotency_key: str,
        now: float | None = None,
    ) -> bool:
        """Queue a final report; ``False`` (nothing added) if ``idempotency_key`` is known."""
        entry = OutboxEntry(kind, target, payload, headers, idempotency_key)
        return self.outbox_put(job_id, entry, now=now)

    def outbox_put(
        self, job_id: str | None, entry: OutboxEntry, *, now: float | None = None
    ) -> bool:
        """Queue ``entry`` (tagged with the job's current generation); ``False`` if known."""
        at = now_or(now)
        with self._write() as conn:
            # The job's row lock orders this with outbox_progress on PostgreSQL: a progress
            # row checked before this final row commits is deleted by insert_row.
            generation = _generation(conn, job_id, lock=True)
            if generation is None:
                generation = 0
            return insert_row(
                conn, self.dialect, entry, job_id=job_id, generation=generation, at=at
            )

    def outbox_progress(self, job_id: str, entry: OutboxEntry, *, now: float | None = None) -> bool:
        """Queue a progress report for ``job_id``, replacing one not yet on its way.

        Refused (``False``) once a final report of the job's current generation was queued,
        or when the job is not in the store.
        """
        at = now_or(now)
        with self._write() as conn:
            generation = _generation(conn, job_id, lock=True)
            if generation is None:
                return False
            if has_final(conn, job_id, outbox.c.generation == generation):
                return False
            waiting = conn.execute(
                select(outbox.c.id)
                .where(
                    outbox.c.job_id == job_id,
                    outbox.c.progress.is_(True),
                    outbox.c.state == OUTBOX_PENDING,
                    outbox.c.claimed_by.is_(None),
                )
                .limit(1)
            ).scalar()
            if waiting is not None:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == waiting)
                    .values(
                        target=entry.target,
                        payload=dumps(entry.payload),
                        headers=dumps(entry.headers),
                        next_attempt_at=at,
                        updated_at=at,
                    )
                )
                return True
            return insert_row(
                conn, self.dialect, entry, job_id=job_id, generation=generation, at=at
            )

    def outbox_claim(
        self,
        owner: str,
        *,
        kinds: frozenset[str] | set[str],
        lease_seconds: float,
        limit: int,
        target: str | None = None,
        now: float | None = None,
    ) -> list[OutboxItem]:
        """Claim up to ``limit`` due rows of ``kinds`` (optionally only to ``target``).

        Each claimed row comes with its job's current request. Progress rows whose claim
        expired (their node died mid-send) are dropped, never sent late.
        """
        at = now_or(now)
        if limit <= 0:
            return []
        other = aliased(outbox)
        blocked = exists().where(
            other.c.job_id == outbox.c.job_id,
            other.c.id != outbox.c.id,
            (
                (other.c.claimed_by.is_not(None) & (other.c.claim_expires_at >= at))
                | ((other.c.state == OUTBOX_PENDING) & (other.c.id < outbox.c.id))
            ),
        )
        free = outbox.c.claimed_by.is_(None) | (outbox.c.claim_expires_at < at)
        query = (
            select(outbox.c.id)
            .where(
                outbox.c.state == OUTBOX_PENDING,
                outbox.c.next_attempt_at <= at,
                outbox.c.kind.in_(sorted(kinds)),
                free,
                outbox.c.job_id.is_(None) | ~blocked,
            )
            .order_by(outbox.c.created_at.asc(), outbox.c.id.asc())
            .limit(min(limit, CLAIM_SCAN))
        )
        if target is not None:
            query = query.where(outbox.c.target == target)
        with self._write() as conn:
            conn.execute(
                delete(outbox).where(
                    outbox.c.progress.is_(True),
                    outbox.c.claimed_by.is_not(None),
                    outbox.c.claim_expires_at < at,
                )
            )
            # A progress row never leaves after a final row of its generation (or a later
            # one) was queued, whatever raced to queue them.
            final = aliased(outbox)
            conn.execute(
                delete(outbox).where(
                    outbox.c.progress.is_(True),
                    outbox.c.claimed_by.is_(None) | (outbox.c.claim_expires_at < at),
                    exists().where(
                        final.c.job_id == outbox.c.job_id,
                        final.c.progress.is_(False),
                        final.c.generation >= outbox.c.generation,
                    ),
                )
            )
            ids = list(conn.execute(query.with_for_update(skip_locked=True)).scalars())
            if not ids:
                return []
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids))
                .values(claimed_by=owner, claim_expires_at=at + lease_seconds, updated_at=at)
            )
            rows = conn.execute(
                select(outbox, jobs.c.request.label("job_request"))
                .select_from(outbox.outerjoin(jobs, jobs.c.id == outbox.c.job_id))
                .where(outbox.c.id.in_(ids))
                .order_by(outbox.c.created_at.asc(), outbox.c.id.asc())
            ).mappings()
            return [item_of(row) for row in rows]

    def outbox_delivered(
        self, item_id: int, owner: str | None = None, *, now: float | None = None
    ) -> bool:
        """Record a delivery (a progress row is deleted); ``False`` if ``owner`` no longer
        holds the claim."""
        at = now_or(now)
        with self._write() as conn:
            where = _claimed(item_id, owner)
            row = conn.execute(select(outbox.c.progress).where(where)).first()
            if row is None:
                return False
            if row[0]:
                conn.execute(delete(outbox).where(outbox.c.id == item_id))
                return True
            conn.execute(
                update(outbox)
                .where(where)
                .values(
                    state=OUTBOX_DELIVERED, claimed_by=None, claim_expires_at=None, updated_at=at
                )
            )
            return True

    def outbox_failed(
        self,
        item_id: int,
        *,
        error: str,
        next_attempt_at: float | None,
        owner: str | None = None,
        revision: int | None = None,
        now: float | None = None,
    ) -> str:
        """Count a failed delivery; ``next_attempt_at=None`` gives the row up.

        Returns what happened: ``retry``, ``given_up``, ``dropped`` (a progress row: deleted),
        ``retargeted`` (the target changed since ``revision``: due again now, not counted) or
        ``lost`` (``owner`` no longer holds the claim: nothing recorded).
        """
        at = now_or(now)
        with self._write() as conn:
            where = _claimed(item_id, owner)
            row = conn.execute(select(outbox.c.progress, outbox.c.revision).where(where)).first()
            if row is None:
                return "lost"
            progress, current = bool(row[0]), int(row[1])
            if progress:
                conn.execute(delete(outbox).where(outbox.c.id == item_id))
                return "dropped"
            release = {"claimed_by": None, "claim_expires_at": None, "updated_at": at}
            if revision is not None and current != revision:
                conn.execute(
                    update(outbox)
                    .where(where)
                    .values(last_error=error, next_attempt_at=at, **release)
                )
                return "retargeted"
            values: dict[str, Any] = {
                "attempts": outbox.c.attempts + 1,
                "last_error": error,
                **release,
            }
            if next_attempt_at is None:
                values["state"] = OUTBOX_GIVEN_UP
            else:
                values["next_attempt_at"] = next_attempt_at
            conn.execute(update(outbox).where(where).values(**values))
            return "given_up" if next_attempt_at is None else "retry"

    def outbox_due(self, *, now: float | None = None, limit: int = 20) -> list[OutboxItem]:
        """Pending rows due at ``now``, oldest first (a read: nothing is claimed)."""
        query = (
            select(outbox)
            .where(outbox.c.state == OUTBOX_PENDING, outbox.c.next_attempt_at <= now_or(now))
            .order_by(outbox.c.created_at.asc(), outbox.c.id.asc())
            .limit(limit)
        )
        with self._read() as conn:
            return [item_of(row) for row in conn.execute(query).mappings()]

    def outbox_rows(self, job_id: str) -> list[OutboxItem]:
        """Every row of one job, oldest first (tests, ``jobs show``)."""
        query = (
            select(outbox)
            .where(outbox.c.job_id == job_id)
            .order_by(outbox.c.created_at.asc(), outbox.c.id.asc())
        )
        with self._read() as conn:
            return [item_of(row) for row in conn.execute(query).mappings()]

    def outbox_counts(self) -> dict[str, int]:
        """Final rows by state (progress rows are transient and not counted)."""
        result = dict.fromkeys(OUTBOX_STATES, 0)
        with self._read() as conn:
            for state, n in conn.execute(
                select(outbox.c.state, func.count())
                .where(outbox.c.progress.is_(False))
                .group_by(outbox.c.state)
            ):
                result[state] = int(n)
        return result

    def outbox_rearm(self) -> int:
        """Make every given-up final row pending again (attempts reset); how many."""
        at = time.time()
        with self._write() as conn:
            result = conn.execute(
                update(outbox)
                .where(outbox.c.state == OUTBOX_GIVEN_UP, outbox.c.progress.is_(False))
                .values(state=OUTBOX_PENDING, attempts=0, next_attempt_at=at, updated_at=at)
            )
            return int(result.rowcount or 0)


def _generation(conn: Connection, job_id: str | None, *, lock: bool = False) -> Any:
    if job_id is None:
        return 0
    query = select(jobs.c.generation).where(jobs.c.id == job_id)
    if lock:
        query = query.with_for_update()
    value = conn.execute(query).scalar()
    if value is None:
        return None if lock else 0
    return int(value)


def _claimed(item_id: int, owner: str | None) -> Any:
    if owner is None:
        return outbox.c.id == item_id
    return and_(outbox.c.id == item_id, outbox.c.claimed_by == owner)


def item_of(row: Any) -> OutboxItem:
    request = row.get("job_request") if hasattr(row, "get") else None
    return OutboxItem(
        id=int(row["id"]),
        job_id=row["job_id"],
        kind=row["kind"],
        target=row["target"],
        payload=loads(row["payload"]),
        headers=loads(row["headers"]),
        idempotency_key=row["idempotency_key"],
        attempts=int(row["attempts"]),
        next_attempt_at=row["next_attempt_at"],
        state=row["state"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        revision=int(row["revision"]),
        progress=bool(row["progress"]),
        claimed_by=row["claimed_by"],
        request=loads(request) if request is not None else None,
    )


__all__ = [
    "OutboxQueries",
    "has_final",
    "has_waiting_final",
    "insert_row",
    "item_of",
    "retarget_rows",
]
