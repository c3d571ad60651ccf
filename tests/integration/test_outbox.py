"""The outbox on a real PostgreSQL server: every test of tests/unit/test_outbox.py again (there
on SQLite), plus the row lock that orders a final report after a progress report."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select, text

from speak_encoder.node.store import JobStore
from speak_encoder.node.store.outbox import insert_row
from speak_encoder.node.store.schema import jobs
from tests.support.store_fixtures import store_url_over
from tests.unit.test_outbox import *  # noqa: F403  (the tests, collected here once more)
from tests.unit.test_outbox import T0, final, progress, running

store_url = store_url_over("postgresql")


def test_a_final_report_waits_for_a_progress_report_being_queued(pg_store: JobStore) -> None:
    """On PostgreSQL the final report takes the job's row lock that a progress report holds
    while it checks for a final one, so the two are ordered (no progress row slips in)."""
    job = running(pg_store)
    done = threading.Event()
    with pg_store._write() as conn:  # a progress report mid-check: the job's row is locked
        conn.execute(select(jobs.c.generation).where(jobs.c.id == job).with_for_update())
        worker = threading.Thread(
            target=lambda: (pg_store.outbox_put(job, final(f"{job}:complete"), now=T0), done.set())
        )
        worker.start()
        deadline = time.monotonic() + 20
        waiting = 0
        while waiting == 0 and time.monotonic() < deadline and not done.is_set():
            with pg_store._engine.connect() as probe:
                waiting = probe.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                         " AND datname = current_database()")
                ).scalar_one()  # fmt: skip
            time.sleep(0.05)
        assert waiting == 1 and not done.is_set(), "the final report did not wait for the lock"
        insert_row(conn, pg_store.dialect, progress(50), job_id=job, generation=0, at=T0)
    worker.join(timeout=20)
    assert done.is_set()
    # queued after the progress row committed: the final report deleted it
    assert [r.progress for r in pg_store.outbox_rows(job)] == [False]
