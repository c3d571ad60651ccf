"""Several nodes on one PostgreSQL share the queue: every job done exactly once, and a dead
node's job is finished by another once its lease runs out."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from speak_encoder.node.models import JobState
from tests.support.node_fixtures import NodeProcess

MakeNode = Callable[..., NodeProcess]
COMPLETE = re.compile(r"✅ job ([0-9a-f]{32}) complete")


@pytest.mark.slow
def test_two_nodes_share_twenty_jobs_and_survive_a_dead_node(
    make_node: MakeNode, sample: Callable[[str], Path], pg_url: str, tmp_path: Path
) -> None:
    common = {"DATABASE_URL": pg_url, "LEASE_SECONDS": "4", "MAX_CONCURRENT_JOBS": "1"}
    # a slow first job so that node A is surely in the middle of it when it dies
    slow_source = tmp_path / "slow.mp4"
    shutil.copy(sample("fullhd"), slow_source)
    a = make_node("a", NODE_NAME="node-a", ENCODER_PRESET="veryslow", **common)
    b = make_node("b", NODE_NAME="node-b", **common)
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
