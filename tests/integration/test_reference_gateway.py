"""The reference 3Speak gateway: signatures, claims, races, re-assignment, faults, records."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import httpx
import pytest

from speak_encoder.cli_gateway import add_gateway_commands
from speak_encoder.node.identity import NodeIdentity
from speak_encoder.testing.gateway import ReferenceGateway
from tests.support.gateway_fixtures import NodeKey, new_node_key, node_key, reference_gateway

__all__ = ["node_key", "reference_gateway"]  # fixtures used here

API = "/api/v0/gateway/"


def post(gw: ReferenceGateway, who: NodeIdentity, route: str, payload: dict[str, Any],
         **kwargs: Any) -> httpx.Response:  # fmt: skip
    return httpx.post(gw.url + API + route, json={"jws": who.sign_jws(payload)}, **kwargs)


def get(gw: ReferenceGateway, route: str) -> httpx.Response:
    return httpx.get(gw.url + API + route)


def test_signatures_are_verified_against_the_callers_did(
    reference_gateway: ReferenceGateway, node_key: NodeKey
) -> None:
    gw = reference_gateway
    good = post(gw, node_key.identity, "updateNode", {"node_info": {"name": "n1"}})
    assert good.status_code == 200 and good.json()["encoder"]["name"] == "n1"
    assert gw.nodes[node_key.did] == {"name": "n1"}

    jws = node_key.identity.sign_jws({"node_info": {"name": "n1"}})
    other = new_node_key().identity.sign_jws({"node_info": {"name": "evil"}})
    tampered = {"payload": other["payload"], "signatures": jws["signatures"]}
    bad = httpx.post(gw.url + API + "updateNode", json={"jws": tampered})
    assert bad.status_code == 401
    assert httpx.post(gw.url + API + "heartbeat", json={"timestamp": "x"}).status_code == 400
    assert [c.status for c in gw.calls("updateNode")] == [200, 401]
    assert gw.calls("updateNode")[0].did == node_key.did
    assert gw.calls("updateNode")[0].payload == {"node_info": {"name": "n1"}}


def test_accept_race_ping_finish_and_status(reference_gateway: ReferenceGateway) -> None:
    gw = reference_gateway
    a, b = new_node_key(), new_node_key()
    job = gw.add_job("https://example.org/v.mp4", size=10)
    assert get(gw, "getJob").json()["id"] == job["id"]
    assert get(gw, f"jobstatus/{job['id']}").json()["assigned_to"] is None

    assert post(gw, a.identity, "acceptJob", {"job_id": job["id"]}).status_code == 200
    second = post(gw, b.identity, "acceptJob", {"job_id": job["id"]})
    assert second.status_code == 409 and "already" in second.json()["message"]
    assert get(gw, "getJob").status_code == 404
    assert get(gw, f"jobstatus/{job['id']}").json()["assigned_to"] == a.did

    ping = {"job_id": job["id"], "progressPct": 5.5, "download_pct": 40}
    assert post(gw, b.identity, "pingJob", ping).status_code == 409  # not b's
    assert post(gw, a.identity, "pingJob", {**ping, "progressPct": 0.5}).status_code == 400
    assert post(gw, a.identity, "pingJob", ping).status_code == 200
    assert gw.job(job["id"]).status == "running"

    finish = {"job_id": job["id"], "output": {"cid": "QmX"}}
    assert post(gw, a.identity, "finishJob", finish).json()["status"] == "success"
    again = post(gw, a.identity, "finishJob", finish)
    assert again.status_code == 500 and "already" in again.json()["message"]
    assert gw.job(job["id"]).result == {"cid": "QmX"}


def test_reassigned_after_silence_and_reject(node_key: NodeKey) -> None:
    with ReferenceGateway(reassign_after=0.5) as gw:
        job = gw.add_job("ipfs://QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")
        post(gw, node_key.identity, "acceptJob", {"job_id": job["id"]})
        assert gw.job(job["id"]).assigned_to == node_key.did
        time.sleep(0.8)
        snapshot = gw.job(job["id"])
        assert snapshot.status == "queued" and snapshot.assigned_to is None
        assert snapshot.reassignments == 1
        post(gw, node_key.identity, "acceptJob", {"job_id": job["id"]})
        assert post(gw, node_key.identity, "rejectJob", {"job_id": job["id"]}).status_code == 200
        assert gw.job(job["id"]).status == "queued"


def test_fail_job_requires_the_exact_body(
    reference_gateway: ReferenceGateway, node_key: NodeKey
) -> None:
    gw = reference_gateway
    job = gw.add_job("https://example.org/v.mp4")
    post(gw, node_key.identity, "acceptJob", {"job_id": job["id"]})
    partial = {"job_id": job["id"], "error": {"error": "x"}}
    assert post(gw, node_key.identity, "failJob", partial).status_code == 400
    body = {
        "job_id": job["id"],
        "error": {"error": "bad", "timestamp": "t", "retryable": False, "encoder_version": "1"},
        "timestamp": "t",
        "encoder_time": 1,
    }
    assert post(gw, node_key.identity, "failJob", body).status_code == 200
    assert gw.job(job["id"]).status == "failed"


@pytest.mark.parametrize(
    ("fault", "status"),
    [("500", 500), ("404", 404), ("401", 401), ("html", 502), ("malformed", 200)],
)
def test_faults_hit_the_next_requests_only(
    reference_gateway: ReferenceGateway, fault: Any, status: int
) -> None:
    gw = reference_gateway
    gw.fail_next("stats", fault, times=2)
    answers = [get(gw, "stats") for _ in range(3)]
    assert [a.status_code for a in answers] == [status, status, 200]
    if fault == "malformed":
        with pytest.raises(json.JSONDecodeError):
            answers[0].json()
    assert [c.fault for c in gw.calls("stats")] == [fault, fault, None]


def test_timeout_fault_hangs(reference_gateway: ReferenceGateway) -> None:
    gw = reference_gateway
    gw.hang_seconds = 2.0
    gw.fail_next("getJob", "timeout")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(gw.url + API + "getJob", timeout=0.5)


def test_my_job_preassigns_and_heartbeat_needs_update(
    reference_gateway: ReferenceGateway, node_key: NodeKey
) -> None:
    gw = reference_gateway
    gw.needs_update, gw.latest_version = True, "9.9.9"
    beat = post(gw, node_key.identity, "heartbeat", {"timestamp": "t", "version": "0.1.0"})
    assert beat.json()["needs_update"] is True and beat.json()["latest_version"] == "9.9.9"
    job = gw.add_job("https://example.org/v.mp4")
    offered = post(gw, node_key.identity, "myJob", {"timestamp": "t"}).json()
    assert offered["success"] is True and offered["job"]["id"] == job["id"]
    assert gw.job(job["id"]).status == "assigned"
    assert get(gw, "getJob").status_code == 404, "a pre-assigned job is not offered to others"
    post(gw, node_key.identity, "acceptJob", {"job_id": job["id"]})
    offered = post(gw, node_key.identity, "myJob", {"timestamp": "t"}).json()
    assert offered == {"success": True, "job": None}, "embed jobs live in the EmbedServer"


def test_dev_gateway_command_parses() -> None:
    parser = argparse.ArgumentParser()
    add_gateway_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["dev-gateway", "--port", "9000", "--reassign-after", "5", "--job", "a", "--job", "b"]
    )
    assert (args.port, args.reassign_after, args.job) == (9000, 5.0, ["a", "b"])
    assert args.embed_port == 8091 and args.embed_job is None
    embed = parser.parse_args(["dev-gateway", "--embed-port", "0", "--embed-job", "Qm1"])
    assert (embed.embed_port, embed.embed_job, embed.port) == (0, ["Qm1"], 8090)
