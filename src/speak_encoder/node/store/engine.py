"""The job store's database: URL, engine, transactions, error translation, migrations.

:class:`StoreBase` is what every part of the store (jobs, outbox, pins) stands on:

* ``_write()`` — one write transaction, committed on success. On SQLite it is ``BEGIN
  IMMEDIATE`` (the write lock is taken up front, so a read-then-write cannot interleave with
  another process's); on PostgreSQL a plain transaction in which the callers lock rows (``FOR
  UPDATE [SKIP LOCKED]``) or take an advisory lock (``_pg_lock``).
* ``_read()`` — a read transaction (SQLite: a deferred ``BEGIN``).
* every driver error that means "the database cannot be reached" becomes
  :class:`~speak_encoder.errors.StoreUnavailable`, with the password scrubbed from the message.

Both are private to the store package: readers outside it ask the store through its methods.
The URL is a secret (it may hold a password): it is never logged and ``repr()`` shows the
dialect and host only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError

from speak_encoder.errors import ConfigError, StoreUnavailable
from speak_encoder.node.store.schema import MIGRATIONS, Migration, schema_version

log = logging.getLogger(__name__)

#: Seconds a SQLite connection waits for the write lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0
#: Seconds to establish a PostgreSQL connection (unless the URL sets ``connect_timeout``).
PG_CONNECT_TIMEOUT_S = 10
#: Attempts of a migration that meets a locked SQLite file (see :meth:`StoreBase.migrate`).
MIGRATE_LOCK_RETRIES = 5
#: PostgreSQL advisory lock keys (any constants unique to this application).
PG_LOCK_MIGRATE = 0x5E_0C_0001
PG_LOCK_SUBMIT = 0x5E_0C_0002
#: Connection option that makes the SQLite ``begin`` hook emit a deferred (read) BEGIN.
_READ_ONLY = "speak_encoder_read"


def dumps(value: Any) -> str:
    """JSON as the store writes it (sorted keys: both databases compare it the same way)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def now_or(now: float | None) -> float:
    return time.time() if now is None else now


class StoreBase:
    """Engine, transactions and migrations (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self._url = parse_url(url)
        self._engine = make_engine(self._url)

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
            version = schema_version_of(conn)
            conn.rollback()
        return version

    def _apply(self, conn: Connection, migration: Migration) -> None:
        self._pg_lock(conn, PG_LOCK_MIGRATE)
        schema_version.create(conn, checkfirst=True)
        if schema_version_of(conn) >= migration.version:
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


def schema_version_of(conn: Connection) -> int:
    return int(
        conn.execute(select(func.coalesce(func.max(schema_version.c.version), 0))).scalar_one()
    )


# --- engine ---------------------------------------------------------------------------------


def parse_url(text: str) -> URL:
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


def make_engine(url: URL) -> Engine:
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


__all__ = ["StoreBase", "dumps", "loads", "make_engine", "now_or", "parse_url"]
