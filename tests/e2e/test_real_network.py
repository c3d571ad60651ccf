"""The node against the real 3Speak embed server's behaviour (modelled by
:class:`~speak_encoder.testing.embed_server.EmbedServer`), with real `speak-encoder run` processes.

Each behaviour is one that left a video stuck forever before:

* an admin redispatch of a finished job (managed mode): the same body POSTed to ``/encode``
  again, the server waiting for a webhook — the completion is delivered again (same manifest
  CID; encoded again only when the output is gone); a job that failed for good starts a new run;
* a job re-claimed with a fresh callback token (community mode): every later report uses it;
* an encoder removed (404 "Encoder not registered") re-registers; a banned one (403) is shown as
  such and waits;
* a slow ``/webhook/progress``, which sets the video back to "processing": no progress report is
  ever sent after the final one, so the published video stays published.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from speak_encoder.node.models import JobState
from speak_encoder.storage.unixfs import import_file
from speak_encoder.testing.embed_server import EmbedServer
from speak_encoder.testing.http_faults import BytesPayload, FaultServer
from speak_encoder.testing.ipfs_node import JsIpfsNode, free_port
from tests.support.direct_nodes import wait_http
from tests.support.gateway_fixtures import GatewayNodeProcess, NodeKey

MakeNode = Callable[..., GatewayNodeProcess]
DIRECT_KEY = "managed-encoder-api-key-0123456789"


@pytest.fixture
def ipfs_gateway() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def serve(gateway: FaultServer, path: Path) -> tuple[str, str]:
    """``path`` on the loopback IPFS gateway under its real CID: (cid, gateway base URL)."""
    cid = str(import_file(path).cid)
    return cid, gateway.add_gateway(cid, BytesPayload(path.read_bytes()))


def alive(node: GatewayNodeProcess) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        assert node.alive(), node.log()[-3000:]
        return value

    return check


def finals(embed: EmbedServer, status: int = 200) -> list[Any]:
    return [c for c in embed.calls("webhook") if c.status == status]


def managed_node(
    make_node: MakeNode, embed: EmbedServer, gateway: FaultServer, source: Path
) -> tuple[GatewayNodeProcess, str]:
    """A started node with the Direct API, registered with ``embed`` as a managed encoder,
    ``source`` served by the loopback IPFS ``gateway``; returns it and the source's CID."""
    cid, base = serve(gateway, source)
    embed.ipfs_gateway = f"{base}/ipfs"
    port = free_port()
    node = make_node(
        "managed", DIRECT_API_ENABLED="true", DIRECT_API_PORT=str(port),
        DIRECT_API_KEY=DIRECT_KEY, IPFS_GATEWAYS=base, ALLOW_PRIVATE_URLS="true",
        WEBHOOK_RETRY_BASE="0.5", WEBHOOK_RETRY_MAX="2",
    )  # fmt: skip
    node.start()
    api = f"http://127.0.0.1:{port}"
    wait_http(api)
    embed.add_managed_encoder("our-node", api, DIRECT_KEY)
    return node, cid


def community_node(
    make_node: MakeNode, embed: EmbedServer, key: NodeKey, **extra: str
) -> GatewayNodeProcess:
    values = {
        "EMBED_GATEWAY_ENABLED": "true", "EMBED_GATEWAY_URL": embed.url,
        "ENCODER_PRIVATE_KEY": key.env_value, "ALLOW_PRIVATE_URLS": "true",
        "WEBHOOK_RETRY_BASE": "0.5", "WEBHOOK_RETRY_MAX": "2", **extra,
    }  # fmt: skip
    return make_node("community", **values)


@pytest.mark.slow
def test_a_redispatched_finished_job_is_reported_again(
    make_gateway_node: MakeNode, embed_server: EmbedServer, ipfs_gateway: FaultServer,
    sample: Callable[[str], Path],
) -> None:  # fmt: skip
    embed = embed_server
    node, cid = managed_node(make_gateway_node, embed, ipfs_gateway, sample("landscape"))
    check = alive(node)
    embed.add_video("alice", "clip", cid)
    [sent] = embed.dispatch_once()
    assert sent.ok, sent
    [first] = embed.wait_for(lambda: check(finals(embed)), 120, "the completion")
    assert embed.video("clip").status == "published"
    manifest = first.body["manifest_cid"]

    # the admin resets the finished job; the dispatcher POSTs the same body again
    embed.redispatch("alice", "clip")
    assert embed.video("clip").status == "processing"
    [again] = embed.dispatch_once()
    assert again.ok, again
    second = embed.wait_for(lambda: check(finals(embed)[1:]), 60, "the completion again")[0]
    assert second.body["manifest_cid"] == manifest and second.body["status"] == "complete"
    assert second.api_key == embed.webhook_key  # the new request's key (managed: the global)
    assert second.headers.get("idempotency-key", "").endswith(":complete:1")
    assert embed.video("clip").status == "published"
    assert embed.video("clip").manifest_cid == manifest
    [job] = node.store().list_jobs()
    assert job.generation == 1 and job.state is JobState.COMPLETE
    assert node.log().count(f"job {job.id} resumes at report") == 1  # not encoded again

    # the output is gone from the local store: the job is encoded again, then reported
    shutil.rmtree(node.data_dir / "store" / manifest)
    embed.redispatch("alice", "clip")
    [third_dispatch] = embed.dispatch_once()
    assert third_dispatch.ok, third_dispatch
    third = embed.wait_for(lambda: check(finals(embed)[2:]), 180, "the third completion")[0]
    assert f"job {job.id}: its output {manifest} is gone: encoding it again" in node.log()
    assert third.body["status"] == "complete"
    final = node.wait_for(job.id, lambda j: j.state is JobState.COMPLETE and j.generation == 2)
    assert third.body["manifest_cid"] == final.result["cid"]  # type: ignore[index]
    assert (node.data_dir / "store" / final.result["cid"]).is_dir()  # type: ignore[index]
    assert embed.video("clip").status == "published"


@pytest.mark.slow
def test_a_job_that_failed_for_good_runs_again_when_dispatched_again(
    make_gateway_node: MakeNode, embed_server: EmbedServer, ipfs_gateway: FaultServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    embed = embed_server
    bad = tmp_path / "not-a-video.mp4"
    bad.write_bytes(b"this is not a video at all " * 2000)
    node, cid = managed_node(make_gateway_node, embed, ipfs_gateway, bad)
    check = alive(node)
    embed.add_video("bob", "broken", cid)
    for attempt in (1, 2, 3):  # the server requeues a failed job twice, then gives up
        [sent] = embed.dispatch_once()
        assert sent.ok, sent
        embed.wait_for(lambda n=attempt: check(len(finals(embed)) >= n), 60, f"failure {attempt}")
    reports = finals(embed)
    assert [r.body["status"] for r in reports] == ["failed"] * 3
    assert len({r.body["job_id"] for r in reports}) == 3  # a new run each time
    assert all("not a media file" in r.body["error"] for r in reports)
    assert embed.job("bob", "broken").status == "failed"
    assert embed.video("broken").status == "failed"
    store = node.store()
    try:
        assert store.counts()["failed"] == 3
    finally:
        store.close()


@pytest.mark.slow
def test_a_reclaimed_job_reports_with_the_newest_callback_token(
    make_gateway_node: MakeNode, embed_server: EmbedServer, ipfs_gateway: FaultServer,
    node_key: NodeKey, sample: Callable[[str], Path],
) -> None:  # fmt: skip
    embed = embed_server
    cid, base = serve(ipfs_gateway, sample("hd720"))
    embed.ipfs_gateway = f"{base}/ipfs"
    embed.add_video("carol", "long", cid)
    node = community_node(
        make_gateway_node, embed, node_key, IPFS_GATEWAYS=base, MAX_CONCURRENT_JOBS="2",
        ENCODER_PRESET="veryslow",
    )  # fmt: skip
    node.start()
    check = alive(node)
    [first] = embed.wait_for(lambda: check(embed.offers()), 60, "the first claim")

    def local_jobs() -> list[Any]:
        store = node.store()
        try:
            return store.list_jobs()
        finally:
            store.close()

    [job] = embed.wait_for(lambda: check(local_jobs()), 30, "the local job")
    node.wait_for(job.id, lambda j: j.progress.get("encode", 0) > 0, timeout=120, what="encoding")
    # The server's stall check resets the job while the node encodes it; the next myJob claims
    # it again, with a fresh token (progress held meanwhile so that a ping does not win the
    # race and set the job back to "encoding" first, as the real server would let it).
    with embed.hold("webhook/progress"):
        embed.reset_stalled(0)
        assert embed.job("carol", "long").status == "pending"
        second = embed.wait_for(lambda: check(embed.offers()[1:]), 30, "the re-claim")[0]
        node_says = "its reports now go to the new webhook_url/api_key"
        embed.wait_for(lambda: check(node_says in node.log()), 30, "the node's retarget")
    assert second["api_key"] != first["api_key"]
    [done] = embed.wait_for(lambda: check(finals(embed)), 300, "the completion")
    assert done.api_key == second["api_key"]  # not the old token (the server answers it 401)
    assert finals(embed, 401) == []
    assert embed.video("long").status == "published"
    assert embed.job("carol", "long").status == "completed"
    after = [c for c in embed.calls("webhook/progress") if c.received_at > second_claim_at(embed)]
    assert all(c.api_key == second["api_key"] for c in after)
    assert node.store().require(job.id).attempts == 0  # encoded once, in one run


def second_claim_at(embed: EmbedServer) -> float:
    """When the second ``myJob`` claim was answered (plus the time the node needs to read it:
    a ping already on its way then may still carry the old token)."""
    claims = [c for c in embed.calls("myJob") if c.status == 200 and (c.answer or {}).get("job")]
    return claims[1].answered_at + 5.0


@pytest.mark.slow
def test_a_removed_node_registers_again_and_a_banned_one_waits(
    make_gateway_node: MakeNode, embed_server: EmbedServer, ipfs_node: JsIpfsNode,
    node_key: NodeKey,
) -> None:  # fmt: skip
    embed = embed_server
    dashboard = free_port()
    node = community_node(
        make_gateway_node, embed, node_key, IPFS_API_ADDR=ipfs_node.api_url,
        DASHBOARD_PORT=str(dashboard),
    )  # fmt: skip
    node.start()
    check = alive(node)
    embed.wait_for(lambda: check(embed.calls("myJob")), 60, "the first poll")
    [register] = embed.calls("updateNode")
    info = (register.payload or {})["node_info"]
    peer = httpx.post(f"{ipfs_node.api_url}/api/v0/id", timeout=10).json()["ID"]
    assert info["peer_id"] == peer  # like the legacy source
    embed.remove_encoder(node_key.did)  # an admin removes the encoder
    embed.wait_for(lambda: check(embed.calls("updateNode")[1:]), 60, "a second registration")
    assert any(c.status == 404 for c in embed.calls("heartbeat") + embed.calls("myJob"))
    embed.wait_for(lambda: check(embed.calls("myJob", did=node_key.did)[-1].status == 200), 30,
                   "polling again")  # fmt: skip
    assert embed.encoder(node_key.did).enabled

    embed.set_encoder(node_key.did, banned=True)
    refused = "refused: disabled or banned"
    embed.wait_for(lambda: check(refused in node.log()), 60, "the node's log line")
    wait = re.search(r"asking again in (\d+) min", node.log())
    assert wait is not None and int(wait.group(1)) >= 20, node.log()[-2000:]
    assert "check ENCODER_PRIVATE_KEY" not in node.log()
    state = httpx.get(f"http://127.0.0.1:{dashboard}/api/state", timeout=10).json()
    [row] = [r for r in state["node"]["source_health"] if r["name"] == "embed_gateway"]
    assert row["health"] == refused


@pytest.mark.slow
def test_no_progress_report_follows_the_final_one_to_a_slow_receiver(
    make_gateway_node: MakeNode, embed_server: EmbedServer, ipfs_gateway: FaultServer,
    node_key: NodeKey, sample: Callable[[str], Path],
) -> None:  # fmt: skip
    embed = embed_server
    embed.progress_delay = 3.0  # every /webhook/progress is processed 3 s after it arrived
    # a job of several heartbeats (about one every 2 s), so that it reports progress: the 12 s
    # 1080p sample (a community node encodes 480p only: the 4 s samples took one heartbeat)
    cid, base = serve(ipfs_gateway, sample("demo"))
    embed.ipfs_gateway = f"{base}/ipfs"
    embed.add_video("dave", "quick", cid)
    node = community_node(make_gateway_node, embed, node_key, IPFS_GATEWAYS=base,
                          ENCODER_PRESET="medium")  # fmt: skip
    node.start()
    check = alive(node)
    [final] = embed.wait_for(lambda: check(finals(embed)), 120, "the completion")
    embed.wait_for(lambda: embed.pending_requests("webhook/progress") == 0, 30, "quiet")
    progress = embed.calls("webhook/progress")
    assert progress, "the job sent no progress at all"
    # every progress report left, and was answered, before the final one arrived
    assert all(c.answered_at <= final.received_at for c in progress), [
        (c.received_at, c.answered_at, final.received_at) for c in progress
    ]
    assert embed.video("quick").status == "published"  # not set back to "processing"
    assert embed.job("dave", "quick").status == "completed"
