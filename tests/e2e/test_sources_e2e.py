"""End to end through a real `speak-encoder run`: Direct API in, signed webhooks out.

The source video is added to the real (js-ipfs) test node; the node under test fetches it
with `cat`, encodes, publishes to the same IPFS node and reports to a local webhook receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from speak_encoder.node.models import JobState, Stage
from speak_encoder.testing.ipfs_node import JsIpfsNode
from tests.support.direct_nodes import API_KEY, SECRET, direct_node, ipfs_add, submit, wait_http
from tests.support.node_fixtures import NodeProcess
from tests.support.webhook_fixtures import WebhookReceiver

MakeNode = Callable[..., NodeProcess]


@pytest.mark.slow
def test_direct_api_job_to_signed_completion_webhook(
    make_node: MakeNode, ipfs_node: JsIpfsNode, sample: Callable[[str], Path],
    webhook_receiver: WebhookReceiver,
) -> None:  # fmt: skip
    cid = ipfs_add(ipfs_node, sample("hd720"))
    node, api = direct_node(make_node, ipfs_node, ENCODER_PRESET="medium")  # pings to see
    node.start()
    wait_http(api)
    hook = webhook_receiver.hook_url("done")
    accepted = submit(api, f"ipfs://{cid}", hook, premium=True)
    assert accepted["status"] == "queued" and accepted["message"] == "Job submitted successfully"
    job_id = str(accepted["job_id"])
    node.wait_for(job_id, lambda j: j.state is JobState.COMPLETE, what="completion")
    webhook_receiver.wait_for(1, progress=False, timeout=30)
    (completion,) = webhook_receiver.received(progress=False)
    body = completion.json()
    assert body["status"] == "complete" and body["job_id"] == job_id
    assert body["input_cid"] == f"ipfs://{cid}"  # as submitted
    assert body["qualities_encoded"] == ["720p", "480p"]  # the rungs really encoded
    assert body["video_url"] == f"ipfs://{body['manifest_cid']}/manifest.m3u8"
    assert body["manifest_cid"] == node.job(job_id).result["cid"]  # type: ignore[index]
    assert body["thumbnail_url"] == f"ipfs://{body['manifest_cid']}/thumbnail.jpg"  # the poster
    assert completion.headers["x-api-key"] == "hook-key"
    assert completion.headers["user-agent"].startswith("speak-encoder/")
    assert completion.headers["idempotency-key"] == f"{job_id}:complete"
    stamp, signature = (
        p.split("=", 1)[1] for p in completion.headers["x-speak-signature"].split(",")
    )
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + completion.body, hashlib.sha256)
    assert hmac.compare_digest(signature, expected.hexdigest())
    pings = webhook_receiver.received(progress=True)
    assert "encode" in {r.json()["stage"] for r in pings}
    assert all(r.path == "/done/progress" for r in pings)
    for before, after in itertools.pairwise(pings):  # ≤ 1 per 10 s unless ≥ 5 points
        moved = abs(after.json()["progress"] - before.json()["progress"])
        assert (
            after.at - before.at >= 9.5
            or moved >= 5
            or after.json()["stage"] != before.json()["stage"]
        )
    status = httpx.get(f"{api}/job/{job_id}", headers={"X-API-Key": API_KEY}).json()
    assert status["status"] == "complete" and status["progress"] == 100
    assert "/" not in json.dumps(status["result"]).replace("ipfs://", "").replace("/manifest", "")


@pytest.mark.slow
def test_failure_webhook_once_after_the_last_attempt(
    make_node: MakeNode, ipfs_node: JsIpfsNode, sample: Callable[[str], Path],
    webhook_receiver: WebhookReceiver,
) -> None:  # fmt: skip
    cid = ipfs_add(ipfs_node, sample("audio_only"))  # permanent: no video stream
    node, api = direct_node(make_node, ipfs_node)
    node.start()
    wait_http(api)
    job_id = str(submit(api, cid, webhook_receiver.hook_url("fail"))["job_id"])
    node.wait_for(job_id, lambda j: j.state is JobState.FAILED, what="failure")
    webhook_receiver.wait_for(1, progress=False, timeout=30)
    node.wait_reports_settled(1)  # recorded as delivered: it is never sent again
    failures = webhook_receiver.received(progress=False)
    assert len(failures) == 1
    body = failures[0].json()
    assert body["status"] == "failed" and "no video stream" in body["error"]
    assert body["qualities_encoded"] == []


@pytest.mark.slow
def test_outbox_survives_kill9_between_publish_and_delivery(
    make_node: MakeNode, ipfs_node: JsIpfsNode, sample: Callable[[str], Path],
    webhook_receiver: WebhookReceiver,
) -> None:  # fmt: skip
    cid = ipfs_add(ipfs_node, sample("landscape"))
    node, api = direct_node(make_node, ipfs_node)
    node.start()
    wait_http(api)
    webhook_receiver.script(*([503] * 1000))  # the receiver is down: the report stays queued
    job_id = str(submit(api, cid, webhook_receiver.hook_url("later"))["job_id"])
    node.wait_for(job_id, lambda j: j.state is JobState.COMPLETE, what="completion")
    webhook_receiver.wait_for(1, progress=False, timeout=30)
    node.kill9()
    webhook_receiver.script()  # the receiver is back
    node.start()
    webhook_receiver.wait_for(2, progress=False, timeout=60)
    node.wait_reports_settled(1)  # recorded as delivered: it is never sent again
    delivered = [
        r for r in webhook_receiver.received(progress=False) if r.json()["status"] == "complete"
    ]
    keys = {r.headers["idempotency-key"] for r in delivered}
    assert keys == {f"{job_id}:complete"}
    assert node.job(job_id).stage is Stage.REPORT
