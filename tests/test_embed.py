"""The embed gateway source (protocols.md §3) against the reference gateway."""

from __future__ import annotations

import asyncio
import logging
import time
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
from speak_encoder.testing.gateway import ReferenceGateway
from speak_encoder.testing.http_faults import BytesPayload, FaultServer
from tests.support.gateway_fixtures import (
    GatewayNodeProcess,
    NodeKey,
    gateway_settings,
    make_gateway_node,
    node_key,
    reference_gateway,
)

__all__ = ["gateway_settings", "make_gateway_node", "node_key", "reference_gateway"]

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
            assert await h.source.submit(offer()) is False  # recently completed
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
    gateway_settings: Callable[..., Settings], reference_gateway: ReferenceGateway,
    node_key: NodeKey, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    gw = reference_gateway
    gw.needs_update = True
    gw.fail_next("updateNode", "500", times=1)
    gw.fail_next("updateNode", "html", times=1)
    gw.add_direct_job(owner="bob", permlink="v", input_cid=CID)

    async def scenario() -> tuple[list[float], EmbedSource]:
        settings = gateway_settings(embed_gateway_url=gw.url, gateway_poll_interval=1.0)
        h = Harness(settings, node_key)
        try:
            delays = [await h.source.cycle() for _ in range(3)]
            assert [j.request["owner"] for j in h.store.list_jobs()] == ["bob"]
            gw.refuse_signatures = True
            await h.source.cycle()
            await h.source.cycle()
            return delays, h.source
        finally:
            await h.close()

    with caplog.at_level(logging.INFO):
        delays, source = asyncio.run(scenario())
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4, delays
    assert source.registered and source.needs_update is True
    routes = [c.route for c in gw.calls()]
    assert routes[:5] == ["updateNode", "updateNode", "updateNode", "heartbeat", "myJob"]
    node_info = gw.calls("updateNode")[2].payload
    assert node_info == {
        "node_info": {"name": "gw-test-node", "cryptoAccounts": {"hive": "tester"},
                      "commit_hash": __version__},
    }  # fmt: skip
    assert set(gw.calls("myJob")[0].payload or {}) == {"timestamp"}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("check ENCODER_PRIVATE_KEY" in m for m in messages) == 1
    assert sum("needs an update" in m for m in messages) == 1
    assert not any(r.exc_info for r in caplog.records)


def test_end_to_end_offered_twice_encoded_once(
    make_gateway_node: Callable[..., GatewayNodeProcess], reference_gateway: ReferenceGateway,
    node_key: NodeKey, sample: Callable[[str], Path],
) -> None:  # fmt: skip
    gw = reference_gateway
    with FaultServer() as ipfs_gateway:
        video = sample("landscape")
        cid = str(import_file(video).cid)  # the gateway's bytes are checked against the CID
        base = ipfs_gateway.add_gateway(cid, BytesPayload(video.read_bytes()))
        gid = gw.add_direct_job(
            owner="carol", permlink="twice", input_cid=cid, premium=False,
            max_offers=3, complete_on_webhook=False,
        )  # fmt: skip
        node = make_gateway_node(
            EMBED_GATEWAY_ENABLED="true", EMBED_GATEWAY_URL=gw.url,
            ENCODER_PRIVATE_KEY=node_key.env_value, IPFS_GATEWAYS=base,
            ALLOW_PRIVATE_URLS="true", WEBHOOK_RETRY_BASE="0.5",
        )  # fmt: skip
        node.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = [w for w in gw.job(gid).webhooks if not w["progress"]]
            if gw.job(gid).offers >= 3 and done:
                break
            assert node.alive(), node.log()[-3000:]
            time.sleep(0.2)
        else:
            raise AssertionError(f"timed out: {gw.job(gid)}\n{node.log()[-3000:]}")
        time.sleep(1.0)
        store = node.store()
        try:
            jobs = store.list_jobs()
        finally:
            store.close()
    assert [j.state for j in jobs] == [JobState.COMPLETE]
    [completion] = [w for w in gw.job(gid).webhooks if not w["progress"]]
    assert completion["body"]["status"] == "complete"
    assert completion["body"]["manifest_cid"] == jobs[0].result["cid"]  # type: ignore[index]
    encoded = jobs[0].result["qualities_encoded"]  # type: ignore[index]
    assert encoded and completion["body"]["qualities_encoded"] == encoded
    assert node.terminate() == 0
