"""The job store: submit, dedup, claims and leases, finishing, the operator's side, the outbox,
the schema and concurrency.

Every test takes ``job_store`` or ``store_url``: in this tier they are SQLite only
(tests/unit/conftest.py), and tests/integration/test_store.py runs these same tests on a real
PostgreSQL server. Tests of one backend only go to test_store_sqlite.py or that module.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import inspect

from speak_encoder.errors import (
    JobNotFound,
    QueueFull,
    UsageError,
)
from speak_encoder.node.models import Job, JobState, NewJob, SourceKind, Stage
from speak_encoder.node.store import JobStore
from speak_encoder.node.store.schema import SCHEMA_VERSION

T0 = 1_000_000.0
LEASE = 60.0


def submit(store: JobStore, source: str = "clip.mp4", *, at: float = T0, **kw: Any) -> Job:
    job, created = store.submit(NewJob(source=source, **kw), queue_max=1000, now=at)
    assert created
    return job


def claim(store: JobStore, owner: str = "node-a", *, at: float = T0 + 1) -> Job:
    job = store.claim(owner, lease_seconds=LEASE, now=at)
    assert job is not None
    return job


# --- submitting and reading -----------------------------------------------------------------


def test_submit_get_list_counts(job_store: JobStore) -> None:
    first = submit(
        job_store,
        "https://example.org/a.mp4",
        kind=SourceKind.DIRECT,
        short=True,
        rungs=("480p", "720p"),
        priority=3,
        request={"owner": "alice", "nested": {"b": [1, 2]}},
        external_id="gw-1",
        size_hint=12345,
    )
    second = submit(job_store, at=T0 + 5)

    got = job_store.require(first.id)
    assert got == first
    assert (got.state, got.kind, got.rungs, got.short) == (
        JobState.QUEUED,
        SourceKind.DIRECT,
        ("480p", "720p"),
        True,
    )
    assert got.request == {"owner": "alice", "nested": {"b": [1, 2]}}
    assert (got.created_at, got.attempts, got.progress, got.stage) == (T0, 0, {}, None)
    assert job_store.get("0" * 32) is None
    with pytest.raises(JobNotFound, match=r"0{32}"):
        job_store.require("0" * 32)

    assert [j.id for j in job_store.list_jobs()] == [second.id, first.id]
    assert [j.id for j in job_store.list_jobs(limit=1, offset=1)] == [first.id]
    claim(job_store)
    assert [j.id for j in job_store.list_jobs(states=[JobState.QUEUED])] == [second.id]
    counts = job_store.counts()
    assert set(counts) == {s.value for s in JobState}
    assert (counts["queued"], counts["running"], counts["failed"]) == (1, 1, 0)
    assert job_store.active_ids() == {first.id, second.id}


def test_queue_max_refuses_and_keeps_what_is_queued(job_store: JobStore) -> None:
    ids = [job_store.submit(NewJob(source=f"s{i}"), queue_max=3)[0].id for i in range(3)]
    with pytest.raises(QueueFull, match="3 jobs") as refused:
        job_store.submit(NewJob(source="one too many"), queue_max=3)
    assert refused.value.retry_after == pytest.approx(60.0)
    assert job_store.active_ids() == set(ids)
    assert job_store.counts()["queued"] == 3

    running = claim(job_store, at=T0 + 1e9)  # running still counts against the queue
    with pytest.raises(QueueFull):
        job_store.submit(NewJob(source="x"), queue_max=3)
    assert job_store.complete(running.id, "node-a", {})
    job, created = job_store.submit(NewJob(source="x"), queue_max=3)
    assert created and job.state is JobState.QUEUED


def _to_state(store: JobStore, job: Job, state: JobState) -> None:
    if state is JobState.QUEUED:
        return
    claimed = claim(store)
    assert claimed.id == job.id
    if state is JobState.RETRY_WAIT:
        assert store.retry_later(job.id, "node-a", error="e", kind="NetworkError", delay_s=60)
    elif state is JobState.COMPLETE:
        assert store.complete(job.id, "node-a", {"cid": "Qm"})
    elif state is JobState.FAILED:
        assert store.fail(job.id, "node-a", error="bad", kind="MediaError")


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.RUNNING, JobState.RETRY_WAIT])
def test_dedup_against_active_jobs(job_store: JobStore, state: JobState) -> None:
    original = submit(job_store, dedup_key="alice/post/Qm1")
    _to_state(job_store, original, state)
    again, created = job_store.submit(
        NewJob(source="other", dedup_key="alice/post/Qm1"), queue_max=1
    )
    assert not created and again.id == original.id and again.state is state
    assert len(job_store.list_jobs()) == 1
    _, created = job_store.submit(NewJob(source="x", dedup_key="bob/post/Qm1"), queue_max=10)
    assert created


def test_dedup_recently_complete_within_window_only(job_store: JobStore) -> None:
    done = submit(job_store, dedup_key="k")
    _to_state(job_store, done, JobState.COMPLETE)
    finished = job_store.require(done.id).finished_at
    assert finished is not None

    dup, created = job_store.submit(
        NewJob(source="s", dedup_key="k"), queue_max=10, dedup_window_s=3600, now=finished + 60
    )
    assert not created and dup.id == done.id and dup.state is JobState.COMPLETE
    later, created = job_store.submit(
        NewJob(source="s", dedup_key="k"), queue_max=10, dedup_window_s=3600, now=finished + 7200
    )
    assert created and later.id != done.id


def test_failed_job_is_not_a_duplicate(job_store: JobStore) -> None:
    failed = submit(job_store, dedup_key="k")
    _to_state(job_store, failed, JobState.FAILED)
    again, created = job_store.submit(
        NewJob(source="s", dedup_key="k"), queue_max=10, dedup_window_s=1e9
    )
    assert created and again.id != failed.id


# --- claiming and leases --------------------------------------------------------------------


def test_claim_order_priority_then_fifo(job_store: JobStore) -> None:
    old_low = submit(job_store, at=T0)
    new_low = submit(job_store, at=T0 + 1)
    high = submit(job_store, at=T0 + 2, priority=5)
    order = [claim(job_store, at=T0 + 10).id for _ in range(3)]
    assert order == [high.id, old_low.id, new_low.id]
    assert job_store.claim("node-a", lease_seconds=LEASE, now=T0 + 10) is None

    got = job_store.require(high.id)
    assert got.state is JobState.RUNNING and got.lease_owner == "node-a"
    assert (got.started_at, got.lease_expires_at) == (T0 + 10, T0 + 10 + LEASE)


def test_retry_wait_is_claimable_only_when_due(job_store: JobStore) -> None:
    job = submit(job_store)
    claim(job_store, at=T0 + 1)
    assert job_store.retry_later(
        job.id, "node-a", error="503", kind="UpstreamError", delay_s=100, now=T0 + 2
    )
    waiting = job_store.require(job.id)
    assert (waiting.state, waiting.next_attempt_at, waiting.lease_owner) == (
        JobState.RETRY_WAIT,
        T0 + 102,
        None,
    )
    assert job_store.claim("node-a", lease_seconds=LEASE, now=T0 + 101) is None
    again = claim(job_store, "node-b", at=T0 + 102)
    assert again.id == job.id and again.started_at == T0 + 1  # first start kept
    assert again.error == "503"  # the last error stays visible until it completes


def test_expired_lease_is_reclaimed_by_another_owner(job_store: JobStore) -> None:
    job = submit(job_store)
    claim(job_store, "node-a", at=T0 + 1)
    assert job_store.claim("node-b", lease_seconds=LEASE, now=T0 + 1 + LEASE - 1) is None
    taken = claim(job_store, "node-b", at=T0 + 2 + LEASE)
    assert taken.id == job.id and taken.lease_owner == "node-b"
    # the dead node's late calls change nothing
    assert not job_store.renew_lease(job.id, "node-a", lease_seconds=LEASE)
    assert not job_store.complete(job.id, "node-a", {"cid": "stale"})
    assert job_store.require(job.id).lease_owner == "node-b"


def test_renew_lease(job_store: JobStore) -> None:
    job = submit(job_store)
    claim(job_store, at=T0 + 1)
    assert job_store.renew_lease(job.id, "node-a", lease_seconds=LEASE, now=T0 + 30)
    assert job_store.require(job.id).lease_expires_at == T0 + 30 + LEASE
    assert not job_store.renew_lease(job.id, "node-b", lease_seconds=LEASE)

    job_store.request_cancel(job.id)
    assert not job_store.renew_lease(job.id, "node-a", lease_seconds=LEASE)
    assert job_store.mark_cancelled(job.id, "node-a")
    assert job_store.require(job.id).state is JobState.CANCELLED


def test_abandoned_job_with_cancel_requested_is_cancelled_not_reclaimed(
    job_store: JobStore,
) -> None:
    job = submit(job_store)
    claim(job_store, "dead-node", at=T0 + 1)
    job_store.request_cancel(job.id)
    assert job_store.claim("node-b", lease_seconds=LEASE, now=T0 + 2 + LEASE) is None
    assert job_store.require(job.id).state is JobState.CANCELLED


# --- finishing: only the owner, attempts counted once ---------------------------------------

Transition = Callable[[JobStore, str, str], bool]
TRANSITIONS: dict[str, tuple[Transition, JobState]] = {
    "complete": (lambda s, i, o: s.complete(i, o, {"cid": "Qm"}), JobState.COMPLETE),
    "fail": (lambda s, i, o: s.fail(i, o, error="bad", kind="MediaError"), JobState.FAILED),
    "retry_later": (
        lambda s, i, o: s.retry_later(i, o, error="e", kind="NetworkError", delay_s=5),
        JobState.RETRY_WAIT,
    ),
    "requeue": (lambda s, i, o: s.requeue(i, o), JobState.QUEUED),
    "mark_cancelled": (lambda s, i, o: s.mark_cancelled(i, o), JobState.CANCELLED),
}


@pytest.mark.parametrize("name", list(TRANSITIONS))
def test_transitions_only_by_the_owner(job_store: JobStore, name: str) -> None:
    call, target = TRANSITIONS[name]
    job = submit(job_store)
    assert not call(job_store, job.id, "node-a")  # queued: nobody owns it
    claim(job_store, "node-a")
    assert not call(job_store, job.id, "node-b")
    assert job_store.require(job.id).state is JobState.RUNNING
    assert call(job_store, job.id, "node-a")
    after = job_store.require(job.id)
    assert after.state is target
    assert (after.lease_owner, after.lease_expires_at) == (None, None)
    assert not call(job_store, job.id, "node-a")  # not twice


def test_complete_clears_error_and_stores_result(job_store: JobStore) -> None:
    job = submit(job_store)
    claim(job_store, at=T0 + 1)
    job_store.retry_later(job.id, "node-a", error="e", kind="NetworkError", delay_s=0, now=T0 + 1)
    claim(job_store, at=T0 + 2)
    assert job_store.complete(job.id, "node-a", {"cid": "QmRoot", "renditions": ["480p"]})
    done = job_store.require(job.id)
    assert (done.error, done.error_kind, done.attempts) == (None, None, 1)
    assert done.result == {"cid": "QmRoot", "renditions": ["480p"]}
    assert done.finished_at is not None


def test_attempts_counted_once_per_failure(job_store: JobStore) -> None:
    job = submit(job_store)
    for n in range(1, 3):
        claim(job_store, at=T0 + 10 * n)
        assert job_store.retry_later(
            job.id, "node-a", error="x", kind="k", delay_s=0, now=T0 + 10 * n
        )
        assert job_store.require(job.id).attempts == n
    claim(job_store, at=T0 + 100)
    assert job_store.requeue(job.id, "node-a")  # shutdown: not a failure
    assert job_store.require(job.id).attempts == 2
    claim(job_store, at=T0 + 101)
    assert job_store.fail(job.id, "node-a", error="gave up", kind="NetworkError")
    failed = job_store.require(job.id)
    assert (failed.attempts, failed.error, failed.error_kind) == (3, "gave up", "NetworkError")

    other = submit(job_store)
    claim(job_store)
    assert job_store.fail(other.id, "node-a", error="bad", kind="MediaError", count_attempt=False)
    assert job_store.require(other.id).attempts == 0


def test_stage_and_progress(job_store: JobStore) -> None:
    job = submit(job_store)
    claim(job_store)
    job_store.set_stage(job.id, "node-a", Stage.FETCH)
    job_store.set_progress(job.id, "node-a", Stage.FETCH, 0.5)
    job_store.set_progress(job.id, "node-a", Stage.FETCH, 1.0)
    job_store.set_stage(job.id, "node-a", Stage.ENCODE)
    job_store.set_progress(job.id, "node-a", Stage.ENCODE, 0.25)
    job_store.set_progress(job.id, "node-b", Stage.ENCODE, 0.99)  # not the owner: ignored
    job_store.set_stage(job.id, "node-b", Stage.PUBLISH)
    got = job_store.require(job.id)
    assert got.stage is Stage.ENCODE
    assert got.progress == {"fetch": 1.0, "encode": 0.25}


def test_checkpoints_upsert_and_clear(job_store: JobStore) -> None:
    job = submit(job_store)
    job_store.save_checkpoint(job.id, Stage.FETCH, {"path": "a", "size": 1}, node="n1")
    job_store.save_checkpoint(job.id, Stage.FETCH, {"path": "b", "size": 2}, node="n2")
    job_store.save_checkpoint(job.id, Stage.PROBE, {"duration": 4.0}, node="n2")
    cps = job_store.checkpoints(job.id)
    assert set(cps) == {Stage.FETCH, Stage.PROBE}
    assert (cps[Stage.FETCH].data, cps[Stage.FETCH].node) == ({"path": "b", "size": 2}, "n2")
    assert cps[Stage.FETCH].job_id == job.id

    job_store.clear_checkpoints(job.id, [Stage.PROBE])
    assert set(job_store.checkpoints(job.id)) == {Stage.FETCH}
    job_store.clear_checkpoints(job.id)
    assert job_store.checkpoints(job.id) == {}
    with pytest.raises(JobNotFound):
        job_store.save_checkpoint("f" * 32, Stage.FETCH, {}, node="n1")


def test_recover_requeues_only_this_nodes_running_jobs(job_store: JobStore) -> None:
    mine = submit(job_store, at=T0)
    theirs = submit(job_store, at=T0 + 1)
    cancelled = submit(job_store, at=T0 + 2)
    waiting = submit(job_store, at=T0 + 3)
    claim(job_store, "me")
    claim(job_store, "them")
    claim(job_store, "me")
    job_store.request_cancel(cancelled.id)
    job_store.save_checkpoint(mine.id, Stage.FETCH, {"size": 1}, node="me")

    assert job_store.recover("me") == [mine.id]
    assert job_store.require(mine.id).state is JobState.QUEUED
    assert job_store.require(mine.id).lease_owner is None
    assert set(job_store.checkpoints(mine.id)) == {Stage.FETCH}
    assert job_store.require(cancelled.id).state is JobState.CANCELLED
    assert job_store.require(theirs.id).state is JobState.RUNNING
    assert job_store.require(waiting.id).state is JobState.QUEUED
    assert job_store.recover("me") == []


# --- the operator's side --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected", "flag"),
    [
        (JobState.QUEUED, JobState.CANCELLED, False),
        (JobState.RETRY_WAIT, JobState.CANCELLED, False),
        (JobState.RUNNING, JobState.RUNNING, True),
        (JobState.COMPLETE, JobState.COMPLETE, False),
        (JobState.FAILED, JobState.FAILED, False),
    ],
)
def test_request_cancel(
    job_store: JobStore, state: JobState, expected: JobState, flag: bool
) -> None:
    job = submit(job_store)
    _to_state(job_store, job, state)
    after = job_store.request_cancel(job.id)
    assert (after.state, after.cancel_requested) == (expected, flag)
    assert job_store.require(job.id) == after
    if expected is JobState.CANCELLED:
        assert after.finished_at is not None
        assert job_store.claim("n", lease_seconds=LEASE, now=T0 + 1e6) is None
    with pytest.raises(JobNotFound):
        job_store.request_cancel("a" * 32)


def test_retry_requeues_failed_and_cancelled_keeping_checkpoints(job_store: JobStore) -> None:
    job = submit(job_store)
    claim(job_store)
    job_store.save_checkpoint(job.id, Stage.FETCH, {"size": 1}, node="n")
    job_store.retry_later(job.id, "node-a", error="e", kind="k", delay_s=0, now=T0 + 1)
    claim(job_store, at=T0 + 2)
    job_store.fail(job.id, "node-a", error="bad", kind="MediaError")

    again = job_store.retry(job.id)
    assert (again.state, again.attempts, again.error, again.error_kind) == (
        JobState.QUEUED,
        0,
        None,
        None,
    )
    assert again.finished_at is None
    assert set(job_store.checkpoints(job.id)) == {Stage.FETCH}
    assert job_store.retry(job.id) == again  # queued: unchanged

    cancelled = submit(job_store)
    job_store.request_cancel(cancelled.id)
    revived = job_store.retry(cancelled.id)
    assert revived.state is JobState.QUEUED and not revived.cancel_requested
    with pytest.raises(JobNotFound):
        job_store.retry("b" * 32)


def test_retry_refused_when_an_active_duplicate_exists(job_store: JobStore) -> None:
    failed = submit(job_store, dedup_key="k")
    _to_state(job_store, failed, JobState.FAILED)
    submit(job_store, dedup_key="k")
    with pytest.raises(UsageError, match="dedup key"):
        job_store.retry(failed.id)
    assert job_store.require(failed.id).state is JobState.FAILED


def test_prune_deletes_old_finished_jobs_with_their_rows(job_store: JobStore) -> None:
    old = [submit(job_store) for _ in range(3)]
    for job in old:
        _to_state(job_store, job, JobState.COMPLETE)
        job_store.save_checkpoint(job.id, Stage.PUBLISH, {"cid": "Qm"}, node="n")
    keep_active = submit(job_store)
    job_store.save_checkpoint(keep_active.id, Stage.FETCH, {}, node="n")
    for key in ("sent", "pending"):
        job_store.outbox_add(
            job_id=old[0].id,
            kind="webhook",
            target="http://h",
            payload={},
            headers={},
            idempotency_key=key,
            now=T0,
        )
    sent = next(i for i in job_store.outbox_due(now=T0) if i.idempotency_key == "sent")
    job_store.outbox_delivered(sent.id)

    assert job_store.prune(older_than=0.0) == 0
    # old[0] still has a report to deliver (its deliverer reads the job's report target):
    # kept until the report is delivered or given up; the two others go with their rows.
    assert job_store.prune(older_than=T0 + 1e12) == 2
    assert {j.id for j in job_store.list_jobs()} == {keep_active.id, old[0].id}
    assert job_store.checkpoints(old[1].id) == {}
    assert set(job_store.checkpoints(keep_active.id)) == {Stage.FETCH}
    assert job_store.outbox_counts() == {"pending": 1, "delivered": 1, "given_up": 0}
    [pending] = job_store.outbox_due(now=T0)
    job_store.outbox_failed(pending.id, error="410 Gone", next_attempt_at=None)
    assert job_store.prune(older_than=T0 + 1e12) == 1
    assert job_store.list_jobs() == [job_store.require(keep_active.id)]
    assert job_store.checkpoints(old[0].id) == {}
    assert job_store.outbox_counts() == {"pending": 0, "delivered": 0, "given_up": 0}


# --- the outbox -----------------------------------------------------------------------------


def test_outbox_idempotency_due_and_give_up(job_store: JobStore) -> None:
    def add(key: str, at: float) -> bool:
        return job_store.outbox_add(
            job_id=None,
            kind="webhook",
            target="https://example.org/hook",
            payload={"state": "complete", "cid": "Qm"},
            headers={"X-Sig": "abc"},
            idempotency_key=key,
            now=at,
        )

    assert add("k1", T0) and add("k2", T0 + 1)
    assert not add("k1", T0 + 2)
    due = job_store.outbox_due(now=T0 + 5)
    assert [i.idempotency_key for i in due] == ["k1", "k2"]
    first = due[0]
    assert (first.payload, first.headers, first.state, first.attempts) == (
        {"cid": "Qm", "state": "complete"},
        {"X-Sig": "abc"},
        "pending",
        0,
    )
    assert job_store.outbox_due(now=T0 + 5, limit=1) == due[:1]
    assert job_store.outbox_due(now=T0 - 1) == []

    job_store.outbox_failed(first.id, error="503", next_attempt_at=T0 + 100)
    assert [i.idempotency_key for i in job_store.outbox_due(now=T0 + 50)] == ["k2"]
    retried = job_store.outbox_due(now=T0 + 100)[0]
    assert (retried.attempts, retried.last_error) == (1, "503")
    job_store.outbox_failed(first.id, error="410", next_attempt_at=None)
    job_store.outbox_delivered(due[1].id)
    assert job_store.outbox_due(now=T0 + 1e9) == []
    assert job_store.outbox_counts() == {"pending": 0, "delivered": 1, "given_up": 1}


# --- schema ---------------------------------------------------------------------------------


def test_migrate_is_idempotent_and_concurrent(store_url: str) -> None:
    stores = [JobStore(store_url) for _ in range(3)]
    try:
        with ThreadPoolExecutor(3) as pool:
            versions = list(pool.map(lambda s: s.migrate(), stores))
        assert versions == [SCHEMA_VERSION] * 3
        assert stores[0].migrate() == SCHEMA_VERSION
        engine = stores[0]._engine
        tables = set(inspect(engine).get_table_names())
        assert {"jobs", "checkpoints", "outbox", "schema_version"} <= tables
        submit(stores[1])
        assert stores[2].counts()["queued"] == 1
    finally:
        for store in stores:
            store.close()


# --- concurrency ----------------------------------------------------------------------------

N_JOBS = 40


def _fill(store: JobStore) -> set[str]:
    return {submit(store, f"s{i}", at=T0 + i).id for i in range(N_JOBS)}


def claim_until_empty(url: str, owner: str) -> list[str]:
    """Claim and complete jobs until none is left (also the child process's entry point)."""
    store = JobStore(url)
    got: list[str] = []
    try:
        while (job := store.claim(owner, lease_seconds=LEASE)) is not None:
            got.append(job.id)
            assert store.complete(job.id, owner, {"by": owner})
    finally:
        store.close()
    return got


def test_threads_claim_every_job_exactly_once(job_store: JobStore, store_url: str) -> None:
    expected = _fill(job_store)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: claim_until_empty(store_url, f"t{n}"), range(4)))
    claimed = Counter(i for r in results for i in r)
    assert set(claimed) == expected and set(claimed.values()) == {1}
    assert job_store.counts()["complete"] == N_JOBS


def _child(url: str, owner: str, out: Any) -> None:
    out.put(claim_until_empty(url, owner))


def test_processes_claim_every_job_exactly_once(job_store: JobStore, store_url: str) -> None:
    expected = _fill(job_store)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(store_url, f"p{n}", out)) for n in range(2)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    claimed = Counter(i for r in results for i in r)
    assert set(claimed) == expected and set(claimed.values()) == {1}


def test_concurrent_submits_of_one_dedup_key_store_one_row(
    job_store: JobStore, store_url: str
) -> None:
    others = [JobStore(store_url) for _ in range(3)]
    stores = [job_store, *others]
    barrier = threading.Barrier(20)

    def one(n: int) -> tuple[str, bool]:
        barrier.wait()
        job, created = stores[n % 4].submit(NewJob(source=f"s{n}", dedup_key="same"), queue_max=100)
        return job.id, created

    try:
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(one, range(20)))
    finally:
        for store in others:
            store.close()
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(job_store.list_jobs()) == 1


def test_crash_recoveries_and_dead_node_claims_count_interruptions(job_store: JobStore) -> None:
    job, _ = job_store.submit(NewJob(source="/x.mp4"), queue_max=10)
    claimed = job_store.claim("node-a", lease_seconds=60)
    assert claimed is not None and claimed.interruptions == 0
    assert job_store.recover("node-a") == [job.id]  # node-a restarted after a crash
    assert job_store.require(job.id).interruptions == 1
    job_store.claim("node-a", lease_seconds=1, now=time.time())
    retaken = job_store.claim("node-b", lease_seconds=60, now=time.time() + 5)  # a dead lease
    assert retaken is not None and retaken.interruptions == 2
    assert retaken.attempts == 0  # interruptions are not failed attempts
    assert job_store.requeue(job.id, "node-b")  # a graceful hand-back is no interruption
    assert job_store.require(job.id).interruptions == 2
