"""Several nodes on one PostgreSQL share the queue: every job done exactly once, and a dead
node's job is finished by another once its lease runs out."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from speak_encoder.node.models import JobState, Stage
from speak_encoder.testing.ipfs_node import JsIpfsNode, free_port
from speak_encoder.testing.pin_services import FakeIpfsCluster
from tests.support.direct_nodes import direct_node, ipfs_add, submit, wait_http
from tests.support.node_fixtures import NodeProcess
from tests.support.webhook_fixtures import WebhookReceiver

MakeNode = Callable[..., NodeProcess]
COMPLETE = re.compile(r"✅ job ([0-9a-f]{32}) complete")


@pytest.mark.slow
def test_two_nodes_share_twenty_jobs_and_survive_a_dead_node(
    make_node: MakeNode, sample: Callable[[str], Path], pg_url: str, tmp_path: Path
) -> None:
    common = {"DATABASE_URL": pg_url, "LEASE_SECONDS": "4", "OUTPUT_EXTRAS": "false"}
    # a slow first job so that node A is surely in the middle of it when it dies
    slow_source = tmp_path / "slow.mp4"
    shutil.copy(sample("fullhd"), slow_source)
    a = make_node("a", NODE_NAME="node-a", ENCODER_PRESET="veryslow", MAX_CONCURRENT_JOBS="1",
                  **common)  # fmt: skip
    b = make_node("b", NODE_NAME="node-b", MAX_CONCURRENT_JOBS="2", **common)
    slow_id = a.submit(str(slow_source), "--priority", "10")
    a.start()
    a.wait_for(slow_id, lambda j: j.state is JobState.RUNNING and j.lease_owner == "node-a",
               what="node A working")  # fmt: skip
    ids = [a.submit(str(sample("very_short"))) for _ in range(19)]
    b.start()
    a.wait_for(slow_id, lambda j: j.progress.get("encode", 0) > 0, what="A mid-encode")
    a.kill9()  # node A dies mid-job: its lease runs out and node B takes the job over
    for job_id in [slow_id, *ids]:
        job = b.wait_for(job_id, lambda j: j.state is JobState.COMPLETE, timeout=240,
                         what=f"job {job_id}")  # fmt: skip
        assert job.attempts == 0
    completions = COMPLETE.findall(a.log() + b.log())
    assert sorted(completions) == sorted([slow_id, *ids]), "every job completed exactly once"
    assert slow_id in COMPLETE.findall(b.log())
    # B trusted A's checkpoint of the (shared) local source file, not A's node-local encode
    assert f"job {slow_id} resumes at encode" in b.log()
    store = b.store()
    try:
        assert store.counts()["complete"] == 20 and store.counts()["running"] == 0
    finally:
        store.close()
    deadline = time.monotonic() + 10
    while b.work_entries() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert b.work_entries() == []


def _distinct_clips(folder: Path, count: int) -> list[Path]:
    """``count`` tiny clips with different bytes (so their outputs have different CIDs)."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for n in range(count):
        path = folder / f"clip{n}.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
             "-i", f"color=c=0x{(n * 0x0A1B2C + 0x102030) % 0xFFFFFF:06x}:s=320x240:r=15:d=1",
             "-f", "lavfi", "-i", f"sine=f={300 + 20 * n}:d=1",
             "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path)],
            check=True, timeout=60,
        )  # fmt: skip
        clips.append(path)
    return clips


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_fleet_reports_each_job_once_and_retries_every_pin(
    make_node: MakeNode,
    ipfs_node: JsIpfsNode,
    sample: Callable[[str], Path],
    webhook_receiver: WebhookReceiver,
    pg_url: str,
    tmp_path: Path,
) -> None:
    """Two nodes on one PostgreSQL, 20 Direct API jobs with webhooks, the IPFS Cluster target
    down (every pin queued). Node A publishes a job (its pin queued) and is killed before it
    reports it; meanwhile both nodes' deliverers watch the one outbox while node B does the 19
    others. Each job is reported exactly once, node B reports A's job after taking it over, and
    retries every pending pin — node A's too — once the cluster is back."""
    cluster_port = free_port()
    common = {
        "DATABASE_URL": pg_url, "LEASE_SECONDS": "4",
        "PUBLISH_TARGETS": "local,cluster", "PUBLISH_REQUIRED": "local",
        "IPFS_CLUSTER_URL": f"http://127.0.0.1:{cluster_port}",
        "PIN_RETRY_BASE": "1", "PIN_RETRY_MAX": "2", "OUTPUT_EXTRAS": "false",
    }  # fmt: skip
    # node A holds its one job after publishing it (the job is running, its pin queued)
    a, api_a = direct_node(make_node, ipfs_node, NODE_NAME="node-a", name="a",
                           MAX_CONCURRENT_JOBS="1", SPEAK_ENCODER_TEST_PAUSE_AFTER="publish",
                           SPEAK_ENCODER_TEST_PAUSE_SECONDS="900", **common)  # fmt: skip
    b, api_b = direct_node(make_node, ipfs_node, NODE_NAME="node-b", name="b",
                           MAX_CONCURRENT_JOBS="2", **common)  # fmt: skip
    hook = webhook_receiver.hook_url("fleet")
    clips = [ipfs_add(ipfs_node, clip) for clip in _distinct_clips(tmp_path / "clips", 20)]
    a.start()
    wait_http(api_a)
    held_id = str(submit(api_a, clips[0], hook, permlink="held")["job_id"])
    a.wait_for(held_id, lambda j: j.lease_owner == "node-a" and j.stage is Stage.PUBLISH
               and "test hook: pausing" in a.log(), timeout=120, what="A published")  # fmt: skip
    b.start()
    wait_http(api_b)
    rest = [str(submit(api_b, clips[n], hook, permlink=f"q{n}")["job_id"]) for n in range(1, 20)]
    # both deliverers compete for B's 19 reports while A holds its job
    for job_id in rest:
        b.wait_for(job_id, lambda j: j.state is JobState.COMPLETE, timeout=300, what=job_id)
    webhook_receiver.wait_for(19, progress=False, timeout=60)
    assert a.job(held_id).state is JobState.RUNNING and a.alive()
    a.kill9()  # published, not reported: its lease runs out and node B reports the job
    b.wait_for(held_id, lambda j: j.state is JobState.COMPLETE, timeout=120, what="A's job")
    webhook_receiver.wait_for(20, progress=False, timeout=60)
    assert f"job {held_id} resumes at report" in b.log()  # published once, by A

    reports = [r.json() for r in webhook_receiver.received(progress=False)]
    per_job = Counter(body["job_id"] for body in reports)
    assert per_job == Counter({job_id: 1 for job_id in [held_id, *rest]}), per_job
    assert all(body["status"] == "complete" for body in reports)
    finals = {r.json()["job_id"]: r.at for r in webhook_receiver.received(progress=False)}
    by_permlink = {"held": held_id, **{f"q{n}": job_id for n, job_id in enumerate(rest, 1)}}
    late = [r for r in webhook_receiver.received(progress=True)
            if r.at > finals[by_permlink[r.json()["permlink"]]]]  # fmt: skip
    assert late == [], "a progress report followed the final one"

    store = b.store()
    try:
        pending = store.pin_entries("pending")
        assert len(pending) == 20 and {p.target for p in pending} == {"cluster"}
        assert {p.node for p in pending} == {"node-a", "node-b"}
        with FakeIpfsCluster(ipfs_node.api_url, port=cluster_port) as cluster:
            deadline = time.monotonic() + 120
            while store.pin_counts()["done"] < 20 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert store.pin_counts() == {"pending": 0, "done": 20, "expired": 0}
            pinned = {path.rsplit("/", 1)[1] for method, path in cluster.requests
                      if method == "POST"}  # fmt: skip
        assert pinned == {p.cid for p in pending}
        assert store.outbox_counts()["pending"] == 0
    finally:
        store.close()
