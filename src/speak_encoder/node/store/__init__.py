"""The job store: the node's one source of truth, in SQLite (one node) or PostgreSQL (a fleet).

One synchronous, thread-safe object (SQLAlchemy 2 Core) used by the scheduler (through
``asyncio.to_thread``), the CLI, the job sources and the dashboard. Nothing important lives
only in memory: jobs and their stage checkpoints, the reports still to deliver (the outbox) and
the pins still to retry are all here, so a ``kill -9`` at any moment loses none of them.

By concern:

=================  ==============================================================
``schema``         the tables and their versioned migrations
``engine``         URL, engine, transactions, error translation, migrations runner
``jobs``           jobs and checkpoints: offers, claims and leases, finishing, reads
``job_*``          ``jobs``'s parts by concern (see ``jobs``)
``outbox``         reports delivered at least once, in order per job, by one node of a fleet
``pins``           pending pins (and the import of the old per-node pins file)
=================  ==============================================================

Readers outside the package use :class:`JobStore`'s methods; nobody else writes SQL against
its tables.
"""

from __future__ import annotations

from speak_encoder.config import SQLITE_NAME, Settings
from speak_encoder.node.store.job_offers import QUEUE_FULL_RETRY_AFTER_S
from speak_encoder.node.store.jobs import JobQueries
from speak_encoder.node.store.outbox import OutboxQueries
from speak_encoder.node.store.pins import PinQueries, StorePinQueue
from speak_encoder.private_files import ensure_private_dir, private_file
from speak_encoder.storage.pins import PINS_DB_NAME


class JobStore(JobQueries, OutboxQueries, PinQueries):
    """Jobs, checkpoints, the outbox and pending pins (see the module docstring)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        """The store of ``settings`` (``DATABASE_URL``, else SQLite in ``DATA_DIR``), not yet
        migrated (read-only commands use it as it is)."""
        url = settings.store_url
        if settings.database_url is None or not settings.database_url.get_secret_value():
            # 0600 before SQLite opens it (its -wal/-shm files take the same mode): it holds
            # each job's webhook api_key.
            private_file(ensure_private_dir(settings.data_dir) / SQLITE_NAME)
        return cls(url)

    @classmethod
    def open(cls, settings: Settings) -> JobStore:
        """The store of ``settings``, migrated, with an old per-node pins file taken over."""
        store = cls.from_settings(settings)
        store.migrate()
        store.import_pins_file(settings.data_dir / PINS_DB_NAME, node=settings.node_name)
        return store

    def pin_queue(self, settings: Settings) -> StorePinQueue:
        """The pin queue this node hands to the publish targets."""
        return StorePinQueue(
            self,
            node=settings.node_name,
            retry_base=settings.pin_retry_base,
            retry_max=settings.pin_retry_max,
            max_age_s=settings.pin_max_age_hours * 3600.0,
        )


__all__ = ["QUEUE_FULL_RETRY_AFTER_S", "JobStore"]
