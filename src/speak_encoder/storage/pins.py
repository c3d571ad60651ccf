"""Pending pins that are never lost: what a pin queue is, and the loop that retries it.

A pin or upload that fails (node down, remote service unreachable, not pinned in time) is
queued and retried with exponential back-off until it succeeds or grows older than
``PIN_MAX_AGE_HOURS``. The queue lives in the job store (the one source of truth, shared by a
fleet on PostgreSQL): :class:`speak_encoder.node.store.pins.StorePinQueue` implements the
:class:`PinQueue` protocol below; storage code only ever sees the protocol, so this layer
stays below the node.

An entry (:class:`PendingPin`): ``cid`` (the root CID to persist), ``target`` (publish target
name: ``local``, ``hotnode``, ``supernode``, ``cluster``, ``pinning_service``; unique with
``cid``), ``folder`` (local folder to upload from when the target needs the bytes, or
``None``) and the ``node`` that holds it, ``status`` (``pending`` → ``done`` verified pinned, or
``expired`` given up), ``attempts`` (failed attempts; the first failure, at publish time,
counts), ``created_at`` (the max age counts from here), ``next_attempt_at``, ``last_error``.

Back-off: ``min(PIN_RETRY_MAX, PIN_RETRY_BASE × 2^(attempts-1))`` after each failure.
The retrying itself (which needs the targets) is
:func:`speak_encoder.storage.targets.retry_pending`; :func:`retry_due` here is the generic loop:
it claims the due entries (so two nodes of a fleet never retry the same one at once) and
records each outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from speak_encoder.errors import SpeakEncoderError

#: The file of the pin queue of versions before it moved into the job store (imported once).
PINS_DB_NAME = "pins.sqlite3"

PENDING = "pending"
DONE = "done"
EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class PendingPin:
    """One entry of the queue."""

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
    node: str | None = None

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


class PinQueue(Protocol):
    """The persistent queue of pins to retry (implemented by the job store)."""

    #: The node using the queue (entries it adds hold folders of this node).
    node: str

    def add(self, cid: str, target: str, folder: Path | None, error: str) -> PendingPin:
        """Queue a failed pin (one failure counted); an existing entry for (cid, target) is
        re-armed and keeps its age."""
        ...

    def find(self, cid: str, target: str) -> PendingPin | None: ...

    def get(self, pin_id: int) -> PendingPin | None: ...

    def entries(self, status: str | None = PENDING) -> list[PendingPin]:
        """Entries with ``status`` (all when ``None``), oldest first."""
        ...

    def claim_due(self, *, force: bool = False) -> list[PendingPin]:
        """Take the due pending entries (every pending one with ``force``) under a lease."""
        ...

    def renew(self, ids: list[int]) -> None:
        """Keep the claim on ``ids`` (entries of a pass still running)."""
        ...

    def mark_done(self, pin_id: int) -> None: ...

    def mark_failed(self, pin_id: int, error: str) -> PendingPin:
        """Count a failed attempt: back off, or expire when older than the max age."""
        ...

    def rearm(self, pin_id: int) -> None:
        """Make a pending entry due now."""
        ...


#: One attempt at persisting a queued pin; raises a SpeakEncoderError when it fails.
Attempt = Callable[[PendingPin], Awaitable[None]]


#: Seconds between two renewals of a running pass's claims (well inside the store's lease).
CLAIM_RENEW_S = 10.0


async def retry_due(queue: PinQueue, attempt: Attempt, *, force: bool = False) -> RetrySummary:
    """Run ``attempt`` for every due entry this node could claim (every pending one with
    ``force``) and record each outcome (the queue's calls run in a worker thread); the claims
    on the entries not yet recorded are renewed while the pass runs."""
    done: list[PendingPin] = []
    failed: list[PendingPin] = []
    expired: list[PendingPin] = []
    entries = await asyncio.to_thread(queue.claim_due, force=force)
    left = {entry.id for entry in entries}

    async def renew() -> None:
        while True:
            await asyncio.sleep(CLAIM_RENEW_S)
            await asyncio.to_thread(queue.renew, sorted(left))

    renewer = asyncio.ensure_future(renew()) if entries else None
    try:
        for entry in entries:
            try:
                await attempt(entry)
            except SpeakEncoderError as exc:
                updated = await asyncio.to_thread(queue.mark_failed, entry.id, exc.message)
                (expired if updated.status == EXPIRED else failed).append(updated)
                continue
            finally:
                left.discard(entry.id)
            await asyncio.to_thread(queue.mark_done, entry.id)
            now: PendingPin | None = await asyncio.to_thread(queue.get, entry.id)
            done.append(now or entry)
    finally:
        if renewer is not None:
            renewer.cancel()
    return RetrySummary(done, failed, expired)


__all__ = [
    "DONE",
    "EXPIRED",
    "PENDING",
    "PINS_DB_NAME",
    "Attempt",
    "PendingPin",
    "PinQueue",
    "RetrySummary",
    "retry_due",
]
