"""The job store: jobs, stage checkpoints and the report outbox, in SQLite or PostgreSQL.

One synchronous, thread-safe object (SQLAlchemy 2 Core) used by the scheduler (through
``asyncio.to_thread``), the CLI, the job sources and the dashboard. The tables and the
migrations are described in :mod:`speak_encoder.node.schema`.

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

The URL is a secret (it may hold a password): it is never logged, ``repr()`` shows the dialect
and host only, and connection failures become :class:`~speak_encoder.errors.StoreUnavailable`
with the password scrubbed from the message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.sql.elements import ColumnElement

from speak_encoder.config import SQLITE_NAME, Settings
from speak_encoder.errors import (
    ConfigError,
    JobNotFound,
    QueueFull,
    StoreUnavailable,
    UsageError,
)
from speak_encoder.node.models import (
    Checkpoint,
    Job,
    JobState,
    NewJob,
    OutboxItem,
    SourceKind,
    Stage,
    new_job_id,
)
from speak_encoder.node.schema import (
    ACTIVE_STATES,
    FINISHED_STATES,
    MIGRATIONS,
    OUTBOX_DELIVERED,
    OUTBOX_GIVEN_UP,
    OUTBOX_PENDING,
    OUTBOX_STATES,
    Migration,
    checkpoints,
    jobs,
    outbox,
    schema_version,
)
from speak_encoder.private_files import ensure_private_dir, private_file

log = logging.getLogger(__name__)

#: Seconds a SQLite connection waits for the write lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0
#: Seconds to establish a PostgreSQL connection (unless the URL sets ``connect_timeout``).
PG_CONNECT_TIMEOUT_S = 10
#: ``retry_after`` of a refused submission (seconds).
QUEUE_FULL_RETRY_AFTER_S = 60.0
#: Jobs deleted per transaction by :meth:`JobStore.prune`.
PRUNE_BATCH = 500
#: PostgreSQL advisory lock keys (any constants unique to this application).
_PG_LOCK_MIGRATE = 0x5E_0C_0001
_PG_LOCK_SUBMIT = 0x5E_0C_0002
#: Connection option that makes the SQLite ``begin`` hook emit a deferred (read) BEGIN.
_READ_ONLY = "speak_encoder_read"

_RUNNING = JobState.RUNNING.value
_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _now(now: float | None) -> float:
    return time.time() if now is None else now


#: Attempts of a migration that meets a locked SQLite file (see :meth:`JobStore.migrate`).
MIGRATE_LOCK_RETRIES = 5


class JobStore:
    """Jobs, checkpoints and the outbox (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self._url = _parse_url(url)
        self._engine = _make_engine(self._url)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        url = settings.store_url
        if settings.database_url is None or not settings.database_url.get_secret_value():
            # 0600 before SQLite opens it (its -wal/-shm files take the same mode): it holds
            # each job's webhook api_key.
            private_file(ensure_private_dir(settings.data_dir) / SQLITE_NAME)
        return cls(url)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def __repr__(self) -> str:
        host = self._url.host or ""
        port = f":{self._url.port}" if self._url.port else ""
        return f"JobStore(dialect={self.dialect!r}, host={host + port!r})"

    def close(self) -> None:
        self._engine.dispose()

    # --- transactions and error translation --------------------------------------------------

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(self._unavailable_message(exc)) from None

    def _unavailable_message(self, exc: OperationalError | InterfaceError) -> str:
        reason = " ".join(str(exc.orig if exc.orig is not None else exc).split())
        password = self._url.password
        if password:
            for form in {str(password), quote_plus(str(password)), quote(str(password))}:
                reason = reason.replace(form, "***")
        where = f"{self.dialect} {self._url.host or self._url.database or ''}".strip()
        return f"the job store ({where}) cannot be reached: {reason}"

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (SQLite: BEGIN IMMEDIATE), committed on success."""
        with self._translate(), self._engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._translate(), self._engine.connect() as conn:
            conn.execution_options(**{_READ_ONLY: True})
            yield conn

    def _pg_lock(self, conn: Connection, key: int) -> None:
        if self.dialect == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(key)))

    # --- migrations --------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations (each in its own transaction); return the schema version.

        SQLite can answer "database is locked" at once (not after busy_timeout) when several
        processes open a new file together (switching it to WAL); that is retried a few times.
        """
        for attempt in range(MIGRATE_LOCK_RETRIES):
            try:
                return self._migrate_once()
            except StoreUnavailable as exc:
                if self.dialect != "sqlite" or "locked" not in exc.message:
                    raise
                if attempt == MIGRATE_LOCK_RETRIES - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _migrate_once(self) -> int:
        with self._translate(), self._engine.connect() as conn:
            for migration in MIGRATIONS:
                with conn.begin():
                    self._apply(conn, migration)
            version = _schema_version(conn)
            conn.rollback()
        return version

    def _apply(self, conn: Connection, migration: Migration) -> None:
        self._pg_lock(conn, _PG_LOCK_MIGRATE)
        schema_version.create(conn, checkfirst=True)
        if _schema_version(conn) >= migration.version:
            return
        log.info("job store: migration %d (%s)", migration.version, migration.description)
        migration.apply(conn)
        conn.execute(
            insert(schema_version).values(
                version=migration.version,
                description=migration.description,
                applied_at=time.time(),
            )
        )

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
        at = _now(now)
        try:
            with self._write() as conn:
                self._pg_lock(conn, _PG_LOCK_SUBMIT)
                existing = self._duplicate(conn, job.dedup_key, at - dedup_window_s)
                if existing is not None:
                    return existing, False
                _check_room(conn, queue_max)
                job_id = new_job_id()
                conn.execute(insert(jobs).values(**_new_row(job_id, job, at)))
                return _require_row(conn, job_id), True
        except IntegrityError:
            # Another submission of the same dedup key won the race (unique partial index).
            with self._read() as conn:
                existing = self._duplicate(conn, job.dedup_key, at - dedup_window_s)
            if existing is None:
                raise
            return existing, False

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
        at = _now(now)
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
        at = _now(now)
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
            progress = dict(_loads(text))
            progress[Stage(stage).value] = float(fraction)
            conn.execute(
                update(jobs)
                .where(_owned(job_id, owner))
                .values(progress=_dumps(progress), updated_at=time.time())
            )

    def save_checkpoint(
        self, job_id: str, stage: Stage, data: dict[str, Any], *, node: str
    ) -> None:
        """Record (or replace) what ``stage`` left behind. :class:`JobNotFound` if no job."""
        values = {
            "job_id": job_id,
            "stage": Stage(stage).value,
            "data": _dumps(data),
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

    def complete(self, job_id: str, owner: str, result: dict[str, Any]) -> bool:
        at = time.time()
        return self._finish_owned(
            job_id,
            owner,
            state=JobState.COMPLETE.value,
            result=_dumps(result),
            error=None,
            error_kind=None,
            finished_at=at,
            updated_at=at,
        )

    def fail(
        self, job_id: str, owner: str, *, error: str, kind: str, count_attempt: bool = True
    ) -> bool:
        at = time.time()
        return self._finish_owned(
            job_id,
            owner,
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
        at = _now(now)
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

    def _finish_owned(self, job_id: str, owner: str, **values: Any) -> bool:
        with self._write() as conn:
            done = conn.execute(
                update(jobs).where(_owned(job_id, owner)).values(**values, **_NO_LEASE)
            )
            return done.rowcount == 1

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
        delivered/given-up outbox rows too); return how many jobs were deleted."""
        deleted = 0
        while True:
            with self._write() as conn:
                ids = list(
                    conn.execute(
                        select(jobs.c.id)
                        .where(jobs.c.state.in_(FINISHED_STATES), jobs.c.finished_at < older_than)
                        .limit(PRUNE_BATCH)
                    ).scalars()
                )
                if not ids:
                    return deleted
                _delete_jobs(conn, ids)
            deleted += len(ids)

    # --- the outbox --------------------------------------------------------------------------

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
        """Queue a report; ``False`` (nothing added) if ``idempotency_key`` is known."""
        at = _now(now)
        values = {
            "job_id": job_id,
            "kind": kind,
            "target": target,
            "payload": _dumps(payload),
            "headers": _dumps(headers),
            "idempotency_key": idempotency_key,
            "attempts": 0,
            "next_attempt_at": at,
            "state": OUTBOX_PENDING,
            "created_at": at,
            "updated_at": at,
        }
        key = [outbox.c.idempotency_key]
        stmt: Any
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql as pg

            stmt = pg.insert(outbox).values(**values).on_conflict_do_nothing(index_elements=key)
        else:
            stmt = sqlite.insert(outbox).values(**values).on_conflict_do_nothing(index_elements=key)
        with self._write() as conn:
            return conn.execute(stmt.returning(outbox.c.id)).first() is not None

    def outbox_due(self, *, now: float | None = None, limit: int = 20) -> list[OutboxItem]:
        """Pending items due at ``now``, oldest first."""
        query = (
            select(outbox)
            .where(outbox.c.state == OUTBOX_PENDING, outbox.c.next_attempt_at <= _now(now))
            .order_by(outbox.c.created_at.asc(), outbox.c.id.asc())
            .limit(limit)
        )
        with self._read() as conn:
            return [_outbox_item(row) for row in conn.execute(query).mappings()]

    def outbox_delivered(self, item_id: int) -> None:
        with self._write() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == item_id)
                .values(state=OUTBOX_DELIVERED, updated_at=time.time())
            )

    def outbox_failed(self, item_id: int, *, error: str, next_attempt_at: float | None) -> None:
        """Count a failed delivery; ``next_attempt_at=None`` gives the item up."""
        values: dict[str, Any] = {
            "attempts": outbox.c.attempts + 1,
            "last_error": error,
            "updated_at": time.time(),
        }
        if next_attempt_at is None:
            values["state"] = OUTBOX_GIVEN_UP
        else:
            values["next_attempt_at"] = next_attempt_at
        with self._write() as conn:
            conn.execute(update(outbox).where(outbox.c.id == item_id).values(**values))

    def outbox_counts(self) -> dict[str, int]:
        result = dict.fromkeys(OUTBOX_STATES, 0)
        with self._read() as conn:
            for state, n in conn.execute(
                select(outbox.c.state, func.count()).group_by(outbox.c.state)
            ):
                result[state] = int(n)
        return result


# --- engine ---------------------------------------------------------------------------------


def _parse_url(text: str) -> URL:
    try:
        url = make_url(text)
    except ArgumentError:
        # SQLAlchemy's message quotes the whole URL (password included): not repeated here.
        raise ConfigError("DATABASE_URL is not a valid SQLAlchemy database URL") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend != "sqlite":
        raise ConfigError(
            f"DATABASE_URL: unsupported database {backend!r} (use sqlite:/// or postgresql://)"
        )
    return url


def _make_engine(url: URL) -> Engine:
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(url)
        connect_args = (
            {} if "connect_timeout" in url.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        )
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except NoSuchModuleError:
        raise ConfigError(f"DATABASE_URL: no driver for {url.drivername!r}") from None


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The SQLAlchemy recipe: let us emit BEGIN ourselves (pysqlite's own is deferred).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # a power cut loses no commit
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


# --- queries --------------------------------------------------------------------------------


def _schema_version(conn: Connection) -> int:
    return int(
        conn.execute(select(func.coalesce(func.max(schema_version.c.version), 0))).scalar_one()
    )


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
        "rungs": None if job.rungs is None else _dumps(list(job.rungs)),
        "priority": job.priority,
        "request": _dumps(job.request),
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
    rungs = _loads(row["rungs"])
    return Job(
        id=row["id"],
        kind=SourceKind(row["kind"]),
        source=row["source"],
        short=bool(row["short"]),
        rungs=None if rungs is None else tuple(rungs),
        priority=int(row["priority"]),
        request=_loads(row["request"]),
        external_id=row["external_id"],
        dedup_key=row["dedup_key"],
        size_hint=row["size_hint"],
        state=JobState(row["state"]),
        stage=None if row["stage"] is None else Stage(row["stage"]),
        attempts=int(row["attempts"]),
        progress=_loads(row["progress"]),
        error=row["error"],
        error_kind=row["error_kind"],
        result=_loads(row["result"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        next_attempt_at=row["next_attempt_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        cancel_requested=bool(row["cancel_requested"]),
        interruptions=int(row["interruptions"]),
    )


def _checkpoint(row: RowMapping) -> Checkpoint:
    return Checkpoint(
        job_id=row["job_id"],
        stage=Stage(row["stage"]),
        data=_loads(row["data"]),
        node=row["node"],
        created_at=row["created_at"],
    )


def _outbox_item(row: RowMapping) -> OutboxItem:
    return OutboxItem(
        id=int(row["id"]),
        job_id=row["job_id"],
        kind=row["kind"],
        target=row["target"],
        payload=_loads(row["payload"]),
        headers=_loads(row["headers"]),
        idempotency_key=row["idempotency_key"],
        attempts=int(row["attempts"]),
        next_attempt_at=row["next_attempt_at"],
        state=row["state"],
        last_error=row["last_error"],
        created_at=row["created_at"],
    )
