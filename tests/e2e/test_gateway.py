"""The legacy gateway source (docs/protocols.md §2) against the reference gateway.

In-process tests drive :class:`GatewaySource` one poll round at a time (``cycle()``) over a real
job store; end-to-end tests run a real node process (the service + the gateway source) that
fetches, encodes, publishes to a real js-ipfs node and reports ``finishJob``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from speak_encoder import USER_AGENT, __version__
from speak_encoder.config import Settings
from speak_encoder.errors import MediaError
from speak_encoder.node.models import Job, JobState, SourceKind, Stage
from speak_encoder.node.scheduler import Scheduler
from speak_encoder.node.store import JobStore
from speak_encoder.sources.gateway import (
    GATEWAY_KINDS,
    GatewayHooks,
    GatewaySource,
    LegacyGatewayClient,
    ping_figures,
)
from speak_encoder.testing.gateway import ReferenceGateway
from speak_encoder.testing.http_faults import BytesPayload, FaultServer
from speak_encoder.testing.ipfs_node import JsIpfsNode
from speak_encoder.testing.ipfs_proxy import KuboFaultProxy
from tests.support.gateway_fixtures import (
    GatewayNodeProcess,
    NodeKey,
    gateway_settings,
    make_gateway_node,
    new_node_key,
    node_key,
    reference_gateway,
)

__all__ = ["gateway_settings", "make_gateway_node", "node_key", "reference_gateway"]

T = TypeVar("T")
CID_HELLO = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Harness:
    """A store + an idle scheduler + a GatewaySource, in one event loop."""

    def __init__(self, settings: Settings, key: NodeKey) -> None:
        self.settings = settings
        self.store = JobStore.from_settings(settings)
        self.store.migrate()
        self.scheduler = Scheduler(settings, self.store, node="n1")
        self.source = GatewaySource(settings, self.store, self.scheduler, key.identity)
        self.hooks: GatewayHooks = self.source.hooks

    def jobs(self) -> list[Job]:
        return self.store.list_jobs()

    async def close(self) -> None:
        await self.source.client.aclose()
        self.store.close()

    async def __aenter__(self) -> Harness:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


def harness(
    make_settings: Callable[..., Settings], gw: ReferenceGateway, key: NodeKey, **kw: Any
) -> Harness:
    return Harness(make_settings(gateway_url=gw.url, **kw), key)


OpenHarness = Callable[..., Harness]


@pytest.fixture
def open_harness(
    gateway_settings: Callable[..., Settings], reference_gateway: ReferenceGateway,
    node_key: NodeKey,
) -> OpenHarness:  # fmt: skip
    """A :class:`Harness` on the test's reference gateway and node key (``**kw``: settings)."""
    return lambda **kw: harness(gateway_settings, reference_gateway, node_key, **kw)


# --- claiming --------------------------------------------------------------------------------


def test_register_poll_claim_and_submit(
    open_harness: OpenHarness, reference_gateway: ReferenceGateway, node_key: NodeKey
) -> None:
    gw = reference_gateway
    gw.preassign = False
    offered = gw.add_job("http://127.0.0.1:9/v.mp4", size=4321, owner="bob", permlink="vid")

    async def scenario() -> None:
        async with open_harness() as h:
            await h.source.cycle()
            await h.source.cycle()  # capacity is 1 and one job is queued: no poll now
        [job] = h.jobs()
        assert (job.kind, job.external_id, job.dedup_key) == (
            SourceKind.GATEWAY, offered["id"], f"gateway:{offered['id']}",
        )  # fmt: skip
        assert job.source == "http://127.0.0.1:9/v.mp4" and job.rungs is None
        assert job.size_hint == 4321 and job.request["metadata"]["video_owner"] == "bob"

    run(scenario())
    routes = [c.route for c in gw.calls()]
    assert routes == [
        "updateNode", "heartbeat", "myJob", "getJob", "jobstatus", "acceptJob", "jobstatus",
        "heartbeat",
    ]  # fmt: skip
    info = gw.calls("updateNode")[0].payload
    assert info == {
        "node_info": {
            "name": "gw-test-node",
            "cryptoAccounts": {"hive": "tester"},
            "commit_hash": __version__,
        }
    }
    assert gw.calls("heartbeat")[0].payload is not None
    assert set(gw.calls("heartbeat")[0].payload or {}) == {"timestamp", "version"}
    assert {c.user_agent for c in gw.calls()} == {USER_AGENT}
    assert all(c.did == node_key.did for c in gw.calls() if c.method == "POST")
    assert gw.job(offered["id"]).assigned_to == node_key.did


def test_my_job_is_still_accepted(
    open_harness: OpenHarness, reference_gateway: ReferenceGateway
) -> None:
    gw = reference_gateway
    offered = gw.add_job("ipfs://" + CID_HELLO)

    async def scenario() -> None:
        async with open_harness() as h:
            await h.source.cycle()
        assert [j.external_id for j in h.jobs()] == [offered["id"]]

    run(scenario())
    assert "getJob" not in [c.route for c in gw.calls()]
    assert [c.payload for c in gw.calls("acceptJob")] == [{"job_id": offered["id"]}]


def test_race_answers_are_skipped_silently(
    open_harness: OpenHarness,
    reference_gateway: ReferenceGateway,
    node_key: NodeKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = reference_gateway
    gw.preassign = False
    offered = gw.add_job("http://127.0.0.1:9/v.mp4")
    rival = new_node_key()
    gw.reassign(offered["id"], rival.did)

    async def scenario() -> None:
        async with open_harness() as h:
            assert await h.source.claim(offered) is False  # jobstatus shows the rival
            assert await h.source.client.accept_job(offered["id"]) is False  # 409
        assert h.jobs() == []

    with caplog.at_level(logging.INFO):
        run(scenario())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_refused_sources_are_not_claimed(
    open_harness: OpenHarness, reference_gateway: ReferenceGateway
) -> None:
    gw = reference_gateway
    gw.preassign = False
    private = gw.add_job("http://127.0.0.1:5001/api/v0/cat?arg=x")
    local = gw.add_job("/etc/passwd")

    async def scenario() -> None:
        async with open_harness(allow_private_urls=False) as h:
            assert await h.source.claim(private) is False
            assert await h.source.claim(local) is False
        assert h.jobs() == []

    run(scenario())
    assert gw.calls("acceptJob") == []


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "timeout", "malformed", "html"])
def test_gateway_errors_back_off_then_recover(
    fault: Any, gateway_settings: Callable[..., Settings], node_key: NodeKey,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    with ReferenceGateway(hang_seconds=3) as gw:
        gw.preassign = False
        offered = gw.add_job("http://127.0.0.1:9/v.mp4")
        for route in ("myJob", "getJob"):
            gw.fail_next(route, fault, times=2)

        async def scenario() -> list[float]:
            async with harness(
                gateway_settings, gw, node_key, gateway_timeout=0.5, gateway_poll_interval=1.0
            ) as h:
                delays = [await h.source.cycle() for _ in range(6)]
            assert [j.external_id for j in h.jobs()] == [offered["id"]]
            return delays

        with caplog.at_level(logging.INFO):
            delays = run(scenario())
    # failed rounds: the back-off grows (1 s, 2 s … ± 20 %); then the claim
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4, delays
    assert not any(r.exc_info for r in caplog.records), "no traceback in the logs"
    assert len(gw.calls("acceptJob")) == 1


def test_404_means_no_job_and_is_not_an_error(
    open_harness: OpenHarness, reference_gateway: ReferenceGateway
) -> None:
    gw = reference_gateway
    gw.fail_next("myJob", "404")

    async def scenario() -> float:
        async with open_harness(gateway_poll_interval=1.0) as h:
            return await h.source.cycle()

    assert 0.8 <= run(scenario()) <= 1.2
    assert [c.status for c in gw.calls("getJob")] == [404]


def test_signature_rejected_backs_off_with_a_hint(
    open_harness: OpenHarness, reference_gateway: ReferenceGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = reference_gateway
    gw.refuse_signatures = True
    gw.add_job("http://127.0.0.1:9/v.mp4")

    async def scenario() -> list[float]:
        async with open_harness(gateway_poll_interval=1.0) as h:
            delays = [await h.source.cycle(), await h.source.cycle()]
            gw.refuse_signatures = False
            await h.source.cycle()
            assert len(h.jobs()) == 1
            return delays

    with caplog.at_level(logging.INFO):
        delays = run(scenario())
    assert delays[1] > delays[0] * 1.3
    hints = [r for r in caplog.records if "check ENCODER_PRIVATE_KEY" in r.getMessage()]
    assert len(hints) == 1 and hints[0].levelno == logging.ERROR
    assert not any(r.exc_info for r in caplog.records)


def test_needs_update_is_logged_and_exposed(
    open_harness: OpenHarness, reference_gateway: ReferenceGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = reference_gateway
    gw.needs_update, gw.latest_version = True, "2.0.0"

    async def scenario() -> GatewaySource:
        async with open_harness() as h:
            await h.source.cycle()
            await h.source.cycle()
        return h.source

    with caplog.at_level(logging.WARNING):
        source = run(scenario())
    assert source.needs_update is True and source.latest_version == "2.0.0"
    assert len([r for r in caplog.records if "needs an update" in r.getMessage()]) == 1


# --- the hooks: pings, ownership, reports -------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _claimed(h: Harness, gw: ReferenceGateway) -> Job:
    offered = gw.add_job("http://127.0.0.1:9/v.mp4")
    assert await h.source.claim(offered)
    [job] = h.jobs()
    return job


async def _settle(hooks: GatewayHooks) -> None:
    for state in list(hooks._pings.values()):
        if state.task is not None:
            await state.task


def test_pings_are_throttled_and_keep_the_job_alive(
    open_harness: OpenHarness, reference_gateway: ReferenceGateway
) -> None:
    gw = reference_gateway

    async def scenario() -> None:
        async with open_harness() as h:
            clock = FakeClock()
            h.hooks.clock = clock
            job = await _claimed(h, gw)
            steps = [
                (0.0, Stage.FETCH, 0.1),  # first: at once
                (5.0, Stage.FETCH, 0.9),  # < 10 s: no
                (11.0, Stage.FETCH, 0.9),  # moved: yes
                (25.0, Stage.FETCH, 0.9),  # not moved, < 30 s: no
                (42.0, Stage.FETCH, 0.9),  # keep-alive: yes
                (53.0, Stage.PUBLISH, 0.0),  # moved: yes
            ]
            for at, stage, fraction in steps:
                clock.now = 1000.0 + at
                h.hooks.progress(job, stage, fraction)
                h.hooks.progress(job, stage, fraction)  # never two in flight
                await _settle(h.hooks)

    run(scenario())
    pings = [c.payload for c in gw.calls("pingJob")]
    assert [(p or {}).get("download_pct") for p in pings] == [10.0, 90.0, 90.0, 100.0]
    assert [(p or {}).get("progressPct") for p in pings] == [
        ping_figures(Stage.FETCH, 0.1)[0], 9.1, 9.1, 92.0,
    ]  # fmt: skip
    assert all(set(p or {}) == {"job_id", "progressPct", "download_pct"} for p in pings)
    assert all((p or {})["progressPct"] >= 1 for p in pings)


def test_a_job_taken_by_another_did_is_cancelled_not_finished(
    open_harness: OpenHarness, reference_gateway: ReferenceGateway, node_key: NodeKey
) -> None:
    gw = reference_gateway

    async def scenario() -> Job:
        async with open_harness() as h:
            job = await _claimed(h, gw)
            gw.reassign(str(job.external_id), new_node_key().did)
            h.hooks.progress(job, Stage.ENCODE, 0.5)
            await _settle(h.hooks)
            h.hooks.progress(job, Stage.ENCODE, 0.9)  # lost: no more pings
            return h.store.require(job.id)

    job = run(scenario())
    assert job.state is JobState.CANCELLED
    assert [c.status for c in gw.calls("pingJob")] == [409]
    assert gw.calls("finishJob") == []


def test_finish_fail_reject_go_through_the_outbox_once(
    open_harness: OpenHarness, reference_gateway: ReferenceGateway
) -> None:
    gw = reference_gateway

    async def scenario() -> None:
        async with open_harness() as h:
            job = await _claimed(h, gw)
            gw.fail_next("finishJob", "500", times=1)
            running = h.store.claim(h.settings.node_name, lease_seconds=60)
            assert running is not None and running.id == job.id
            # the scheduler's path: the completion and its report in one transaction
            result = {"cid": "QmResult"}
            report = h.hooks.completion_report(running, result)
            assert h.store.complete(job.id, h.settings.node_name, result, report=report)
            await h.hooks.completed(running, result)
            # a resumed report stage: the job is no longer this run's, nothing is added
            assert not h.store.complete(job.id, h.settings.node_name, result, report=report)
            assert h.store.outbox_counts()["pending"] == 1
            await h.hooks.deliver_due()  # 500: retried later
            assert h.store.outbox_counts()["pending"] == 1
            [item] = h.store.outbox_claim(  # as the deliverer would once the back-off is over
                h.settings.node_name, kinds=GATEWAY_KINDS, lease_seconds=60, limit=5,
                now=time.time() + 3600,
            )  # fmt: skip
            await h.hooks._deliver(item)
            await h.hooks.deliver_due()
            assert h.store.outbox_counts()["delivered"] == 1

            other = gw.add_job("http://127.0.0.1:9/w.mp4")
            h.store.request_cancel(job.id)
            await h.source.claim(other)
            second = next(j for j in h.jobs() if j.external_id == other["id"])
            # what the scheduler stores with the failure, in the same transaction
            report = h.hooks.failure_report(second, MediaError("not a video"))
            assert report is not None
            h.store.outbox_put(second.id, report)
            await h.hooks.failed(second, MediaError("not a video"))
            await h.hooks.deliver_due()

    run(scenario())
    finishes = gw.calls("finishJob")
    assert [c.status for c in finishes] == [500, 200]
    assert finishes[1].payload == {
        "job_id": gw.calls("acceptJob")[0].payload["job_id"],  # type: ignore[index]
        "output": {"cid": "QmResult"},
    }
    [fail] = gw.calls("failJob")
    payload = fail.payload or {}
    assert set(payload) == {"job_id", "error", "timestamp", "encoder_time"}
    assert payload["error"]["retryable"] is False and payload["error"]["error"] == "not a video"
    assert payload["error"]["encoder_version"] == __version__
    assert fail.status == 200


def test_finish_answers(gateway_settings: Callable[..., Settings], node_key: NodeKey) -> None:
    """5xx "already completed" = success; {"status": "error"} = failure; missing status = ok."""
    import httpx

    from speak_encoder.sources.gateway_protocol import GatewayRejected

    answers = iter(
        [
            httpx.Response(500, json={"message": "Job already completed"}),
            httpx.Response(200, json={"success": True}),
            httpx.Response(200, json={"status": "error", "message": "no"}),
        ]
    )
    transport = httpx.MockTransport(lambda request: next(answers))
    client = LegacyGatewayClient(gateway_settings(), node_key.identity, transport=transport)

    async def scenario() -> None:
        await client.finish_job("j", "Qm1")
        await client.finish_job("j", "Qm1")
        with pytest.raises(GatewayRejected):
            await client.finish_job("j", "Qm1")
        await client.aclose()

    run(scenario())


def test_released_rejects_and_does_not_resume(
    open_harness: OpenHarness, reference_gateway: ReferenceGateway
) -> None:
    gw = reference_gateway

    async def scenario() -> Job:
        async with open_harness() as h:
            job = await _claimed(h, gw)
            await h.hooks.released(job)
            return h.store.require(job.id)

    job = run(scenario())
    assert job.state is JobState.CANCELLED
    assert [c.status for c in gw.calls("rejectJob")] == [200]
    assert gw.job(str(job.external_id)).status == "queued"


# --- end to end: a real node process -----------------------------------------------------------


def _wait(
    check: Callable[[], Any], what: str, node: GatewayNodeProcess, timeout: float = 90
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if not node.alive():
            raise AssertionError(f"node exited waiting for {what}:\n{node.log()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{node.log()[-3000:]}")


def _local_job(node: GatewayNodeProcess) -> Job | None:
    store = node.store()
    try:
        jobs = store.list_jobs()
    finally:
        store.close()
    return jobs[0] if jobs else None


def _completed_locally(node: GatewayNodeProcess) -> Job:
    """The node's one job, once its own store has it complete."""
    job: Job = _wait(lambda: (j := _local_job(node)) and j.state is JobState.COMPLETE and j,
                     "local completion", node)  # fmt: skip
    return job


def test_end_to_end_encode_publish_finish_with_pings_in_every_stage(
    make_gateway_node: Callable[..., GatewayNodeProcess], reference_gateway: ReferenceGateway,
    node_key: NodeKey, ipfs_node: JsIpfsNode, sample: Callable[[str], Path],
) -> None:  # fmt: skip
    gw = reference_gateway
    data = sample("landscape").read_bytes()
    with FaultServer() as source, KuboFaultProxy(ipfs_node.api_url) as proxy:
        # each of fetch, encode and publish lasts > 10 s (the ping throttle)
        source.add("/clip.mp4", BytesPayload(data), trickle=0.1, trickle_bytes=len(data) // 110)
        proxy.hold_add = 11.0
        offered = gw.add_job(source.url("/clip.mp4"), size=len(data))
        node = make_gateway_node(
            GATEWAY_ENABLED="true", GATEWAY_URL=gw.url, ENCODER_PRIVATE_KEY=node_key.env_value,
            PUBLISH_TARGETS="local", IPFS_API_ADDR=proxy.url, ALLOW_PRIVATE_URLS="true",
            SPEAK_ENCODER_TEST_PAUSE_AFTER="encode", SPEAK_ENCODER_TEST_PAUSE_SECONDS="11",
        )  # fmt: skip
        node.start()
        _wait(lambda: gw.job(offered["id"]).status == "complete", "finishJob", node, timeout=120)
        job = _completed_locally(node)
    shown = json.loads(node.cli("jobs", "show", job.id, "--json").stdout)
    [finish] = gw.calls("finishJob")
    assert finish.payload == {"job_id": offered["id"], "output": {"cid": shown["result"]["cid"]}}
    assert shown["state"] == "complete" and shown["result"]["published"] is not None
    pings = [c.payload or {} for c in gw.calls("pingJob")]
    assert any(p["download_pct"] < 100 for p in pings), pings  # fetch
    assert any(12 <= p["progressPct"] <= 88 for p in pings), pings  # encode
    assert any(92 <= p["progressPct"] <= 98 for p in pings), pings  # publish
    stamps = [c.at for c in gw.calls("pingJob")]
    assert all(b - a >= 9.5 for a, b in itertools.pairwise(stamps)), stamps
    assert len(gw.calls("acceptJob")) == 1
    assert node.terminate() == 0


def test_kill9_mid_encode_resumes_without_second_accept_or_finish(
    make_gateway_node: Callable[..., GatewayNodeProcess], reference_gateway: ReferenceGateway,
    node_key: NodeKey, sample: Callable[[str], Path],
) -> None:  # fmt: skip
    gw = reference_gateway
    with FaultServer() as source:
        source.add("/clip.mp4", BytesPayload(sample("landscape").read_bytes()))
        offered = gw.add_job(source.url("/clip.mp4"))
        node = make_gateway_node(
            GATEWAY_ENABLED="true", GATEWAY_URL=gw.url, ENCODER_PRIVATE_KEY=node_key.env_value,
            ALLOW_PRIVATE_URLS="true",
        )  # fmt: skip
        node.start()
        _wait(lambda: (j := _local_job(node)) and j.stage is Stage.ENCODE, "encode", node)
        node.kill9()
        assert gw.job(offered["id"]).status in ("accepted", "running")
        node.start()
        _wait(lambda: gw.job(offered["id"]).status == "complete", "finishJob", node)
        job = _completed_locally(node)
        # three more poll rounds after the completion: nothing is claimed or finished again
        rounds = len(gw.calls("getJob"))
        _wait(lambda: len(gw.calls("getJob")) >= rounds + 3, "three more poll rounds", node)
    assert len(gw.calls("acceptJob")) == 1
    [finish] = gw.calls("finishJob")
    assert finish.payload == {"job_id": offered["id"], "output": {"cid": job.result["cid"]}}  # type: ignore[index]
    assert node.starts == 2 and node.terminate() == 0
