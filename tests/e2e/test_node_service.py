"""`speak-encoder run` as a real process: resume after kill -9, retries, watchdog, shutdown.

Every test drives the node through its CLI and store; crash tests SIGKILL the process (and
its ffmpeg, as a power cut would) at a precise point, restart it, and check that the job
completes exactly once and that no folder is left behind.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from speak_encoder.node.models import Job, JobState, Stage
from speak_encoder.private_files import WORK_MARKER
from speak_encoder.testing.http_faults import BytesPayload, FaultServer
from speak_encoder.testing.ipfs_node import JsIpfsNode
from speak_encoder.testing.ipfs_proxy import KuboFaultProxy
from tests.support.node_fixtures import NodeProcess

MakeNode = Callable[..., NodeProcess]


def done(job_state: JobState) -> Callable[..., bool]:
    return lambda job: job.state is job_state


def checkpoint_written(node: NodeProcess, job_id: str, stage: Stage) -> Callable[..., bool]:
    def check(_job: object) -> bool:
        store = node.store()
        try:
            return stage in store.checkpoints(job_id)
        finally:
            store.close()

    return check


def assert_clean_completion(node: NodeProcess, job_id: str) -> dict[str, object]:
    job = node.wait_for(job_id, done(JobState.COMPLETE), what="completion")
    assert job.result is not None and str(job.result["cid"]).startswith("Qm")
    assert node.store_entries() == [job.result["cid"]], "exactly one stored output"
    deadline = time.monotonic() + 10
    while node.work_entries() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert node.work_entries() == [], "work folder left behind"
    return job.result


def mid_encode(job: Job) -> bool:
    return job.stage is Stage.ENCODE and job.progress.get("encode", 0) > 0


def slow_fullhd_mid_encode(make_node: MakeNode, sample: Callable[[str], Path], **env: str
                           ) -> tuple[NodeProcess, str]:  # fmt: skip
    """A node started on the full-HD clip at preset veryslow (minutes), once its encode runs."""
    node = make_node(ENCODER_PRESET="veryslow", **env)
    job_id = node.submit(str(sample("fullhd")))
    node.start()
    node.wait_for(job_id, mid_encode, what="mid-encode")
    return node, job_id


def encoding(node: NodeProcess) -> bool:
    """This node process is running its ladder ffmpeg right now."""
    try:
        children = psutil.Process(node.pid).children(recursive=True)
        return any("-filter_complex" in p.cmdline() for p in children)
    except psutil.Error:
        return False


def test_submit_then_run_completes_and_jobs_show_has_the_cid(
    make_node: MakeNode, sample: Callable[[str], Path]
) -> None:
    node = make_node()
    job_id = node.submit(str(sample("portrait_rotated")))
    node.start()
    result = assert_clean_completion(node, job_id)
    shown = json.loads(node.cli("jobs", "show", job_id, "--json").stdout)
    assert shown["state"] == "complete" and shown["attempts"] == 0
    assert shown["result"]["cid"] == result["cid"]
    assert shown["result"]["qualities_encoded"] == ["720p", "480p"]
    assert "/" not in json.dumps(shown["result"]["renditions"]), "no local paths in results"
    assert shown["result"]["thumbnail"] == f"ipfs://{result['cid']}/thumbnail.jpg"
    assert node.terminate() == 0


@pytest.mark.slow
@pytest.mark.parametrize("stage", [s for s in Stage if s is not Stage.REPORT])
def test_kill9_at_each_stage_boundary_resumes_exactly_once(
    stage: Stage, make_node: MakeNode, sample: Callable[[str], Path]
) -> None:
    with FaultServer() as server:
        server.add("/clip.mp4", BytesPayload(sample("landscape").read_bytes()))
        node = make_node()
        job_id = node.submit(server.url("/clip.mp4"))
        node.start(
            SPEAK_ENCODER_TEST_PAUSE_AFTER=stage.value, SPEAK_ENCODER_TEST_PAUSE_SECONDS="60"
        )
        node.wait_for(job_id, checkpoint_written(node, job_id, stage), what=f"{stage} checkpoint")
        node.kill9()
        node.start()
        assert_clean_completion(node, job_id)
        downloads = len(server.requests_for("/clip.mp4"))
    log = node.log()
    following = list(Stage)[list(Stage).index(stage) + 1]
    assert f"resumes at {following.value}" in log
    assert downloads == 1, "the source was downloaded again"
    assert node.job(job_id).attempts == 0, "a crash is not a failed attempt"


@pytest.mark.slow
def test_kill9_mid_fetch_restarts_the_download(
    make_node: MakeNode, sample: Callable[[str], Path]
) -> None:
    data = sample("landscape").read_bytes()
    with FaultServer() as server:
        server.add("/slow.mp4", BytesPayload(data), trickle=0.1, trickle_bytes=16 * 1024)
        node = make_node()
        job_id = node.submit(server.url("/slow.mp4"))
        node.start()
        node.wait_for(job_id, lambda j: j.progress.get("fetch", 0) > 0.05, what="mid-fetch")
        node.kill9()
        node.start()
        assert_clean_completion(node, job_id)


@pytest.mark.slow
def test_kill9_mid_encode_and_sigterm_mid_encode(
    make_node: MakeNode, sample: Callable[[str], Path]
) -> None:
    node, job_id = slow_fullhd_mid_encode(make_node, sample, SHUTDOWN_GRACE="0")
    ffmpeg = [p for p in psutil.Process(node.pid).children(recursive=True) if p.name() == "ffmpeg"]
    assert ffmpeg
    # SIGTERM with no grace: the running job is requeued with its checkpoints, exit 0
    assert node.terminate() == 0
    assert not [p for p in ffmpeg if p.is_running()], "ffmpeg outlived the shutdown"
    assert node.job(job_id).state is JobState.QUEUED
    assert "requeued" in node.log()
    # start again, then a kill -9 in the middle of the encode
    node.start()
    node.wait_for(job_id, mid_encode, what="mid-encode again")
    node.kill9()
    node.env["ENCODER_PRESET"] = "ultrafast"
    node.start()
    assert_clean_completion(node, job_id)
    assert node.job(job_id).attempts == 0
    assert "resumes at encode" in node.log()


def test_permanent_error_fails_once_without_retry(
    make_node: MakeNode, sample: Callable[[str], Path]
) -> None:
    node = make_node()
    job_id = node.submit(str(sample("audio_only")))
    node.start()
    job = node.wait_for(job_id, done(JobState.FAILED), what="failure")
    assert job.attempts == 1 and job.error_kind == "MediaError"
    assert "no video stream" in (job.error or "")
    assert node.work_entries() == []


def test_retryable_errors_are_counted_once_each_then_fail(make_node: MakeNode) -> None:
    with FaultServer() as server:
        server.add("/broken.mp4", b"x" * 1000, status=503)
        node = make_node(MAX_ATTEMPTS="3")
        job_id = node.submit(server.url("/broken.mp4"))
        node.start()
        job = node.wait_for(job_id, done(JobState.FAILED), what="giving up")
        requests = len(server.requests_for("/broken.mp4"))
    assert job.attempts == 3 and job.error_kind == "UpstreamError"
    assert requests == 3, "one request per attempt"
    assert node.log().count("🔁 job") == 2


def test_publish_failure_retries_without_reencoding(
    make_node: MakeNode, sample: Callable[[str], Path], closed_port: int
) -> None:
    node = make_node(PUBLISH_TARGETS="local", IPFS_API_ADDR=f"http://127.0.0.1:{closed_port}",
                     MAX_ATTEMPTS="2")  # fmt: skip
    job_id = node.submit(str(sample("landscape")))
    node.start()
    job = node.wait_for(job_id, done(JobState.FAILED), what="publish failing")
    assert job.stage is Stage.PUBLISH and job.attempts == 2
    assert job.error_kind in {"PublishIncomplete", "IpfsUnavailable"}
    log = node.log()
    assert "resumes at publish" in log, "the retry must start at the failed stage"


def test_watchdog_cancels_a_hung_fetch(make_node: MakeNode, sample: Callable[[str], Path]) -> None:
    data = sample("landscape").read_bytes()
    with FaultServer() as server:
        server.add("/hang.mp4", BytesPayload(data), stall_after=1000, drop_times=100)
        node = make_node(STUCK_TIMEOUT="3", FETCH_STALL_TIMEOUT="600", MAX_ATTEMPTS="1")
        job_id = node.submit(server.url("/hang.mp4"))
        node.start()
        job = node.wait_for(job_id, done(JobState.FAILED), what="watchdog", timeout=60)
    assert "watchdog" in (job.error or "") and job.stage is Stage.FETCH
    assert "🐕" in node.log()


def test_operator_cancel_and_retry(make_node: MakeNode, sample: Callable[[str], Path]) -> None:
    node = make_node(ENCODER_PRESET="veryslow")
    job_id = node.submit(str(sample("fullhd")))
    node.start()
    node.wait_for(job_id, lambda j: j.stage is Stage.ENCODE, what="encoding")
    assert node.cli("jobs", "cancel", job_id).returncode == 0
    job = node.wait_for(job_id, done(JobState.CANCELLED), what="cancel", timeout=30)
    assert job.state is JobState.CANCELLED and node.work_entries() == []
    retried = json.loads(node.cli("jobs", "retry", job_id, "--json").stdout)
    assert retried["state"] == "queued" and retried["attempts"] == 0


def test_memory_critical_pauses_intake(make_node: MakeNode, sample: Callable[[str], Path]) -> None:
    node = make_node(MEMORY_CRITICAL_MB="1", MEMORY_WARN_MB="1")
    job_id = node.submit(str(sample("landscape")))
    node.start()
    node.wait_log("intake paused", timeout=8)
    assert "⏸️ intake paused: memory above MEMORY_CRITICAL_MB" in node.log()
    assert "⚠️ HIGH MEMORY" in node.log()
    assert node.job(job_id).state is JobState.QUEUED
    assert node.terminate() == 0


def test_queue_max_refuses_instead_of_dropping(
    make_node: MakeNode, sample: Callable[[str], Path]
) -> None:
    node = make_node(QUEUE_MAX="2")
    node.submit(str(sample("landscape")))
    node.submit(str(sample("landscape")))
    refused = node.cli("submit", str(sample("landscape")))
    assert refused.returncode == 1 and "QUEUE_MAX" in refused.stderr
    assert json.loads(node.cli("jobs", "--json").stdout)["counts"]["queued"] == 2


def test_crash_leftovers_are_cleaned_at_start(
    make_node: MakeNode, sample: Callable[[str], Path]
) -> None:
    node = make_node()
    work = Path(node.env["TEMP_DIR"])
    # the folder of a job the store does not know, left by a node that died (its marker names
    # a process that is gone); anything else in TEMP_DIR is not the node's (tests/e2e/security)
    (work / ("0" * 32)).mkdir(parents=True)
    (work / ("0" * 32) / WORK_MARKER).write_text("999999 1.00")
    job_id = node.submit(str(sample("landscape")))
    node.start()
    assert_clean_completion(node, job_id)
    assert "1 stale work folder(s) removed" in node.log()


@pytest.mark.slow
def test_kill9_mid_publish_then_the_job_is_published_once(
    make_node: MakeNode, sample: Callable[[str], Path], ipfs_node: JsIpfsNode
) -> None:
    with KuboFaultProxy(ipfs_node.api_url) as proxy:
        proxy.hold_add = 30.0  # the upload hangs in the middle…
        node = make_node(PUBLISH_TARGETS="local", IPFS_API_ADDR=proxy.url)
        job_id = node.submit(str(sample("landscape")))
        node.start()
        assert proxy.holding.wait(60), "the publish never started"
        node.wait_for(job_id, lambda j: j.stage is Stage.PUBLISH, what="publishing")
        node.kill9()  # …when the node dies
        proxy.hold_add = 0.0
        node.start()
        result = assert_clean_completion(node, job_id)
    assert "resumes at publish" in node.log(), "no re-encode after a publish failure"
    pinned = httpx.post(
        f"{ipfs_node.api_url}/api/v0/pin/ls", params={"arg": str(result["cid"]), "timeout": "5s"}
    )
    assert pinned.status_code == 200 and str(result["cid"]) in pinned.text
    published = result["published"]
    assert isinstance(published, dict) and published["ok"] is True
    assert [t["name"] for t in published["targets"]] == ["local"]


def test_a_job_that_does_not_fit_on_the_disk_is_not_started(
    make_node: MakeNode, sample: Callable[[str], Path]
) -> None:
    node = make_node(DISK_FACTOR="1000000000")  # the clip "needs" petabytes
    job_id = node.submit(str(sample("landscape")))
    node.start()
    node.wait_log("not started", timeout=10)
    assert "💽 job" in node.log() and "not started" in node.log()
    job = node.job(job_id)
    assert job.state is JobState.QUEUED and job.attempts == 0
    assert node.terminate() == 0


@pytest.mark.slow
def test_a_second_signal_stops_at_once_and_the_job_resumes(
    make_node: MakeNode, sample: Callable[[str], Path]
) -> None:
    node, job_id = slow_fullhd_mid_encode(make_node, sample, SHUTDOWN_GRACE="600")
    assert node.proc is not None
    node.proc.send_signal(signal.SIGTERM)  # graceful: would wait up to 600 s…
    time.sleep(1.0)
    assert node.alive()
    node.proc.send_signal(signal.SIGTERM)  # …a second signal: now (30 s ≪ the 600 s grace)
    assert node.proc.wait(timeout=30) == 0
    assert node.job(job_id).state is JobState.QUEUED
    node.env["ENCODER_PRESET"] = "ultrafast"
    node.start()
    assert_clean_completion(node, job_id)


@pytest.mark.slow
def test_a_job_that_keeps_killing_its_node_is_given_up(
    make_node: MakeNode, sample: Callable[[str], Path]
) -> None:
    node = make_node(ENCODER_PRESET="veryslow", MAX_ATTEMPTS="2")
    job_id = node.submit(str(sample("fullhd")))
    for _ in range(2):  # the node dies twice in the middle of this job (say, out of memory)
        node.start()
        deadline = time.monotonic() + 60
        while not encoding(node) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert encoding(node), "ffmpeg never started"
        node.kill9()
    node.start()
    job = node.wait_for(job_id, done(JobState.FAILED), what="given up")
    assert job.interruptions == 2 and job.attempts == 0
    assert "stopped 2 times" in (job.error or "")
    assert node.work_entries() == []
