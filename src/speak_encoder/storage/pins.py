"""Pending pins that are never lost: a small persistent queue in SQLite.

A pin or upload that fails (node down, remote service unreachable, not pinned in time) is
recorded here and retried with exponential back-off until it succeeds or grows older than
``PIN_MAX_AGE_HOURS``. The database is ``DATA_DIR/pins.sqlite3`` (stdlib ``sqlite3``, WAL
journal, one short transaction per change: a ``kill -9`` at any moment loses nothing). A later
issue moves the job store to SQLAlchemy; this table is deliberately simple so it can move along:

``pending_pins``
    ``id``               integer primary key
    ``cid``              the root CID to persist (text, as the network writes it)
    ``target``           publish target name (``local``, ``hotnode``, ``supernode``, ``cluster``,
                         ``pinning_service``); ``(cid, target)`` is unique
    ``folder``           local folder to upload from when the target needs the bytes, or NULL
    ``status``           ``pending`` → ``done`` (verified pinned) or ``expired`` (given up)
    ``attempts``         failed attempts so far (the first failure, at publish time, counts)
    ``created_at``       unix seconds when first queued (the max age counts from here)
    ``next_attempt_at``  unix seconds of the next due attempt
    ``updated_at``       unix seconds of the last change
    ``last_error``       message of the last failure

Back-off: ``min(PIN_RETRY_MAX, PIN_RETRY_BASE × 2^(attempts-1))`` after each failure.
The retrying itself (which needs the targets) is
:func:`speak_encoder.storage.targets.retry_pending`; :func:`retry_due` here is the generic loop.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from speak_encoder.config import Settings
from speak_encoder.errors import SpeakEncoderError

#: File name of the queue inside DATA_DIR.
PINS_DB_NAME = "pins.sqlite3"

PENDING = "pending"
DONE = "done"
EXPIRED = "expired"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_pins (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    cid             TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    folder          TEXT,
    status          TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL    NOT NULL,
    next_attempt_at REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    last_error      TEXT,
    UNIQUE (cid, target)
);
CREATE INDEX IF NOT EXISTS pending_pins_due ON pending_pins (status, next_attempt_at);
"""


@dataclass(frozen=True, slots=True)
class PendingPin:
    """One row of the queue."""

    id: int
    cid: str
    target: str
    folder: str | None
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    updated_at: float
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RetrySummary:
    """What one retry round did."""

    done: list[PendingPin]
    failed: list[PendingPin]
    expired: list[PendingPin]

    @property
    def attempted(self) -> int:
        return len(self.done) + len(self.failed) + len(self.expired)


class PinQueue:
    """The persistent queue (one SQLite connection; use from one thread)."""

    def __init__(
        self,
        path: Path,
        *,
        retry_base: float = 30.0,
        retry_max: float = 3600.0,
        max_age_s: float = 7 * 24 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.max_age_s = max_age_s
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def from_settings(cls, settings: Settings) -> PinQueue:
        return cls(
            settings.data_dir / PINS_DB_NAME,
            retry_base=settings.pin_retry_base,
            retry_max=settings.pin_retry_max,
            max_age_s=settings.pin_max_age_hours * 3600.0,
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PinQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- reading -----------------------------------------------------------------------------

    @staticmethod
    def _row(row: sqlite3.Row) -> PendingPin:
        return PendingPin(**{key: row[key] for key in row.keys()})  # noqa: SIM118

    def get(self, pin_id: int) -> PendingPin | None:
        row = self._db.execute("SELECT * FROM pending_pins WHERE id = ?", (pin_id,)).fetchone()
        return None if row is None else self._row(row)

    def entries(self, status: str | None = PENDING) -> list[PendingPin]:
        """Entries with ``status`` (all when ``None``), oldest first."""
        if status is None:
            rows = self._db.execute("SELECT * FROM pending_pins ORDER BY id")
        else:
            rows = self._db.execute(
                "SELECT * FROM pending_pins WHERE status = ? ORDER BY id", (status,)
            )
        return [self._row(row) for row in rows]

    def due(self, now: float | None = None) -> list[PendingPin]:
        """Pending entries whose next attempt is due."""
        now = self.clock() if now is None else now
        rows = self._db.execute(
            "SELECT * FROM pending_pins WHERE status = ? AND next_attempt_at <= ? ORDER BY id",
            (PENDING, now),
        )
        return [self._row(row) for row in rows]

    # --- writing -----------------------------------------------------------------------------

    def _backoff(self, attempts: int) -> float:
        return float(min(self.retry_max, self.retry_base * 2 ** max(0, attempts - 1)))

    def add(self, cid: str, target: str, folder: Path | None, error: str) -> PendingPin:
        """Queue a failed pin (one failure counted). An existing entry for (cid, target) is
        re-armed (pending again) and keeps its age."""
        now = self.clock()
        folder_text = str(folder) if folder is not None else None
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT * FROM pending_pins WHERE cid = ? AND target = ?", (cid, target)
            ).fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO pending_pins (cid, target, folder, status, attempts, created_at,"
                    " next_attempt_at, updated_at, last_error) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)",
                    (cid, target, folder_text, PENDING, now, now + self._backoff(1), now, error),
                )
            else:
                attempts = (row["attempts"] if row["status"] == PENDING else 0) + 1
                created = row["created_at"] if row["status"] == PENDING else now
                self._db.execute(
                    "UPDATE pending_pins SET folder = COALESCE(?, folder), status = ?,"
                    " attempts = ?, created_at = ?, next_attempt_at = ?, updated_at = ?,"
                    " last_error = ? WHERE id = ?",
                    (
                        folder_text, PENDING, attempts, created,
                        now + self._backoff(attempts), now, error, row["id"],
                    ),
                )  # fmt: skip
        entry = self.find(cid, target)
        assert entry is not None
        return entry

    def find(self, cid: str, target: str) -> PendingPin | None:
        row = self._db.execute(
            "SELECT * FROM pending_pins WHERE cid = ? AND target = ?", (cid, target)
        ).fetchone()
        return None if row is None else self._row(row)

    def mark_done(self, pin_id: int) -> None:
        now = self.clock()
        with self._db:
            self._db.execute(
                "UPDATE pending_pins SET status = ?, updated_at = ?, next_attempt_at = ?"
                " WHERE id = ?",
                (DONE, now, now, pin_id),
            )

    def mark_failed(self, pin_id: int, error: str) -> PendingPin:
        """Count a failed attempt: back off, or expire when older than the max age."""
        now = self.clock()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT * FROM pending_pins WHERE id = ?", (pin_id,)).fetchone()
            if row is None:
                raise KeyError(pin_id)
            attempts = row["attempts"] + 1
            expired = now - row["created_at"] >= self.max_age_s
            self._db.execute(
                "UPDATE pending_pins SET status = ?, attempts = ?, next_attempt_at = ?,"
                " updated_at = ?, last_error = ? WHERE id = ?",
                (
                    EXPIRED if expired else PENDING, attempts,
                    now + self._backoff(attempts), now, error, pin_id,
                ),
            )  # fmt: skip
        entry = self.get(pin_id)
        assert entry is not None
        return entry

    def rearm(self, pin_id: int) -> None:
        """Make an entry due now (``pins retry --force``)."""
        with self._db:
            self._db.execute(
                "UPDATE pending_pins SET next_attempt_at = ? WHERE id = ? AND status = ?",
                (self.clock(), pin_id, PENDING),
            )


#: One attempt at persisting a queued pin; raises a SpeakEncoderError when it fails.
Attempt = Callable[[PendingPin], Awaitable[None]]


async def retry_due(queue: PinQueue, attempt: Attempt, *, force: bool = False) -> RetrySummary:
    """Run ``attempt`` for every due entry (every pending one with ``force``)."""
    entries = queue.entries(PENDING) if force else queue.due()
    done: list[PendingPin] = []
    failed: list[PendingPin] = []
    expired: list[PendingPin] = []
    for entry in entries:
        try:
            await attempt(entry)
        except SpeakEncoderError as exc:
            updated = queue.mark_failed(entry.id, exc.message)
            (expired if updated.status == EXPIRED else failed).append(updated)
            continue
        queue.mark_done(entry.id)
        done.append(queue.get(entry.id) or entry)
    return RetrySummary(done, failed, expired)
