"""The pending-pin queue in the job store (SQLite and PostgreSQL): back-off, max age, restart
survival, claims shared by a fleet, the retry loop, and the import of an old pins file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from speak_encoder.errors import NetworkError
from speak_encoder.node.store import JobStore
from speak_encoder.node.store.pins import IMPORTED_SUFFIX, StorePinQueue
from speak_encoder.storage.pins import DONE, EXPIRED, PENDING, PendingPin, retry_due

CID = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def open_queue(store: JobStore, clock: Clock, node: str = "node-a") -> StorePinQueue:
    return StorePinQueue(store, node=node, retry_base=10, retry_max=60, max_age_s=3600, clock=clock)


def due(queue: StorePinQueue) -> list[PendingPin]:
    """What a retry would take now (claims released again so the test can look twice)."""
    taken = queue.claim_due()
    for entry in taken:
        queue.store.pin_rearm(entry.id, now=entry.next_attempt_at)
    return taken


def test_backoff_doubles_up_to_the_maximum(
    job_store: JobStore, tmp_path: Path, clock: Clock
) -> None:
    queue = open_queue(job_store, clock)
    entry = queue.add(CID, "cluster", tmp_path, "connection refused")
    assert entry.attempts == 1 and entry.node == "node-a"
    assert entry.next_attempt_at == clock.now + 10
    assert queue.claim_due() == []
    waits = []
    for _ in range(5):
        entry = queue.mark_failed(entry.id, "still down")
        waits.append(entry.next_attempt_at - clock.now)
    assert waits == [20, 40, 60, 60, 60]
    assert entry.last_error == "still down"


def test_entries_survive_a_restart(store_url: str, tmp_path: Path, clock: Clock) -> None:
    store = JobStore(store_url)
    store.migrate()
    queue = open_queue(store, clock)
    queue.add(CID, "local", tmp_path / "folder", "node down")
    queue.add(CID, "cluster", None, "cluster down")
    store.close()
    reopened = JobStore(store_url)
    try:
        again = open_queue(reopened, clock)
        entries = again.entries()
        assert [(e.target, e.status) for e in entries] == [
            ("local", PENDING), ("cluster", PENDING),
        ]  # fmt: skip
        assert entries[0].folder == str(tmp_path / "folder")
        clock.now += 11
        assert len(again.claim_due()) == 2
    finally:
        reopened.close()


def test_requeue_keeps_age_and_one_row(job_store: JobStore, tmp_path: Path, clock: Clock) -> None:
    queue = open_queue(job_store, clock)
    first = queue.add(CID, "local", None, "a")
    clock.now += 100
    again = queue.add(CID, "local", tmp_path, "b")
    assert again.id == first.id
    assert again.created_at == first.created_at
    assert again.attempts == 2
    assert again.folder == str(tmp_path)
    assert len(queue.entries(None)) == 1


def test_retry_due_marks_done_failed_and_expired(job_store: JobStore, clock: Clock) -> None:
    queue = open_queue(job_store, clock)
    old = queue.add("QmOld", "local", None, "x")
    clock.now += 3599
    queue.mark_failed(old.id, "y")  # still young enough
    ok = queue.add("QmOk", "local", None, "x")
    bad = queue.add("QmBad", "local", None, "x")

    async def attempt(entry: PendingPin) -> None:
        if entry.cid != "QmOk":
            raise NetworkError(f"{entry.cid} down")

    clock.now += 100
    summary = asyncio.run(retry_due(queue, attempt))
    assert [p.cid for p in summary.done] == ["QmOk"]
    assert [p.cid for p in summary.failed] == ["QmBad"]
    assert [p.cid for p in summary.expired] == ["QmOld"]
    assert queue.get(ok.id).status == DONE  # type: ignore[union-attr]
    assert queue.get(bad.id).status == PENDING  # type: ignore[union-attr]
    assert queue.get(old.id).status == EXPIRED  # type: ignore[union-attr]
    clock.now += 10_000
    assert due(queue) == [queue.get(bad.id)]


def test_force_ignores_the_backoff(job_store: JobStore, clock: Clock) -> None:
    queue = open_queue(job_store, clock)
    queue.add(CID, "local", None, "x")
    seen: list[str] = []

    async def attempt(entry: PendingPin) -> None:
        seen.append(entry.cid)

    assert asyncio.run(retry_due(queue, attempt)).attempted == 0
    assert asyncio.run(retry_due(queue, attempt, force=True)).attempted == 1
    assert seen == [CID]


def test_two_nodes_never_retry_one_entry_at_once(job_store: JobStore, clock: Clock) -> None:
    """A claim is a lease: the second node of a fleet skips what the first is retrying, and
    takes it over once the first node's lease has expired (it died mid-retry)."""
    a, b = open_queue(job_store, clock, "node-a"), open_queue(job_store, clock, "node-b")
    entry = a.add(CID, "cluster", None, "down")
    clock.now += 11
    assert [p.id for p in a.claim_due()] == [entry.id]
    assert b.claim_due() == [] and b.claim_due(force=True) == []
    clock.now += 20
    a.renew([entry.id])  # node-a's pass is still at work on it
    clock.now += 20
    assert b.claim_due() == []
    clock.now += 31  # node-a died holding it
    assert [p.id for p in b.claim_due()] == [entry.id]
    b.mark_done(entry.id)
    clock.now += 10_000
    assert a.claim_due(force=True) == [] and b.get(entry.id).status == DONE  # type: ignore[union-attr]


def test_a_node_uploads_only_the_folders_it_holds(
    job_store: JobStore, tmp_path: Path, clock: Clock
) -> None:
    """Whichever node retries: the folder is used by the node that holds it; another node of
    the fleet gets the entry too (and pins the CID by reference)."""
    from speak_encoder.config import load_settings
    from speak_encoder.storage.targets import retry_pending

    folder = tmp_path / "out"
    folder.mkdir()
    holder = open_queue(job_store, clock, "node-a")
    holder.add(CID, "cluster", folder, "down")
    clock.now += 11
    seen: list[tuple[str, Path | None]] = []

    class Recorder:
        name, remote = "cluster", True

        async def publish(self, where: Path | None, cid: str, on_progress: object = None) -> None:
            seen.append((cid, where))

    settings = load_settings(data_dir=tmp_path / "data")
    other = open_queue(job_store, clock, "node-b")
    summary = asyncio.run(
        retry_pending(settings, other, force=True, build=lambda name, s: Recorder())
    )
    assert summary.attempted == 1 and seen == [(CID, None)]
    holder.add(CID, "cluster", folder, "down again")
    summary = asyncio.run(
        retry_pending(settings, holder, force=True, build=lambda name, s: Recorder())
    )
    assert summary.attempted == 1 and seen[-1] == (CID, folder)


def _old_pins_file(path: Path) -> None:
    """A pins file as versions before 0.2 wrote it (DATA_DIR/pins.sqlite3)."""
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE pending_pins (id INTEGER PRIMARY KEY AUTOINCREMENT, cid TEXT NOT NULL,"
            " target TEXT NOT NULL, folder TEXT, status TEXT NOT NULL DEFAULT 'pending',"
            " attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,"
            " next_attempt_at REAL NOT NULL, updated_at REAL NOT NULL, last_error TEXT,"
            " UNIQUE (cid, target));"
            "INSERT INTO pending_pins (cid, target, folder, status, attempts, created_at,"
            " next_attempt_at, updated_at, last_error) VALUES"
            f" ('{CID}', 'cluster', '/data/store/{CID}', 'pending', 3, 10, 20, 15, 'down'),"
            " ('QmDone', 'local', NULL, 'done', 1, 10, 10, 12, NULL);"
        )


def test_an_old_pins_file_is_taken_over_once(job_store: JobStore, tmp_path: Path) -> None:
    path = tmp_path / "pins.sqlite3"
    _old_pins_file(path)
    already = job_store.pin_add(
        "QmDone", "local", folder=None, node="x", error="kept", retry_base=1, retry_max=1, now=5
    )
    assert job_store.import_pins_file(path, node="node-a") == 1
    assert not path.exists() and path.with_name(path.name + IMPORTED_SUFFIX).is_file()
    assert job_store.import_pins_file(path, node="node-a") == 0  # nothing left to import
    imported = job_store.pin_find(CID, "cluster")
    assert imported is not None
    assert (imported.status, imported.attempts, imported.created_at, imported.node) == (
        "pending", 3, 10, "node-a",
    )  # fmt: skip
    assert imported.folder == f"/data/store/{CID}" and imported.last_error == "down"
    assert job_store.pin_find("QmDone", "local") == already  # the store's own entry wins
    assert job_store.pin_counts() == {"pending": 2, "done": 0, "expired": 0}


def test_opening_the_store_of_a_data_dir_imports_its_pins_file(tmp_path: Path) -> None:
    from speak_encoder.config import load_settings

    settings = load_settings(data_dir=tmp_path / "data", node_name="node-z")
    settings.data_dir.mkdir(parents=True)
    _old_pins_file(settings.data_dir / "pins.sqlite3")
    store = JobStore.open(settings)
    try:
        [entry] = store.pin_queue(settings).entries()
        assert entry.cid == CID and entry.node == "node-z"
    finally:
        store.close()
