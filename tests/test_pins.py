"""The persistent pending-pin queue: back-off, max age, restart survival, retry loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from speak_encoder.errors import NetworkError
from speak_encoder.storage.pins import DONE, EXPIRED, PENDING, PendingPin, PinQueue, retry_due

CID = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def open_queue(path: Path, clock: Clock) -> PinQueue:
    return PinQueue(path, retry_base=10, retry_max=60, max_age_s=3600, clock=clock)


def test_backoff_doubles_up_to_the_maximum(tmp_path: Path, clock: Clock) -> None:
    with open_queue(tmp_path / "pins.sqlite3", clock) as queue:
        entry = queue.add(CID, "cluster", tmp_path, "connection refused")
        assert entry.attempts == 1
        assert entry.next_attempt_at == clock.now + 10
        assert queue.due() == []
        waits = []
        for _ in range(5):
            entry = queue.mark_failed(entry.id, "still down")
            waits.append(entry.next_attempt_at - clock.now)
        assert waits == [20, 40, 60, 60, 60]
        assert entry.last_error == "still down"


def test_entries_survive_a_restart(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "pins.sqlite3"
    with open_queue(path, clock) as queue:
        queue.add(CID, "local", tmp_path / "folder", "node down")
        queue.add(CID, "cluster", None, "cluster down")
    with open_queue(path, clock) as reopened:
        entries = reopened.entries()
        assert [(e.target, e.status) for e in entries] == [
            ("local", PENDING), ("cluster", PENDING),
        ]  # fmt: skip
        assert entries[0].folder == str(tmp_path / "folder")
        clock.now += 11
        assert len(reopened.due()) == 2


def test_requeue_keeps_age_and_one_row(tmp_path: Path, clock: Clock) -> None:
    with open_queue(tmp_path / "pins.sqlite3", clock) as queue:
        first = queue.add(CID, "local", None, "a")
        clock.now += 100
        again = queue.add(CID, "local", tmp_path, "b")
        assert again.id == first.id
        assert again.created_at == first.created_at
        assert again.attempts == 2
        assert again.folder == str(tmp_path)
        assert len(queue.entries(None)) == 1


def test_retry_due_marks_done_failed_and_expired(tmp_path: Path, clock: Clock) -> None:
    with open_queue(tmp_path / "pins.sqlite3", clock) as queue:
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
        assert queue.due(clock.now + 10_000) == [queue.get(bad.id)]


def test_force_ignores_the_backoff(tmp_path: Path, clock: Clock) -> None:
    with open_queue(tmp_path / "pins.sqlite3", clock) as queue:
        queue.add(CID, "local", None, "x")
        seen: list[str] = []

        async def attempt(entry: PendingPin) -> None:
            seen.append(entry.cid)

        assert asyncio.run(retry_due(queue, attempt)).attempted == 0
        assert asyncio.run(retry_due(queue, attempt, force=True)).attempted == 1
        assert seen == [CID]
