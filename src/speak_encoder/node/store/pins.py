"""Pending pins in the job store: one queue for the node, or for a whole fleet on PostgreSQL.

:class:`PinQueries` holds the SQL; :class:`StorePinQueue` is the
:class:`~speak_encoder.storage.pins.PinQueue` a node hands to the publish targets (it knows the
node's name and the back-off settings). A retry claims its entries under a lease (``FOR UPDATE
SKIP LOCKED`` / ``BEGIN IMMEDIATE``, a short lease renewed while the pass runs), so two nodes
never retry one entry at once, and whichever node is alive retries them all — those a dead node
held included, ``PIN_CLAIM_S`` after it died: a node that holds an entry's folder uploads it
again, any other node pins the CID by reference where the target allows it.

Before the pins moved into the store each node kept them in ``DATA_DIR/pins.sqlite3``;
:meth:`PinQueries.import_pins_file` takes such a file over once (entries already in the store
win) and renames it ``pins.sqlite3.imported``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import sqlite

from speak_encoder.backoff import Backoff
from speak_encoder.node.store.engine import StoreBase, now_or
from speak_encoder.node.store.schema import PIN_DONE, PIN_EXPIRED, PIN_PENDING, PIN_STATES, pins
from speak_encoder.storage.pins import PendingPin

log = logging.getLogger(__name__)

#: Seconds a node holds the entries it is retrying; renewed while a retry pass runs (so an
#: upload may take longer), so a node that dies holds them this long at most.
PIN_CLAIM_S = 30.0
#: Suffix the old per-node pins file gets once imported.
IMPORTED_SUFFIX = ".imported"
#: Columns of the old ``pending_pins`` table that the store keeps.
_LEGACY_COLUMNS = (
    "cid", "target", "folder", "status", "attempts", "created_at", "next_attempt_at",
    "updated_at", "last_error",
)  # fmt: skip


def _pin(row: Any) -> PendingPin:
    return PendingPin(
        id=int(row["id"]),
        cid=row["cid"],
        target=row["target"],
        folder=row["folder"],
        status=row["status"],
        attempts=int(row["attempts"]),
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        updated_at=row["updated_at"],
        last_error=row["last_error"],
        node=row["node"],
    )


def _backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds until the next try of a pin after ``attempts`` (a stored due time: no jitter)."""
    return Backoff(base, cap, jitter=0.0).ceiling(attempts)


class PinQueries(StoreBase):
    """The pending-pin table's queries (see the module docstring)."""

    def pin_get(self, pin_id: int) -> PendingPin | None:
        with self._read() as conn:
            row = conn.execute(select(pins).where(pins.c.id == pin_id)).mappings().first()
            return None if row is None else _pin(row)

    def pin_find(self, cid: str, target: str) -> PendingPin | None:
        with self._read() as conn:
            return _find(conn, cid, target)

    def pin_entries(self, status: str | None = PIN_PENDING) -> list[PendingPin]:
        query = select(pins).order_by(pins.c.id)
        if status is not None:
            query = query.where(pins.c.status == status)
        with self._read() as conn:
            return [_pin(row) for row in conn.execute(query).mappings()]

    def pin_counts(self) -> dict[str, int]:
        """Entries by status (zeros included)."""
        from sqlalchemy import func

        result = dict.fromkeys(PIN_STATES, 0)
        with self._read() as conn:
            for status, n in conn.execute(
                select(pins.c.status, func.count()).group_by(pins.c.status)
            ):
                result[str(status)] = int(n)
        return result

    def pin_add(
        self,
        cid: str,
        target: str,
        *,
        folder: str | None,
        node: str,
        error: str,
        retry_base: float,
        retry_max: float,
        now: float | None = None,
    ) -> PendingPin:
        """Queue a failed pin (one failure counted); an existing entry is re-armed (pending
        again, its age kept while it was pending)."""
        at = now_or(now)
        with self._write() as conn:
            row = _find(conn, cid, target, lock=True)
            if row is None:
                conn.execute(
                    pins.insert().values(
                        cid=cid, target=target, folder=folder, node=node, status=PIN_PENDING,
                        attempts=1, created_at=at, next_attempt_at=at + _backoff(1, retry_base,
                        retry_max), updated_at=at, last_error=error,
                    )
                )  # fmt: skip
            else:
                pending = row.status == PIN_PENDING
                attempts = (row.attempts if pending else 0) + 1
                conn.execute(
                    update(pins)
                    .where(pins.c.id == row.id)
                    .values(
                        folder=folder if folder is not None else row.folder,
                        node=node if folder is not None else row.node,
                        status=PIN_PENDING,
                        attempts=attempts,
                        created_at=row.created_at if pending else at,
                        next_attempt_at=at + _backoff(attempts, retry_base, retry_max),
                        updated_at=at,
                        last_error=error,
                        claimed_by=None,
                        claim_expires_at=None,
                    )
                )
            found = _find(conn, cid, target)
            assert found is not None
            return found

    def pin_claim_due(
        self, owner: str, *, force: bool = False, now: float | None = None
    ) -> list[PendingPin]:
        """Claim the due pending entries (every pending one with ``force``) not held by a live
        claim of another node."""
        at = now_or(now)
        free = pins.c.claimed_by.is_(None) | (pins.c.claim_expires_at < at)
        query = select(pins.c.id).where(pins.c.status == PIN_PENDING, free).order_by(pins.c.id)
        if not force:
            query = query.where(pins.c.next_attempt_at <= at)
        with self._write() as conn:
            ids = list(conn.execute(query.with_for_update(skip_locked=True)).scalars())
            if not ids:
                return []
            conn.execute(
                update(pins)
                .where(pins.c.id.in_(ids))
                .values(claimed_by=owner, claim_expires_at=at + PIN_CLAIM_S)
            )
            rows = conn.execute(select(pins).where(pins.c.id.in_(ids)).order_by(pins.c.id))
            return [_pin(row) for row in rows.mappings()]

    def pin_renew(self, ids: list[int], owner: str, *, now: float | None = None) -> None:
        """Extend ``owner``'s claim on ``ids`` (a retry pass still working on them)."""
        if not ids:
            return
        with self._write() as conn:
            conn.execute(
                update(pins)
                .where(pins.c.id.in_(ids), pins.c.claimed_by == owner)
                .values(claim_expires_at=now_or(now) + PIN_CLAIM_S)
            )

    def pin_done(self, pin_id: int, *, now: float | None = None) -> None:
        at = now_or(now)
        with self._write() as conn:
            conn.execute(
                update(pins)
                .where(pins.c.id == pin_id)
                .values(
                    status=PIN_DONE, updated_at=at, next_attempt_at=at, claimed_by=None,
                    claim_expires_at=None,
                )
            )  # fmt: skip

    def pin_failed(
        self,
        pin_id: int,
        error: str,
        *,
        retry_base: float,
        retry_max: float,
        max_age_s: float,
        now: float | None = None,
    ) -> PendingPin:
        """Count a failed attempt: back off, or expire when older than ``max_age_s``."""
        at = now_or(now)
        with self._write() as conn:
            row = (
                conn.execute(select(pins).where(pins.c.id == pin_id).with_for_update())
                .mappings()
                .first()
            )
            if row is None:
                raise KeyError(pin_id)
            attempts = int(row["attempts"]) + 1
            expired = at - row["created_at"] >= max_age_s
            conn.execute(
                update(pins)
                .where(pins.c.id == pin_id)
                .values(
                    status=PIN_EXPIRED if expired else PIN_PENDING,
                    attempts=attempts,
                    next_attempt_at=at + _backoff(attempts, retry_base, retry_max),
                    updated_at=at,
                    last_error=error,
                    claimed_by=None,
                    claim_expires_at=None,
                )
            )
            found = conn.execute(select(pins).where(pins.c.id == pin_id)).mappings().first()
            assert found is not None
            return _pin(found)

    def pin_rearm(self, pin_id: int, *, now: float | None = None) -> None:
        with self._write() as conn:
            conn.execute(
                update(pins)
                .where(pins.c.id == pin_id, pins.c.status == PIN_PENDING)
                .values(next_attempt_at=now_or(now))
            )

    def import_pins_file(self, path: Path, *, node: str) -> int:
        """Take over an old per-node ``pins.sqlite3`` (once); returns the entries imported.

        Entries the store already has for the same (cid, target) are kept as they are. The
        file is renamed ``…imported`` afterwards, so the next start does nothing.
        """
        if not path.is_file():
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as old:
            old.row_factory = sqlite3.Row
            try:
                rows = [dict(r) for r in old.execute("SELECT * FROM pending_pins ORDER BY id")]
            except sqlite3.DatabaseError as exc:
                log.warning("📌 %s is not a pins file (%s): left as it is", path.name, exc)
                return 0
        imported = 0
        with self._write() as conn:
            for row in rows:
                values = {key: row.get(key) for key in _LEGACY_COLUMNS}
                values["node"] = node if row.get("folder") else None
                imported += _insert_if_new(conn, self.dialect, values)
        path.rename(path.with_name(path.name + IMPORTED_SUFFIX))
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                path.with_name(path.name + suffix).unlink()
        if imported:
            log.info("📌 %d pending pin(s) taken over from %s into the job store", imported,
                     path.name)  # fmt: skip
        return imported


class StorePinQueue:
    """The :class:`~speak_encoder.storage.pins.PinQueue` of one node, kept in the job store."""

    def __init__(
        self,
        store: PinQueries,
        *,
        node: str,
        retry_base: float = 30.0,
        retry_max: float = 3600.0,
        max_age_s: float = 7 * 24 * 3600.0,
        clock: Any = time.time,
    ) -> None:
        self.store = store
        self.node = node
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.max_age_s = max_age_s
        self.clock = clock

    def add(self, cid: str, target: str, folder: Path | None, error: str) -> PendingPin:
        return self.store.pin_add(
            cid, target, folder=None if folder is None else str(folder), node=self.node,
            error=error, retry_base=self.retry_base, retry_max=self.retry_max, now=self.clock(),
        )  # fmt: skip

    def find(self, cid: str, target: str) -> PendingPin | None:
        return self.store.pin_find(cid, target)

    def get(self, pin_id: int) -> PendingPin | None:
        return self.store.pin_get(pin_id)

    def entries(self, status: str | None = PIN_PENDING) -> list[PendingPin]:
        return self.store.pin_entries(status)

    def claim_due(self, *, force: bool = False) -> list[PendingPin]:
        return self.store.pin_claim_due(self.node, force=force, now=self.clock())

    def renew(self, ids: list[int]) -> None:
        self.store.pin_renew(ids, self.node, now=self.clock())

    def mark_done(self, pin_id: int) -> None:
        self.store.pin_done(pin_id, now=self.clock())

    def mark_failed(self, pin_id: int, error: str) -> PendingPin:
        return self.store.pin_failed(
            pin_id, error, retry_base=self.retry_base, retry_max=self.retry_max,
            max_age_s=self.max_age_s, now=self.clock(),
        )  # fmt: skip

    def rearm(self, pin_id: int) -> None:
        self.store.pin_rearm(pin_id, now=self.clock())


def _find(conn: Connection, cid: str, target: str, *, lock: bool = False) -> PendingPin | None:
    query = select(pins).where(pins.c.cid == cid, pins.c.target == target)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else _pin(row)


def _insert_if_new(conn: Connection, dialect: str, values: dict[str, Any]) -> int:
    keys = [pins.c.cid, pins.c.target]
    stmt: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql as pg

        stmt = pg.insert(pins).values(**values).on_conflict_do_nothing(index_elements=keys)
    else:
        stmt = sqlite.insert(pins).values(**values).on_conflict_do_nothing(index_elements=keys)
    return 1 if conn.execute(stmt.returning(pins.c.id)).first() is not None else 0


__all__ = ["IMPORTED_SUFFIX", "PinQueries", "StorePinQueue"]
