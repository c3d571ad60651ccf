"""The embed gateway source (docs/protocols.md §3) against the reference embed server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from speak_encoder import __version__
from speak_encoder.config import Settings
from speak_encoder.node.models import JobState, SourceKind
from speak_encoder.node.scheduler import Scheduler
from speak_encoder.node.store import JobStore
from speak_encoder.sources.embed import EmbedSource
from speak_encoder.storage.unixfs import import_file
from speak_encoder.testing.embed_server import EmbedServer
from speak_encoder.testing.http_faults import BytesPayload, FaultServer
from tests.support.gateway_fixtures import (
    GatewayNodeProcess,
    NodeKey,
    embed_server,
    gateway_settings,
    make_gateway_node,
    node_key,
)

__all__ = ["embed_server", "gateway_settings", "make_gateway_node", "node_key"]

CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"


def offer(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "owner": "alice", "permlink": "clip", "input_cid": f"ipfs://{CID}", "short": False,
        "premium": True, "webhook_url": "http://127.0.0.1:9/hook", "api_key": "k",
        "unknown_field": "ignored",
    }  # fmt: skip
    body.update(overrides)
    return body


class Harness:
    def __init__(self, settings: Settings, key: NodeKey) -> None:
        self.store = JobStore.from_settings(settings)
        self.store.migrate()
        self.scheduler = Scheduler(settings, self.store, node="n1")
        self.source = EmbedSource(settings, self.store, self.scheduler, key.identity)

    async def close(self) -> None:
        await self.source.client.aclose()
        self.store.close()


def test_same_job_offered_again_is_not_queued_twice(
    gateway_settings: Callable[..., Settings], node_key: NodeKey
) -> None:
    async def scenario() -> None:
        h = Harness(gateway_settings(), node_key)
        try:
            assert await h.source.submit(offer()) is True
            assert await h.source.submit(offer(input_cid=CID)) is False  # same CID, other form
            [job] = h.store.list_jobs()
            assert job.kind is SourceKind.EMBED and job.source == f"ipfs://{CID}"
            assert job.rungs is None and job.request["webhook_url"] == "http://127.0.0.1:9/hook"
            claimed = h.store.claim("n1", lease_seconds=60)
            assert claimed is not None
            h.store.complete(claimed.id, "n1", {"cid": "QmDone"})
            # recently completed and re-claimed upstream: the same job, reopened to report
            # again (the server is waiting for a webhook), never a second job
            assert await h.source.submit(offer()) is True
            [again] = h.store.list_jobs()
            assert (again.id, again.state, again.generation) == (job.id, JobState.QUEUED, 1)
            assert await h.source.submit(offer(permlink="other")) is True
            assert h.source.duplicates == 2 and h.source.submitted == 2
            assert SourceKind.EMBED in h.scheduler.hooks
        finally:
            await h.close()

    asyncio.run(scenario())


def test_invalid_and_unsafe_offers_are_skipped(
    gateway_settings: Callable[..., Settings], node_key: NodeKey,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    async def scenario() -> None:
        h = Harness(gateway_settings(allow_private_urls=False), node_key)
        try:
            assert await h.source.submit(offer(input_cid="not a cid")) is False
            assert await h.source.submit({"owner": "x"}) is False
            assert await h.source.submit(offer(webhook_url="http://169.254.169.254/x")) is False
            assert h.store.list_jobs() == []
        finally:
            await h.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert len(caplog.records) == 3 and not any(r.exc_info for r in caplog.records)


def test_register_retried_heartbeat_then_my_job(
    gateway_settings: Callable[..., Settings], embed_server: EmbedServer,
    node_key: NodeKey, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    embed = embed_server
    embed.fail_next("updateNode", "500", times=1)
    embed.fail_next("updateNode", "html", times=1)
    embed.add_video("bob", "v", CID)

    async def scenario() -> tuple[list[float], EmbedSource]:
        settings = gateway_settings(embed_gateway_url=embed.url, gateway_poll_interval=1.0)
        h = Harness(settings, node_key)
        try:
            delays = [await h.source.cycle() for _ in range(3)]
            assert [j.request["owner"] for j in h.store.list_jobs()] == ["bob"]
            embed.fail_next("*", "401", times=2)  # what the server answers a bad signature
            await h.source.cycle()
            await h.source.cycle()
            return delays, h.source
        finally:
            await h.close()

    with caplog.at_level(logging.INFO):
        delays, source = asyncio.run(scenario())
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4, delays
    # the real heartbeat answers {"success": true}: no needs_update (the legacy gateway's is
    # covered in test_gateway.py)
    assert source.registered and source.needs_update is False
    assert source.encoder_info is not None and source.encoder_info["access"] == "community"
    routes = [c.route for c in embed.calls()]
    assert routes[:5] == ["updateNode", "updateNode", "updateNode", "heartbeat", "myJob"]
    node_info = embed.calls("updateNode")[2].payload
    assert node_info == {
        "node_info": {"name": "gw-test-node", "cryptoAccounts": {"hive": "tester"},
                      "commit_hash": __version__},
    }  # fmt: skip
    assert set(embed.calls("myJob")[0].payload or {}) == {"timestamp"}
    assert embed.job("bob", "v").assigned_worker == embed.community_name(node_key.did)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("check ENCODER_PRIVATE_KEY" in m for m in messages) == 1
    assert sum("needs an update" in m for m in messages) == 0
    assert not any(r.exc_info for r in caplog.records)


def test_end_to_end_offered_again_encoded_once_reported_each_time(
    make_gateway_node: Callable[..., GatewayNodeProcess], embed_server: EmbedServer,
    node_key: NodeKey, sample: Callable[[str], Path],
) -> None:  # fmt: skip
    """The admin re-dispatches a job the node finished: ``myJob`` offers it again (a new claim,
    a new callback token): the node does not encode it twice, and reports it again each time
    (the server waits for a webhook, or the video stays "processing" forever)."""
    embed = embed_server
    with FaultServer() as ipfs_gateway:
        video = sample("landscape")
        cid = str(import_file(video).cid)  # the gateway's bytes are checked against the CID
        base = ipfs_gateway.add_gateway(cid, BytesPayload(video.read_bytes()))
        embed.ipfs_gateway = f"{base}/ipfs"  # input_cid: a loopback gateway URL
        embed.add_video("carol", "twice", cid)
        node = make_gateway_node(
            EMBED_GATEWAY_ENABLED="true", EMBED_GATEWAY_URL=embed.url,
            ENCODER_PRIVATE_KEY=node_key.env_value, IPFS_GATEWAYS=base,
            ALLOW_PRIVATE_URLS="true", WEBHOOK_RETRY_BASE="0.5",
        )  # fmt: skip
        node.start()

        def running(value: Any) -> Any:
            assert node.alive(), node.log()[-3000:]
            return value

        embed.wait_for(
            lambda: running([c for c in embed.calls("webhook") if c.status == 200]), 90,
            "the completion webhook",
        )  # fmt: skip
        for offer in (2, 3):
            embed.redispatch("carol", "twice")
            embed.wait_for(lambda n=offer: running(len(embed.offers()) >= n), 30, f"offer {offer}")
            embed.wait_for(
                lambda n=offer: running(
                    len([c for c in embed.calls("webhook") if c.status == 200]) >= n
                ),
                90, f"the completion sent again after offer {offer}",
            )  # fmt: skip
        store = node.store()
        try:
            jobs = store.list_jobs()
        finally:
            store.close()
    assert [j.state for j in jobs] == [JobState.COMPLETE]
    # encoded once; each redispatch (a new claim, a new token) got the completion again,
    # same manifest CID, with that claim's token — so the server's video is published again
    completions = embed.calls("webhook")
    offers = embed.offers()
    assert [c.status for c in completions] == [200, 200, 200]
    assert [c.api_key for c in completions] == [o["api_key"] for o in offers]
    assert len({o["api_key"] for o in offers}) == 3
    assert {c.body["manifest_cid"] for c in completions} == {jobs[0].result["cid"]}  # type: ignore[index]
    assert node.log().count(f"job {jobs[0].id} resumes at report") == 2
    encoded = jobs[0].result["qualities_encoded"]  # type: ignore[index]
    assert encoded and completions[0].body["qualities_encoded"] == encoded
    assert embed.video("twice").status == "published"
    assert node.terminate() == 0
