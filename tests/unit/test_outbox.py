"""The outbox and job offers in the store: claims under a lease, one sequence per job, progress
never after the final report, report targets that change, jobs offered again (duplicate,
retarget, reopen), a failure stored with its report.

On SQLite in this tier (tests/unit/conftest.py); tests/integration/test_outbox.py runs these same
tests on a real PostgreSQL server."""

from __future__ import annotations

from typing import Any

from speak_encoder.node.models import JobState, NewJob, OutboxEntry, SourceKind, Stage
from speak_encoder.node.store import JobStore
from speak_encoder.node.store.outbox import insert_row

T0 = 1_000_000.0
KINDS = frozenset({"webhook", "webhook.progress"})


def new_job(key: str = "alice/clip/Qm1", **request: Any) -> NewJob:
    body = {"owner": "alice", "permlink": "clip", "webhook_url": "http://a/hook", "api_key": "k1"}
    return NewJob(
        source="https://example.org/v.mp4",
        kind=SourceKind.DIRECT,
        request={**body, **request},
        dedup_key=key,
    )


def final(key: str, event: str = "complete") -> OutboxEntry:
    return OutboxEntry("webhook", "http://a/hook", {"event": event, "body": "{}"}, {}, key)


def progress(n: int) -> OutboxEntry:
    body = {"event": "progress", "body": f'{{"progress":{n}}}'}
    return OutboxEntry("webhook.progress", "http://a/hook/progress", body, {}, f"p{n}", True)


def running(store: JobStore, **request: Any) -> str:
    store.submit(new_job(**request), queue_max=10, now=T0)
    job = store.claim("node-a", lease_seconds=60, now=T0)
    assert job is not None
    return job.id


def claim(store: JobStore, owner: str = "node-a", at: float = T0, limit: int = 10) -> list[Any]:
    return store.outbox_claim(owner, kinds=KINDS, lease_seconds=30, limit=limit, now=at)


def test_a_claimed_row_is_sent_by_one_node_only(job_store: JobStore) -> None:
    for n in range(3):
        job_store.outbox_put(None, final(f"k{n}"), now=T0)
    first = claim(job_store, "node-a", limit=2)
    second = claim(job_store, "node-b", at=T0 + 20)  # its lease runs to T0 + 50
    assert len(first) == 2 and len(second) == 1
    assert {i.id for i in first}.isdisjoint(i.id for i in second)
    assert claim(job_store, "node-c", at=T0 + 20) == []
    # node-a died: its lease runs out and node-c takes its rows over; node-a's late answer
    # no longer counts.
    taken_over = claim(job_store, "node-c", at=T0 + 31)
    assert {i.id for i in taken_over} == {i.id for i in first}
    assert not job_store.outbox_delivered(first[0].id, "node-a")
    assert job_store.outbox_failed(
        first[1].id, error="x", next_attempt_at=None, owner="node-a"
    ) == ("lost")
    assert job_store.outbox_delivered(first[0].id, "node-c")
    assert job_store.outbox_counts() == {"pending": 2, "delivered": 1, "given_up": 0}


def test_one_job_rows_leave_one_after_another(job_store: JobStore) -> None:
    job = running(job_store)
    assert job_store.outbox_progress(job, progress(10), now=T0)
    [ping] = claim(job_store)  # on its way
    assert job_store.outbox_progress(job, progress(20), now=T0)  # queued behind it
    job_store.outbox_put(job, final(f"{job}:complete"), now=T0)
    # the final report deleted the progress row that was not on its way, and waits for the
    # one in flight
    assert [r.progress for r in job_store.outbox_rows(job)] == [True, False]
    assert claim(job_store, "node-b") == []
    assert job_store.outbox_delivered(ping.id, "node-a")
    [done] = claim(job_store, "node-b")
    assert done.idempotency_key == f"{job}:complete" and done.request is not None
    assert done.request["api_key"] == "k1"  # the job's request comes with the claim


def test_no_progress_once_the_final_report_is_queued(job_store: JobStore) -> None:
    job = running(job_store)
    job_store.outbox_put(job, final(f"{job}:complete"), now=T0)
    assert not job_store.outbox_progress(job, progress(99), now=T0)
    [row] = claim(job_store)
    job_store.outbox_delivered(row.id, "node-a")
    assert not job_store.outbox_progress(job, progress(99), now=T0 + 1)  # delivered: still no
    assert [r.progress for r in job_store.outbox_rows(job)] == [False]


def test_a_progress_row_whose_node_died_is_dropped_not_sent_late(job_store: JobStore) -> None:
    job = running(job_store)
    job_store.outbox_progress(job, progress(10), now=T0)
    assert len(claim(job_store)) == 1  # node-a dies while sending it
    job_store.outbox_put(job, final(f"{job}:complete"), now=T0)
    [row] = claim(job_store, "node-b", at=T0 + 31)
    assert not row.progress and [r.id for r in job_store.outbox_rows(job)] == [row.id]


def test_a_progress_row_that_raced_past_the_final_report_is_never_sent(
    job_store: JobStore,
) -> None:
    """Whatever raced (two transactions on a fleet's database), a progress row stored after
    the final report of its generation is dropped at the next claim, never sent."""
    job = running(job_store)
    job_store.outbox_put(job, final(f"{job}:complete"), now=T0)
    with job_store._write() as conn:  # the outcome of the race, written directly
        insert_row(conn, job_store.dialect, progress(99), job_id=job, generation=0, at=T0)
    assert [r.progress for r in job_store.outbox_rows(job)] == [False, True]
    [row] = claim(job_store)
    assert not row.progress
    job_store.outbox_delivered(row.id, "node-a")
    assert claim(job_store, at=T0 + 1) == []
    assert [r.progress for r in job_store.outbox_rows(job)] == [False]


def test_a_failed_progress_report_is_dropped(job_store: JobStore) -> None:
    job = running(job_store)
    job_store.outbox_progress(job, progress(10), now=T0)
    [row] = claim(job_store)
    outcome = job_store.outbox_failed(row.id, error="500", next_attempt_at=T0 + 5, owner="node-a")
    assert outcome == "dropped" and job_store.outbox_rows(job) == []


def test_a_new_report_target_rearms_and_outranks_an_old_refusal(job_store: JobStore) -> None:
    job = running(job_store)
    job_store.outbox_put(job, final(f"{job}:complete"), now=T0)
    [row] = claim(job_store)
    # while it is sent with k1, the source offers the job again with a new callback token
    offer = job_store.offer(new_job(), queue_max=10, report_target={"api_key": "k2"}, now=T0 + 1)
    assert offer.outcome == "retargeted" and offer.job.request["api_key"] == "k2"
    outcome = job_store.outbox_failed(
        row.id, error="401", next_attempt_at=None, owner="node-a", revision=row.revision, now=T0
    )
    assert outcome == "retargeted"  # answered under the old token: sent again, not given up
    [again] = claim(job_store, at=T0 + 2)
    assert again.request is not None and again.request["api_key"] == "k2"
    assert again.attempts == 0 and again.revision == row.revision + 1
    # a refusal under the current target gives up; a later new target re-arms the row
    assert job_store.outbox_failed(
        again.id, error="401", next_attempt_at=None, owner="node-a", revision=again.revision
    ) == "given_up"  # fmt: skip
    job_store.offer(new_job(), queue_max=10, report_target={"api_key": "k3"}, now=T0 + 3)
    [third] = claim(job_store, at=T0 + 4)
    assert third.id == row.id and third.request is not None and third.request["api_key"] == "k3"


def test_offers_of_a_known_job(job_store: JobStore) -> None:
    target = {"webhook_url": "http://a/hook", "api_key": "k1"}
    created = job_store.offer(new_job(), queue_max=10, report_target=target, now=T0)
    assert created.outcome == "created" and created.created
    same = job_store.offer(new_job(), queue_max=10, report_target=target, now=T0)
    assert (same.outcome, same.job.id) == ("duplicate", created.job.id)
    moved = {"webhook_url": "http://b/hook", "api_key": "k1"}
    again = job_store.offer(new_job(), queue_max=10, report_target=moved, now=T0)
    assert again.outcome == "retargeted" and again.job.request["webhook_url"] == "http://b/hook"
    assert again.job.request["owner"] == "alice"  # the rest of the request is kept
    assert job_store.counts()["queued"] == 1


def test_a_completed_job_offered_again_is_reopened_to_report_once_more(
    job_store: JobStore,
) -> None:
    job = running(job_store)
    job_store.save_checkpoint(job, Stage.PUBLISH, {"cid": "Qm"}, node="node-a")
    job_store.save_checkpoint(job, Stage.REPORT, {"reported": {}}, node="node-a")
    job_store.outbox_put(job, final(f"{job}:complete"), now=T0)
    job_store.complete(job, "node-a", {"cid": "Qm"})
    # its report is still pending: the new target takes it, nothing is reopened
    offer = job_store.offer(
        new_job(), queue_max=10, report_target={"api_key": "k2"}, dedup_window_s=1e9, now=T0
    )
    assert (offer.outcome, offer.job.state) == ("retargeted", JobState.COMPLETE)
    [row] = claim(job_store)
    job_store.outbox_delivered(row.id, "node-a")
    # delivered: a redispatch reopens it (generation 1, report checkpoint dropped)
    offer = job_store.offer(
        new_job(), queue_max=10, report_target={"api_key": "k3"}, dedup_window_s=1e9, now=T0
    )
    assert (offer.outcome, offer.job.state, offer.job.generation) == (
        "reopened", JobState.QUEUED, 1,
    )  # fmt: skip
    assert offer.job.request["api_key"] == "k3" and offer.job.finished_at is None
    assert set(job_store.checkpoints(job)) == {Stage.PUBLISH}
    assert job_store.outbox_progress(job, progress(1), now=T0)  # a new generation may report
    # without a report target (a legacy gateway duplicate) nothing changes
    plain = job_store.offer(new_job(), queue_max=10, dedup_window_s=1e9, now=T0)
    assert plain.outcome == "duplicate"


def test_a_job_failed_for_good_is_not_a_duplicate(job_store: JobStore) -> None:
    job = running(job_store)
    assert job_store.fail(job, "node-a", error="bad", kind="MediaError")
    offer = job_store.offer(new_job(), queue_max=10, report_target={"api_key": "k2"}, now=T0)
    assert offer.outcome == "created" and offer.job.id != job


def test_a_failure_and_its_report_are_one_transaction(job_store: JobStore) -> None:
    job = running(job_store)
    report = final(f"{job}:failed", "failed")
    assert not job_store.fail(job, "node-b", error="x", kind="MediaError", report=report)
    assert job_store.outbox_rows(job) == []  # not ours: neither the failure nor its report
    assert job_store.fail(job, "node-a", error="x", kind="MediaError", report=report)
    [row] = job_store.outbox_rows(job)
    assert row.idempotency_key == f"{job}:failed" and not row.progress
    assert job_store.require(job).state is JobState.FAILED
    retried = job_store.retry(job)
    assert retried.generation == 1  # a retried job reports its own outcome again


def test_prune_keeps_a_job_whose_report_is_pending(job_store: JobStore) -> None:
    job = running(job_store)
    job_store.complete(job, "node-a", {"cid": "Qm"})
    job_store.outbox_put(job, final(f"{job}:complete"), now=T0)
    assert job_store.prune(older_than=1e18) == 0
    [row] = claim(job_store)
    job_store.outbox_delivered(row.id, "node-a")
    assert job_store.prune(older_than=1e18) == 1


def test_a_report_in_flight_when_the_job_is_offered_again_does_not_count_as_waiting(
    job_store: JobStore,
) -> None:
    """The server answered the completion, the node has not yet recorded it, and the admin's
    redispatch arrives: the job is reopened (a new report), the row in flight goes first."""
    job = running(job_store)
    job_store.outbox_put(job, final(f"{job}:complete"), now=T0)
    job_store.complete(job, "node-a", {"cid": "Qm"})
    [in_flight] = claim(job_store)
    offer = job_store.offer(
        new_job(), queue_max=10, report_target={"api_key": "k2"}, dedup_window_s=1e9, now=T0
    )
    assert offer.outcome == "reopened" and offer.job.generation == 1
    job_store.outbox_put(job, final(f"{job}:complete:1"), now=T0)  # the reopened run's report
    assert claim(job_store, "node-b") == []  # waits for the one in flight
    job_store.outbox_delivered(in_flight.id, "node-a")
    [second] = claim(job_store, "node-b")
    assert second.idempotency_key == f"{job}:complete:1"
