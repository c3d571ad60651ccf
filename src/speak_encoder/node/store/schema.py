"""The job store's tables and its versioned migrations (SQLAlchemy Core, SQLite and PostgreSQL).

Times are epoch seconds (UTC, double precision). JSON values are TEXT written with
``json.dumps(sort_keys=True)`` so both databases store and compare them the same way.

``jobs``  — one row per job, every field of :class:`~speak_encoder.node.models.Job`
    ``id`` (32 hex, primary key), ``kind``, ``source``, ``short``, ``rungs`` (JSON list or
    NULL), ``priority``, ``request`` (JSON), ``external_id``, ``dedup_key``, ``size_hint``,
    ``state``, ``stage``, ``attempts``, ``progress`` (JSON ``{stage: 0..1}``), ``error``,
    ``error_kind``, ``result`` (JSON or NULL), ``created_at``, ``updated_at``, ``started_at``,
    ``finished_at``, ``next_attempt_at``, ``lease_owner``, ``lease_expires_at``,
    ``cancel_requested``.
    Indexes: ``ix_jobs_claimable`` (priority, created_at) over active jobs — the claim;
    ``ux_jobs_dedup_active`` UNIQUE (dedup_key) over active jobs — at most one active job per
    dedup key, whatever races; ``ix_jobs_dedup`` (dedup_key) — the "recently complete" check;
    ``ix_jobs_finished`` (state, finished_at) — pruning; ``ix_jobs_created`` — listing.

``checkpoints`` — what a finished stage left behind; primary key (job_id, stage)
    ``job_id`` (→ jobs.id, ON DELETE CASCADE), ``stage``, ``data`` (JSON), ``node``,
    ``created_at``.

    v3: ``generation`` — how many times a completed job was offered again and reopened to
    report once more (0 for the first run).

``outbox`` — reports to deliver at least once
    ``id`` (integer key), ``job_id`` (no foreign key: a pending report outlives a pruned
    job), ``kind``, ``target``, ``payload`` (JSON), ``headers`` (JSON), ``idempotency_key``
    (UNIQUE), ``attempts`` (failed deliveries), ``next_attempt_at``, ``state``
    (pending | delivered | given_up), ``last_error``, ``created_at``, ``updated_at``.
    v3: ``claimed_by``/``claim_expires_at`` — the node delivering the row now, under a lease
    (exactly one node of a fleet sends each row); ``revision`` — bumped when the job's report
    target changes (a delivery refused under an older revision is retried, not given up);
    ``progress`` — a progress report (best effort, never retried) rather than a final one;
    ``generation`` — the job's generation when the row was queued.
    Index ``ix_outbox_job_state`` (job_id, state) — the per-job order of delivery.

``pins`` — pending pins (v3; before, a separate ``pins.sqlite3`` per node)
    ``id``, ``cid``, ``target`` (UNIQUE with ``cid``), ``folder`` (to upload from, or NULL),
    ``node`` (the node that holds ``folder``), ``status`` (pending | done | expired),
    ``attempts``, ``created_at``, ``next_attempt_at``, ``updated_at``, ``last_error``,
    ``claimed_by``, ``claim_expires_at`` (a retry in progress, under a lease).

``schema_version`` — one row per applied migration: ``version``, ``description``,
    ``applied_at``.

Migrations are ``(version, description, apply)`` applied in order, each in its own
transaction together with its ``schema_version`` row. Version 1 creates ``jobs``,
``checkpoints`` and ``outbox`` in their current shape; each later migration adds what a
database made by an older version lacks (columns checked one by one, tables and indexes with
``checkfirst``), so a new database and a migrated one end with the same schema
(``tests/integration/test_store.py`` compares them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
    inspect,
    text,
)

from speak_encoder.node.models import JobState

ACTIVE_STATES: tuple[str, ...] = tuple(s.value for s in JobState if s.active)
FINISHED_STATES: tuple[str, ...] = tuple(s.value for s in JobState if s.finished)

OUTBOX_PENDING = "pending"
OUTBOX_DELIVERED = "delivered"
OUTBOX_GIVEN_UP = "given_up"
OUTBOX_STATES: tuple[str, ...] = (OUTBOX_PENDING, OUTBOX_DELIVERED, OUTBOX_GIVEN_UP)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("source", Text, nullable=False),
    Column("short", Boolean, nullable=False, default=False),
    Column("rungs", Text),
    Column("priority", Integer, nullable=False, default=0),
    Column("request", Text, nullable=False, default="{}"),
    Column("external_id", Text),
    Column("dedup_key", Text),
    Column("size_hint", BigInteger),
    Column("state", String(16), nullable=False),
    Column("stage", String(16)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("progress", Text, nullable=False, default="{}"),
    Column("error", Text),
    Column("error_kind", String(64)),
    Column("result", Text),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("started_at", Double),
    Column("finished_at", Double),
    Column("next_attempt_at", Double),
    Column("lease_owner", Text),
    Column("lease_expires_at", Double),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    # v2: times the job's node died under it (crash recovery, expired lease): not attempts,
    # but bounded too, so a job that kills its node cannot loop forever.
    Column("interruptions", Integer, nullable=False, default=0, server_default="0"),
    # v3: reopened after completion to report again (a redispatch of a finished job)
    Column("generation", Integer, nullable=False, default=0, server_default="0"),
)

_active = jobs.c.state.in_(ACTIVE_STATES)
Index(
    "ix_jobs_claimable",
    jobs.c.priority,
    jobs.c.created_at,
    sqlite_where=_active,
    postgresql_where=_active,
)
Index(
    "ux_jobs_dedup_active",
    jobs.c.dedup_key,
    unique=True,
    sqlite_where=_active,
    postgresql_where=_active,
)
Index("ix_jobs_dedup", jobs.c.dedup_key)
Index("ix_jobs_finished", jobs.c.state, jobs.c.finished_at)
Index("ix_jobs_created", jobs.c.created_at)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("data", Text, nullable=False),
    Column("node", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    PrimaryKeyConstraint("job_id", "stage", name="pk_checkpoints"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32)),
    Column("kind", String(64), nullable=False),
    Column("target", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("headers", Text, nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Double, nullable=False),
    Column("state", String(16), nullable=False),
    Column("last_error", Text),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    # v3
    Column("claimed_by", Text),
    Column("claim_expires_at", Double),
    Column("revision", Integer, nullable=False, default=0, server_default="0"),
    Column("progress", Boolean, nullable=False, default=False, server_default=false()),
    Column("generation", Integer, nullable=False, default=0, server_default="0"),
)
Index("ux_outbox_idempotency", outbox.c.idempotency_key, unique=True)
Index("ix_outbox_due", outbox.c.state, outbox.c.next_attempt_at)
Index("ix_outbox_job", outbox.c.job_id)
Index("ix_outbox_job_state", outbox.c.job_id, outbox.c.state)

PIN_PENDING = "pending"
PIN_DONE = "done"
PIN_EXPIRED = "expired"
PIN_STATES: tuple[str, ...] = (PIN_PENDING, PIN_DONE, PIN_EXPIRED)

pins = Table(
    "pins",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cid", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("folder", Text),
    Column("node", Text),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Double, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("last_error", Text),
    Column("claimed_by", Text),
    Column("claim_expires_at", Double),
)
Index("ux_pins_cid_target", pins.c.cid, pins.c.target, unique=True)
Index("ix_pins_due", pins.c.status, pins.c.next_attempt_at)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", Double, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[jobs, checkpoints, outbox], checkfirst=True)


def _add_interruptions_v2(conn: Connection) -> None:
    columns = {c["name"] for c in inspect(conn).get_columns("jobs")}
    if "interruptions" not in columns:  # a v1 database; fresh ones got it from create_all
        conn.execute(text("ALTER TABLE jobs ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0"))


def _add_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    """``ALTER TABLE … ADD COLUMN`` for each column the table does not have yet (a database
    made by an older version; fresh ones got every column from ``create_all``)."""
    have = {c["name"] for c in inspect(conn).get_columns(table)}
    for name, ddl in columns.items():
        if name not in have:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))


def _claims_and_pins_v3(conn: Connection) -> None:
    metadata.create_all(conn, tables=[jobs, checkpoints, outbox, pins], checkfirst=True)
    false_ = "false" if conn.dialect.name == "postgresql" else "0"
    _add_columns(conn, "jobs", {"generation": "INTEGER NOT NULL DEFAULT 0"})
    _add_columns(
        conn,
        "outbox",
        {
            "claimed_by": "TEXT",
            "claim_expires_at": "DOUBLE PRECISION",
            "revision": "INTEGER NOT NULL DEFAULT 0",
            "progress": f"BOOLEAN NOT NULL DEFAULT {false_}",
            "generation": "INTEGER NOT NULL DEFAULT 0",
        },
    )
    for index in outbox.indexes:
        if index.name == "ix_outbox_job_state":
            index.create(conn, checkfirst=True)


#: Every migration, in order. Append only; never edit one that has shipped.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs, checkpoints, outbox", _create_v1),
    Migration(2, "jobs.interruptions: crashes counted per job", _add_interruptions_v2),
    Migration(
        3,
        "outbox claims and revisions, jobs.generation, pending pins in the store",
        _claims_and_pins_v3,
    ),
)

#: The schema version this code writes and reads.
SCHEMA_VERSION = MIGRATIONS[-1].version


__all__ = [
    "ACTIVE_STATES",
    "FINISHED_STATES",
    "MIGRATIONS",
    "OUTBOX_DELIVERED",
    "OUTBOX_GIVEN_UP",
    "OUTBOX_PENDING",
    "OUTBOX_STATES",
    "PIN_DONE",
    "PIN_EXPIRED",
    "PIN_PENDING",
    "PIN_STATES",
    "SCHEMA_VERSION",
    "Migration",
    "checkpoints",
    "jobs",
    "metadata",
    "outbox",
    "pins",
    "schema_version",
]
