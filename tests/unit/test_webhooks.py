"""Webhooks (docs/protocols.md §5): bodies, headers, signature, progress throttle, the outbox.

A real HTTP receiver on 127.0.0.1 (tests/support/webhook_fixtures.py) and a real SQLite store;
clocks are injected so back-offs and throttles run without sleeping.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from speak_encoder import USER_AGENT
from speak_encoder.config import Settings, load_settings
from speak_encoder.errors import MediaError
from speak_encoder.node.models import Job, JobState, OutboxEntry, SourceKind, Stage
from speak_encoder.node.scheduler import Scheduler
from speak_encoder.node.store import JobStore
from speak_encoder.pipeline.ffmpeg import MASTER_NAME
from speak_encoder.sources.direct_request import DirectJobRequest, to_new_job
from speak_encoder.sources.webhook_delivery import OutboxDeliverer, verify_signature
from speak_encoder.sources.webhooks import ProgressThrottle, WebhookHooks, completion_body
from tests.support.webhook_fixtures import WebhookReceiver

CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
ROOT = "QmSyaY8Nh5DnNGAeoJZWdYUsUmGrUG63zKVxfgfsSsvqzz"
HOOK_KEY = "hook-key-portrait"
SECRET = "whsec-test-1234"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
#: Bodies the existing encoder really sent (a copy of the spec vector, kept in the repository).
VECTORS = Path(__file__).resolve().parents[1] / "data/webhooks-existing-encoder.json"
RESULT: dict[str, Any] = {
    "cid": ROOT,
    "manifest": f"ipfs://{ROOT}/manifest.m3u8",
    "renditions": [{"name": "720p"}, {"name": "480p"}],
    "qualities_encoded": ["720p", "480p"],
    "duration": 12.0,
    "published": None,
}


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "node_name": "test-encoder-1",
            "allow_private_urls": True,  # the receiver is on 127.0.0.1
            "ipfs_api_addr": "/ip4/127.0.0.1/tcp/5001",
            "webhook_secret": SECRET,
            "webhook_retry_base": 10.0,
            "webhook_retry_max": 60.0,
            "webhook_max_attempts": 5,
        }
        values.update(overrides)
        return load_settings(**values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def store(settings: Settings) -> Iterator[JobStore]:
    store = JobStore.from_settings(settings)
    store.migrate()
    yield store
    store.close()


def running_job(store: JobStore, settings: Settings, url: str, **fields: Any) -> Job:
    body = {
        "owner": "bench",
        "permlink": "portrait",
        "input_cid": CID,
        "short": False,
        "premium": True,
        "webhook_url": url,
        "api_key": HOOK_KEY,
        "frontend_app": "bench",
        "originalFilename": "portrait.mp4",
        **fields,
    }
    new = to_new_job(DirectJobRequest.model_validate(body), settings)
    store.submit(new, queue_max=100)
    job = store.claim(settings.node_name, lease_seconds=60)
    assert job is not None
    return job


def complete(
    store: JobStore, settings: Settings, job: Job, result: dict[str, Any], hooks: Any = None
) -> bool:
    """The scheduler's path: the completion and its report in one transaction, then the hook."""
    hooks = hooks or WebhookHooks(settings, store)
    done: bool = store.complete(
        job.id, settings.node_name, result, report=hooks.completion_report(job, result)
    )
    asyncio.run(hooks.completed(job, result))
    return done


def deliver(deliverer: OutboxDeliverer) -> int:
    return asyncio.run(deliverer.deliver_due())


# --- bodies and headers -----------------------------------------------------------------------


def test_completion_webhook_matches_the_wire_format(
    settings: Settings, store: JobStore, receiver: WebhookReceiver
) -> None:
    job = running_job(store, settings, receiver.hook_url("hook/portrait/"))
    assert complete(store, settings, job, RESULT)
    [row] = store.outbox_rows(job.id)
    assert row.idempotency_key == f"{job.id}:complete"
    assert store.require(job.id).state is JobState.COMPLETE  # stored with its report
    assert deliver(OutboxDeliverer(settings, store)) == 1
    (got,) = receiver.wait_for(1)
    assert got.path == "/hook/portrait/"
    body = got.json()
    sample = next(
        s for s in json.loads(VECTORS.read_text())["samples"] if s["kind"] == "completion"
    )
    assert list(body) == list(sample["body"])  # same keys, same order
    for key, value in sample["body"].items():
        assert type(body[key]) is type(value), key
    assert body["qualities_encoded"] == ["720p", "480p"]  # the rungs really encoded
    assert body["encoder_id"] == "test-encoder-1"
    assert (body["status"], body["progress"], body["manifest_cid"]) == ("complete", 100, ROOT)
    assert body["video_url"] == f"ipfs://{ROOT}/{MASTER_NAME}" == f"ipfs://{ROOT}/manifest.m3u8"
    assert body["input_cid"] == CID and body["job_id"] == job.id
    assert ISO_Z.match(body["timestamp"])
    assert (body["frontend_app"], body["originalFilename"]) == ("bench", "portrait.mp4")
    headers = got.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT and USER_AGENT.startswith("speak-encoder/")
    assert headers["x-api-key"] == HOOK_KEY
    assert headers["idempotency-key"] == f"{job.id}:complete"
    assert verify_signature(SECRET, headers["x-speak-signature"], got.body)
    assert not verify_signature("other-secret", headers["x-speak-signature"], got.body)
    assert not verify_signature(SECRET, headers["x-speak-signature"], got.body + b" ")
    assert store.outbox_counts()["delivered"] == 1


def test_completion_webhook_names_the_poster_in_one_extra_field(
    settings: Settings, store: JobStore
) -> None:
    job = running_job(store, settings, "http://127.0.0.1:9/hook")
    plain = completion_body(job, RESULT, settings, now=1_700_000_000.0)
    poster = f"ipfs://{ROOT}/thumbnail.jpg"
    with_poster = completion_body(job, {**RESULT, "thumbnail": poster}, settings,
                                  now=1_700_000_000.0)  # fmt: skip
    assert list(with_poster) == [*plain, "thumbnail_url"]  # every existing field as it was
    assert {k: v for k, v in with_poster.items() if k != "thumbnail_url"} == plain
    assert with_poster["thumbnail_url"] == poster


def test_unsigned_without_a_secret(
    make_settings: Callable[..., Settings], store: JobStore, receiver: WebhookReceiver
) -> None:
    settings = make_settings(webhook_secret=None)
    job = running_job(store, settings, receiver.hook_url())
    complete(store, settings, job, RESULT)
    deliver(OutboxDeliverer(settings, store))
    (got,) = receiver.wait_for(1)
    assert "x-speak-signature" not in got.headers


def test_failure_webhook_is_sent_once(
    settings: Settings, store: JobStore, receiver: WebhookReceiver
) -> None:
    job = running_job(store, settings, receiver.hook_url(), input_cid=f"ipfs://{CID}")
    hooks = WebhookHooks(settings, store)
    error = f"ffmpeg could not decode {settings.work_dir}/{job.id}/source.mp4"
    for _ in range(2):  # the scheduler's path: the failure and its report in one transaction
        report = hooks.failure_report(job, MediaError(error))
        store.fail(job.id, settings.node_name, error=error, kind="MediaError", report=report)
    assert store.require(job.id).state.value == "failed"
    deliverer = OutboxDeliverer(settings, store)
    assert deliver(deliverer) == 1
    assert deliver(deliverer) == 0
    (got,) = receiver.wait_for(1)
    body = got.json()
    assert list(body) == [
        "owner", "permlink", "input_cid", "status", "job_id", "processing_time_seconds",
        "qualities_encoded", "encoder_id", "error", "timestamp",
    ]  # fmt: skip
    assert body["status"] == "failed" and body["qualities_encoded"] == []
    assert body["input_cid"] == f"ipfs://{CID}"  # as submitted
    assert isinstance(body["processing_time_seconds"], float)
    assert "source.mp4" in body["error"] and str(settings.work_dir) not in body["error"]
    assert got.headers["idempotency-key"] == f"{job.id}:failed"
    assert store.outbox_counts() == {"pending": 0, "delivered": 1, "given_up": 0}


def test_xss_owner_is_sent_verbatim_as_json(
    settings: Settings, store: JobStore, receiver: WebhookReceiver
) -> None:
    evil = "<img src=x onerror=alert(1)>"
    job = running_job(store, settings, receiver.hook_url(), owner=evil, permlink=evil)
    complete(store, settings, job, RESULT)
    deliver(OutboxDeliverer(settings, store))
    body = receiver.wait_for(1)[0].json()
    assert body["owner"] == evil and body["permlink"] == evil


# --- progress ---------------------------------------------------------------------------------


def test_progress_throttle_rule() -> None:
    throttle = ProgressThrottle()

    def ping(job: str, value: int, stage: str, now: float) -> bool:
        if throttle.due(job, value, stage, now):
            throttle.sent(job, value, stage, now)
            return True
        return False

    assert ping("a", 0, "download", 0.0)  # the first one goes
    assert not ping("a", 0, "download", 30.0)  # nothing moved
    assert not ping("a", 2, "download", 2.0)  # < 5 points within 10 s
    assert ping("a", 6, "download", 4.0)  # ≥ 5 points
    assert not ping("a", 8, "encode", 9.0)  # a new stage is no exception within 10 s
    assert ping("a", 8, "encode", 14.0)  # 10 s later
    assert ping("b", 0, "download", 14.0)  # per job
    throttle.forget("a")
    assert ping("a", 8, "encode", 14.5)


def test_progress_pings_path_body_and_throttle(
    settings: Settings, store: JobStore, receiver: WebhookReceiver
) -> None:
    job = running_job(store, settings, receiver.hook_url("hook/portrait/"))
    clock = Clock(0.0)
    hooks = WebhookHooks(settings, store, clock=clock)
    # (time, stage, fraction): a heartbeat every 2 s
    ticks = [
        (0, Stage.FETCH, 0.0),  # sent (first)
        (2, Stage.FETCH, 0.1),  # 1 point: no
        (4, Stage.FETCH, 0.9),  # 9 points: sent
        (6, Stage.PROBE, 0.0),  # +1 point within 10 s: no
        (8, Stage.ENCODE, 0.01),  # 12: +3 points: no
        (16, Stage.ENCODE, 0.02),  # 13, 12 s after the last: sent
        (18, Stage.ENCODE, 0.03),  # no
        (20, Stage.ENCODE, 0.5),  # 48: sent
        (22, Stage.PUBLISH, 0.0),  # 88: sent (≥ 5 points)
        (24, Stage.PUBLISH, 0.1),  # 89: no
    ]

    deliverer = OutboxDeliverer(settings, store)

    async def scenario() -> None:
        for at, stage, fraction in ticks:
            clock.now = at
            hooks.progress(job, stage, fraction)
            await hooks.wait_idle()
            await deliverer.deliver_due()

    asyncio.run(scenario())
    pings = receiver.wait_for(5, progress=True)
    assert {p.path for p in pings} == {"/hook/portrait/progress"}
    bodies = [p.json() for p in pings]  # in order: one job's reports leave one at a time
    assert [(b["progress"], b["stage"]) for b in bodies] == [
        (0, "download"), (9, "download"), (13, "encode"), (48, "encode"), (88, "upload"),
    ]  # fmt: skip
    assert all(set(b) == {"owner", "permlink", "progress", "stage"} for b in bodies)
    assert all(p.headers["x-api-key"] == HOOK_KEY for p in pings)
    assert all(verify_signature(SECRET, p.headers["x-speak-signature"], p.body) for p in pings)
    assert "idempotency-key" not in pings[0].headers
    assert len(receiver.received(progress=True)) == 5
    assert store.outbox_rows(job.id) == []  # a delivered progress report leaves no row


def test_progress_to_an_unreachable_or_refused_url_is_harmless(
    make_settings: Callable[..., Settings], store: JobStore, closed_port: int
) -> None:
    settings = make_settings(allow_private_urls=False)
    job = running_job(store, settings, f"http://127.0.0.1:{closed_port}/hook")
    hooks = WebhookHooks(settings, store)

    deliverer = OutboxDeliverer(settings, store)

    async def scenario() -> int:
        hooks.progress(job, Stage.FETCH, 0.5)
        await hooks.wait_idle()
        return await deliverer.deliver_due()

    assert asyncio.run(scenario()) == 1  # refused by the guard, logged, nothing raised
    assert store.outbox_rows(job.id) == []  # dropped, never retried


# --- the outbox -------------------------------------------------------------------------------


def test_500s_are_retried_with_backoff_then_delivered_once(
    settings: Settings, store: JobStore, receiver: WebhookReceiver
) -> None:
    job = running_job(store, settings, receiver.hook_url())
    complete(store, settings, job, RESULT)
    receiver.script(500, 503)
    clock = Clock()
    deliverer = OutboxDeliverer(settings, store, clock=clock, jitter=lambda: 0.5)
    assert deliver(deliverer) == 1  # 500
    assert deliver(deliverer) == 0  # not due yet
    clock.now += 10  # WEBHOOK_RETRY_BASE
    assert deliver(deliverer) == 1  # 503
    clock.now += 10
    assert deliver(deliverer) == 0  # the back-off doubled
    clock.now += 10
    assert deliver(deliverer) == 1  # 200
    clock.now += 3600
    assert deliver(deliverer) == 0
    got = receiver.wait_for(3)
    assert len({r.body for r in got}) == 1  # the same bytes every time
    assert {r.headers["idempotency-key"] for r in got} == {f"{job.id}:complete"}
    assert all(
        verify_signature(SECRET, r.headers["x-speak-signature"], r.body, now=Clock().now + 30)
        for r in got
    )
    assert len({r.headers["x-speak-signature"] for r in got}) == 3  # signed at each attempt
    assert store.outbox_counts() == {"pending": 0, "delivered": 1, "given_up": 0}


def test_4xx_gives_up_at_once(
    settings: Settings, store: JobStore, receiver: WebhookReceiver
) -> None:
    job = running_job(store, settings, receiver.hook_url())
    complete(store, settings, job, RESULT)
    receiver.script(400)
    clock = Clock()
    deliverer = OutboxDeliverer(settings, store, clock=clock)
    assert deliver(deliverer) == 1
    clock.now += 100_000
    assert deliver(deliverer) == 0
    assert len(receiver.received()) == 1
    assert store.outbox_counts() == {"pending": 0, "delivered": 0, "given_up": 1}


def test_gives_up_after_max_attempts(
    make_settings: Callable[..., Settings], store: JobStore, receiver: WebhookReceiver
) -> None:
    settings = make_settings(webhook_max_attempts=2)
    job = running_job(store, settings, receiver.hook_url())
    complete(store, settings, job, RESULT)
    receiver.script(500, 500, 500)
    clock = Clock()
    deliverer = OutboxDeliverer(settings, store, clock=clock)
    for _ in range(4):
        deliver(deliverer)
        clock.now += 1000
    assert len(receiver.received()) == 2
    assert store.outbox_counts()["given_up"] == 1


def test_slow_receiver_times_out_and_is_retried(
    make_settings: Callable[..., Settings], store: JobStore, receiver: WebhookReceiver
) -> None:
    settings = make_settings(webhook_timeout=0.3)
    job = running_job(store, settings, receiver.hook_url())
    complete(store, settings, job, RESULT)
    receiver.delay = 1.0
    clock = Clock()
    deliverer = OutboxDeliverer(settings, store, clock=clock)
    assert deliver(deliverer) == 1
    assert store.outbox_counts()["pending"] == 1  # timed out: still pending
    receiver.delay = 0.0
    clock.now += 100
    assert deliver(deliverer) == 1
    assert store.outbox_counts()["delivered"] == 1


def test_outbox_survives_a_restart_and_report_is_idempotent(
    settings: Settings, receiver: WebhookReceiver
) -> None:
    first = JobStore.from_settings(settings)
    first.migrate()
    job = running_job(first, settings, receiver.hook_url())
    hooks = WebhookHooks(settings, first)
    assert complete(first, settings, job, RESULT, hooks)
    # the report stage ran twice (a crash): the job is no longer this run's, nothing is added
    assert not complete(first, settings, job, RESULT, hooks)
    assert len(first.outbox_rows(job.id)) == 1
    first.close()  # "restart": nothing was delivered

    second = JobStore.from_settings(settings)
    try:
        assert second.outbox_counts()["pending"] == 1
        deliverer = OutboxDeliverer(settings, second, poll_interval=0.1)

        async def scenario() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(deliverer.run(stop))
            for _ in range(100):
                if second.outbox_counts()["delivered"]:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(task, 5)

        asyncio.run(scenario())
        assert second.outbox_counts() == {"pending": 0, "delivered": 1, "given_up": 0}
        assert len(receiver.received()) == 1
    finally:
        second.close()


def test_delivery_rechecks_the_url(
    make_settings: Callable[..., Settings], store: JobStore, receiver: WebhookReceiver
) -> None:
    lab = make_settings()
    job = running_job(store, lab, receiver.hook_url())
    complete(store, lab, job, RESULT)
    strict = make_settings(allow_private_urls=False)  # e.g. the setting changed, or DNS did
    assert deliver(OutboxDeliverer(strict, store)) == 1
    assert receiver.received() == []
    assert store.outbox_counts()["given_up"] == 1


def test_ipfs_rpc_webhook_is_given_up_even_in_a_lab(
    make_settings: Callable[..., Settings], store: JobStore, receiver: WebhookReceiver
) -> None:
    settings = make_settings(ipfs_api_addr=f"/ip4/127.0.0.1/tcp/{receiver.port}")
    job = running_job(store, settings, receiver.hook_url())
    complete(store, settings, job, RESULT)
    assert deliver(OutboxDeliverer(settings, store)) == 1
    assert receiver.received() == []
    assert store.outbox_counts()["given_up"] == 1


def test_other_outbox_kinds_are_left_alone(settings: Settings, store: JobStore) -> None:
    store.outbox_add(
        job_id=None, kind="gateway.finishJob", target="https://gw.example/finish",
        payload={}, headers={}, idempotency_key="x:finish",
    )  # fmt: skip
    assert deliver(OutboxDeliverer(settings, store)) == 0
    assert store.outbox_counts()["pending"] == 1


def test_embed_jobs_use_the_same_hooks(
    settings: Settings, store: JobStore, receiver: WebhookReceiver
) -> None:
    request = DirectJobRequest.model_validate(
        {"owner": "o", "permlink": "p", "input_cid": CID, "short": True,
         "webhook_url": receiver.hook_url(), "api_key": "k"}
    )  # fmt: skip
    store.submit(to_new_job(request, settings, SourceKind.EMBED), queue_max=10)
    job = store.claim(settings.node_name, lease_seconds=60)
    assert job is not None and job.kind is SourceKind.EMBED
    complete(store, settings, job, {**RESULT, "qualities_encoded": ["480p"]})
    deliver(OutboxDeliverer(settings, store))
    body = receiver.wait_for(1)[0].json()
    assert body["qualities_encoded"] == ["480p"] and "frontend_app" not in body


class _Watching(WebhookHooks):
    """Records what the store holds when the report is built and once it was stored."""

    seen: list[tuple[str, JobState, int]]

    def completion_report(self, job: Job, result: dict[str, Any]) -> OutboxEntry | None:
        self.seen.append(
            ("built", self.store.require(job.id).state, len(self.store.outbox_rows(job.id)))
        )
        return super().completion_report(job, result)

    async def completed(self, job: Job, result: dict[str, Any]) -> None:
        self.seen.append(
            ("stored", self.store.require(job.id).state, len(self.store.outbox_rows(job.id)))
        )
        await super().completed(job, result)


def test_the_completion_report_is_stored_with_the_completion(
    settings: Settings, store: JobStore, receiver: WebhookReceiver
) -> None:
    """No completion report exists while the job still runs: a source that hears of the
    completion and offers the job again finds it complete (and reopened), never running."""
    body = {"owner": "o", "permlink": "p", "input_cid": CID, "short": True,
            "webhook_url": receiver.hook_url(), "api_key": HOOK_KEY}  # fmt: skip
    job_id = store.submit(to_new_job(DirectJobRequest.model_validate(body), settings),
                          queue_max=10)[0].id  # fmt: skip
    # published before a restart: only the report stage is left to run
    store.save_checkpoint(job_id, Stage.PUBLISH, {**RESULT, "targets": {}}, node="earlier")
    hooks = _Watching(settings, store)
    hooks.seen = []
    scheduler = Scheduler(settings, store, node=settings.node_name,
                          hooks={SourceKind.DIRECT: hooks})  # fmt: skip

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop))
        for _ in range(200):
            if store.require(job_id).state is JobState.COMPLETE and len(hooks.seen) == 2:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert hooks.seen == [("built", JobState.RUNNING, 0), ("stored", JobState.COMPLETE, 1)]
    [row] = store.outbox_rows(job_id)
    assert row.idempotency_key == f"{job_id}:complete" and not row.progress
    assert deliver(OutboxDeliverer(settings, store)) == 1
    assert receiver.wait_for(1)[0].json()["manifest_cid"] == ROOT
