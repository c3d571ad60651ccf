"""The reference embed server (testing.embed_server): each behaviour modelled from the real code.

Requests are real HTTP on 127.0.0.1, signed by real node identities; managed dispatch pushes to
real Direct API apps (the node's own, over a real SQLite store) served on loopback.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from speak_encoder.config import Settings
from speak_encoder.node.identity import NodeIdentity
from speak_encoder.node.store import JobStore
from speak_encoder.sources.direct_api import create_app
from speak_encoder.testing.embed_server import (
    DEFAULT_WEBHOOK_KEY,
    IPFS_GATEWAY,
    EmbedAdminError,
    EmbedServer,
)
from speak_encoder.testing.serving import AsgiServer
from tests.support.gateway_fixtures import (
    NodeKey,
    embed_server,
    gateway_settings,
    new_node_key,
    node_key,
)

__all__ = ["embed_server", "gateway_settings", "node_key"]  # fixtures used here

API = "/api/v0/gateway/"
CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
CID2 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
LOOPBACK_GATEWAY = "http://127.0.0.1:9/ipfs"  # a prefix in URLs only: nothing fetches it here
DIRECT_KEY = "direct-api-key-for-tests"
TOKEN = re.compile(r"^[0-9a-f]{64}$")
#: One client for the whole module (creating one costs more than a request).
HTTP = httpx.Client(timeout=10)


def post_jws(embed: EmbedServer, who: NodeIdentity, route: str, payload: dict[str, Any]
             ) -> httpx.Response:  # fmt: skip
    return HTTP.post(embed.url + API + route, json={"jws": who.sign_jws(payload)})


def register(embed: EmbedServer, key: NodeKey, **info: Any) -> dict[str, Any]:
    node_info = {"name": "n1", "cryptoAccounts": {"hive": "tester"}, "commit_hash": "1.0", **info}
    answer = post_jws(embed, key.identity, "updateNode", {"node_info": node_info})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def my_job(embed: EmbedServer, key: NodeKey) -> httpx.Response:
    return post_jws(embed, key.identity, "myJob", {"timestamp": "2024-01-01T00:00:00.000Z"})


def hook(embed: EmbedServer, key: str | None, body: dict[str, Any], *, progress: bool = False
         ) -> httpx.Response:  # fmt: skip
    headers = {"X-API-Key": key} if key is not None else {}
    path = "/webhook/progress" if progress else "/webhook"
    return HTTP.post(embed.url + path, json=body, headers=headers)


def complete(owner: str, permlink: str, cid: str = "QmManifest") -> dict[str, Any]:
    return {"owner": owner, "permlink": permlink, "status": "complete", "manifest_cid": cid,
            "video_url": f"ipfs://{cid}/manifest.m3u8", "job_id": "j1"}  # fmt: skip


def ping(owner: str, permlink: str, progress: int = 40, stage: str = "encode") -> dict[str, Any]:
    return {"owner": owner, "permlink": permlink, "progress": progress, "stage": stage}


def claimed_token(embed: EmbedServer, key: NodeKey) -> str:
    """Register ``key``, add alice's video ``clip`` and claim its job: the callback token."""
    register(embed, key)
    embed.add_video("alice", "clip", CID)
    token = str(my_job(embed, key).json()["job"]["api_key"])
    assert TOKEN.match(token), token
    return token


@pytest.fixture
def embed() -> Iterator[EmbedServer]:
    with EmbedServer(ipfs_gateway=LOOPBACK_GATEWAY) as server:
        yield server


# --- records and registration ----------------------------------------------------------------


def test_add_video_makes_a_processing_video_and_a_pending_job(embed: EmbedServer) -> None:
    job = embed.add_video("alice", "clip", CID, frontend_app="3speak-tv", size=1234)
    assert (job.status, job.attempt_count, job.premium, job.short) == ("pending", 0, False, False)
    video = embed.video("clip")
    assert (video.status, video.input_cid, video.encoding_progress) == ("processing", CID, 0)
    with pytest.raises(ValueError, match="duplicate key"):
        embed.add_video("alice", "clip", CID)
    snapshot = embed.job("alice", "clip")
    snapshot.status = "failed"
    assert embed.job("alice", "clip").status == "pending", "snapshots are copies"
    doc = HTTP.get(embed.url + "/video/clip").json()
    assert doc["status"] == "processing" and doc["frontend_app"] == "3speak-tv"
    assert doc["size"] == 1234 and doc["encodingProgress"] == 0
    missing = HTTP.get(embed.url + "/video/nope")
    assert (missing.status_code, missing.json()) == (404, {"error": "Video not found"})


def test_update_node_registers_under_a_name_derived_from_the_did(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    answer = register(embed, node_key, peer_id="12D3KooWPeer")
    name = "community-" + node_key.did[-12:]
    assert answer == {
        "success": True,
        "encoder": {"name": name, "did": node_key.did, "tier": "lite", "access": "community",
                    "enabled": True},
    }  # fmt: skip
    encoder = embed.encoder(node_key.did)
    assert (encoder.name, encoder.display_name, encoder.hive_account) == (name, "n1", "tester")
    assert (encoder.peer_id, encoder.commit_hash, encoder.banned) == ("12D3KooWPeer", "1.0", False)

    # a flat payload, another display name and the old hive_account field: same record
    flat = post_jws(
        embed, node_key.identity, "updateNode", {"name": "renamed", "hive_account": "h2"}
    )
    assert flat.json()["encoder"]["name"] == name
    encoder = embed.encoder(name)
    assert (encoder.display_name, encoder.hive_account) == ("renamed", "h2")
    assert encoder.peer_id == "12D3KooWPeer", "a field not sent is kept"
    assert len(embed.encoders()) == 1
    [first, second] = embed.calls("updateNode")
    assert first.did == node_key.did and first.payload == {
        "node_info": {"name": "n1", "cryptoAccounts": {"hive": "tester"}, "commit_hash": "1.0",
                      "peer_id": "12D3KooWPeer"},
    }  # fmt: skip
    assert second.payload == {"name": "renamed", "hive_account": "h2"}


def test_a_bad_signature_is_401_and_express_answers_the_rest(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    jws = node_key.identity.sign_jws({"node_info": {"name": "n1"}})
    other = new_node_key().identity.sign_jws({"node_info": {"name": "evil"}})
    tampered = {"payload": other["payload"], "signatures": jws["signatures"]}
    for route in ("updateNode", "myJob", "heartbeat"):
        bad = HTTP.post(embed.url + API + route, json={"jws": tampered})
        assert (bad.status_code, bad.json()) == (401, {"error": "Invalid JWS signature"})
        missing = HTTP.post(embed.url + API + route, json={"timestamp": "t"})
        assert (missing.status_code, missing.json()) == (401, {"error": "Invalid JWS signature"})
    assert embed.encoders() == []
    broken = HTTP.post(embed.url + "/webhook", content=b"{not json",
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert broken.status_code == 400 and "Bad Request" in broken.text
    unknown = HTTP.get(embed.url + API + "myJob")
    assert unknown.status_code == 404 and f"Cannot GET {API}myJob" in unknown.text
    assert HTTP.get(embed.url + "/").headers["location"] == "/demo.html"
    health = HTTP.get(embed.url + "/health").json()
    assert health["status"] == "ok" and health["service"] == "3speak-video-upload"


def test_heartbeat_needs_a_registration_but_ignores_enabled_and_banned(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    beat = {"timestamp": "t", "version": "1.0"}
    unregistered = post_jws(embed, node_key.identity, "heartbeat", beat)
    assert (unregistered.status_code, unregistered.json()) == (
        404, {"error": "Encoder not registered"},
    )  # fmt: skip
    register(embed, node_key)
    seen = embed.encoder(node_key.did).last_seen_at
    answer = post_jws(embed, node_key.identity, "heartbeat", beat)
    assert (answer.status_code, answer.json()) == (200, {"success": True})
    assert (embed.encoder(node_key.did).last_seen_at or 0) >= (seen or 0)
    embed.set_encoder(node_key.did, enabled=False, banned=True)
    still = post_jws(embed, node_key.identity, "heartbeat", beat)
    assert (still.status_code, still.json()) == (200, {"success": True})


def test_my_job_refuses_an_unregistered_disabled_or_banned_encoder(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    embed.add_video("alice", "clip", CID)
    unknown = my_job(embed, node_key)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Encoder not registered"})
    register(embed, node_key)
    for change in ({"enabled": False}, {"enabled": True, "banned": True}):
        embed.set_encoder(node_key.did, **change)
        refused = my_job(embed, node_key)
        assert (refused.status_code, refused.json()) == (
            403, {"error": "Encoder is disabled or banned"},
        )  # fmt: skip
    assert embed.job("alice", "clip").status == "pending", "nothing claimed"
    with pytest.raises(EmbedAdminError, match="No valid fields"):
        embed.set_encoder(node_key.did)


def test_my_job_claims_the_oldest_free_long_job_with_a_fresh_token(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    register(embed, node_key)
    embed.add_video("alice", "premium", CID, premium=True)
    embed.add_video("alice", "short", CID, short=True)
    embed.add_video("bob", "first", CID, frontend_app="3speak-tv", original_filename="a.mp4")
    embed.add_video("carol", "second", CID2)
    offered = my_job(embed, node_key).json()
    token = offered["job"]["api_key"]
    assert TOKEN.match(token)
    assert offered == {
        "success": True,
        "job": {"owner": "bob", "permlink": "first", "input_cid": f"{LOOPBACK_GATEWAY}/{CID}",
                "short": False, "premium": False, "webhook_url": f"{embed.url}/webhook",
                "api_key": token, "frontend_app": "3speak-tv", "originalFilename": "a.mp4"},
    }  # fmt: skip
    job = embed.job("bob", "first")
    assert (job.status, job.callback_token) == ("encoding", token)
    assert job.assigned_worker == embed.encoder(node_key.did).name and job.assigned_at
    second = my_job(embed, node_key).json()["job"]
    assert second["owner"] == "carol" and second["api_key"] != token
    assert second["frontend_app"] is None and second["originalFilename"] is None
    assert my_job(embed, node_key).json() == {"success": True, "job": None}
    assert embed.job("alice", "premium").status == embed.job("alice", "short").status == "pending"
    assert [o["permlink"] for o in embed.offers(node_key.did)] == ["first", "second"]


def test_the_real_ipfs_gateway_is_the_default_prefix(node_key: NodeKey) -> None:
    with EmbedServer() as embed:
        register(embed, node_key)
        embed.add_video("alice", "clip", CID)
        assert my_job(embed, node_key).json()["job"]["input_cid"] == f"{IPFS_GATEWAY}/{CID}"


def test_size_capped_encoders_claim_only_jobs_of_a_known_size_within_the_cap(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    register(embed, node_key)
    embed.set_encoder(node_key.did, max_file_size=1000)
    embed.add_video("a", "unknown-size", CID)
    embed.add_video("a", "too-big", CID, size=5000)
    embed.add_video("a", "fits", CID, size=900)
    assert my_job(embed, node_key).json()["job"]["permlink"] == "fits"
    assert my_job(embed, node_key).json()["job"] is None


# --- webhooks --------------------------------------------------------------------------------


def test_each_claim_mints_a_token_and_an_older_one_is_refused(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    register(embed, node_key)
    embed.add_video("alice", "clip", CID)
    first = my_job(embed, node_key).json()["job"]["api_key"]
    assert hook(embed, first, ping("alice", "clip"), progress=True).status_code == 200
    embed.redispatch("alice", "clip")
    assert embed.job("alice", "clip").callback_token == first, "resetJob keeps the token"
    # until the next claim the old token still works, and a ping puts the job back to encoding:
    # nobody claims it again until the stall check resets it
    assert hook(embed, first, ping("alice", "clip"), progress=True).status_code == 200
    assert embed.job("alice", "clip").status == "encoding"
    assert my_job(embed, node_key).json()["job"] is None
    embed.redispatch("alice", "clip")
    second = my_job(embed, node_key).json()["job"]["api_key"]
    assert second != first and embed.job("alice", "clip").callback_token == second
    for progress in (False, True):
        body = ping("alice", "clip") if progress else complete("alice", "clip")
        old = hook(embed, first, body, progress=progress)
        assert (old.status_code, old.json()) == (401, {"error": "Unauthorized"})
    assert embed.video("clip").status == "processing"
    assert hook(embed, second, complete("alice", "clip")).status_code == 200
    assert embed.video("clip").status == "published"


def test_completion_publishes_the_video_whatever_the_job_state(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    embed.add_video("alice", "clip", CID)
    answer = hook(embed, DEFAULT_WEBHOOK_KEY, complete("alice", "clip", "QmOut"))
    assert (answer.status_code, answer.json()) == (
        200, {"success": True, "message": "Webhook processed successfully"},
    )  # fmt: skip
    video, job = embed.video("clip"), embed.job("alice", "clip")
    assert (video.status, video.manifest_cid, video.encoding_progress) == (
        "published",
        "QmOut",
        100,
    )
    assert job.status == "completed" and job.webhook_received_at is not None
    # the global key needs no job at all; without it a webhook needs the job and its token
    assert hook(embed, DEFAULT_WEBHOOK_KEY, complete("x", "nothing")).status_code == 200
    for key in (None, "", "wrong-key"):
        refused = hook(embed, key, complete("alice", "clip"))
        assert (refused.status_code, refused.json()) == (401, {"error": "Unauthorized"})
    unknown = hook(embed, DEFAULT_WEBHOOK_KEY, {"owner": "alice", "permlink": "clip",
                                                "status": "done"})  # fmt: skip
    assert (unknown.status_code, unknown.json()) == (400, {"error": "Unknown status"})


def test_a_failure_requeues_the_job_twice_then_fails_it_for_good(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    register(embed, node_key)
    embed.add_video("alice", "clip", CID)
    messages, errors = [], []
    for _ in range(3):
        token = my_job(embed, node_key).json()["job"]["api_key"]
        hook(embed, token, ping("alice", "clip", 30))
        failed = hook(embed, token, {"owner": "alice", "permlink": "clip", "status": "failed",
                                     "error": "ffmpeg died"})  # fmt: skip
        messages.append(failed.json()["message"])
        job = embed.job("alice", "clip")
        errors.append((job.status, job.attempt_count, job.last_error, embed.video("clip").status))
        if job.status == "pending":
            assert job.assigned_worker is None and job.encoding_progress is None
            assert job.webhook_received_at is not None
    assert messages == [
        "Webhook processed (failure recorded, job requeued)",
        "Webhook processed (failure recorded, job requeued)",
        "Webhook processed (failure recorded)",
    ]
    assert errors == [
        ("pending", 1, "ffmpeg died (attempt 1/3, requeueing)", "processing"),
        ("pending", 2, "ffmpeg died (attempt 2/3, requeueing)", "processing"),
        ("failed", 2, "ffmpeg died", "failed"),
    ]
    assert my_job(embed, node_key).json()["job"] is None
    embed.add_video("bob", "plain", CID)
    hook(embed, DEFAULT_WEBHOOK_KEY, {"owner": "bob", "permlink": "plain", "status": "failed"})
    assert embed.job("bob", "plain").last_error == "Encoding failed (attempt 1/3, requeueing)"


def test_progress_is_validated_then_looked_up_then_authorised(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    token = claimed_token(embed, node_key)
    required = {"error": "owner, permlink, and progress (number) are required"}
    for body in ({"owner": "alice", "permlink": "clip"}, {"owner": "", "permlink": "clip",
                 "progress": 5}, {"owner": "alice", "permlink": "clip", "progress": "5"},
                 {"owner": "alice", "permlink": "clip", "progress": True}):  # fmt: skip
        answer = hook(embed, token, body, progress=True)
        assert (answer.status_code, answer.json()) == (400, required)
    unknown = hook(embed, "wrong-key", ping("alice", "other"), progress=True)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Job not found"})
    refused = hook(embed, "wrong-key", ping("alice", "clip"), progress=True)
    assert (refused.status_code, refused.json()) == (401, {"error": "Unauthorized"})
    ok = hook(embed, token, ping("alice", "clip", 55, "upload"), progress=True)
    assert (ok.status_code, ok.json()) == (200, {"success": True})
    job = embed.job("alice", "clip")
    assert (job.status, job.encoding_progress, job.encoding_stage) == ("encoding", 55, "upload")
    assert embed.video("clip").encoding_progress == 55
    hook(embed, token, {"owner": "alice", "permlink": "clip", "progress": 60}, progress=True)
    assert embed.job("alice", "clip").encoding_stage is None


def test_a_ping_after_the_completion_unpublishes_the_video(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    token = claimed_token(embed, node_key)
    assert hook(embed, token, complete("alice", "clip")).status_code == 200
    assert embed.video("clip").status == "published"
    assert hook(embed, token, ping("alice", "clip", 99, "upload"), progress=True).status_code == 200
    video, job = embed.video("clip"), embed.job("alice", "clip")
    assert (video.status, video.manifest_cid, video.encoding_progress) == (
        "processing", "QmManifest", 99,
    )  # fmt: skip
    assert job.status == "encoding"


@contextlib.contextmanager
def held(
    embed: EmbedServer, route: str, send: Callable[[], httpx.Response]
) -> Iterator[list[httpx.Response]]:
    """``send`` in the background while ``route`` is held: the block runs once the request waits
    at the server; on leaving it the hold ends and the list gets the request's one answer."""
    answers: list[httpx.Response] = []
    with embed.hold(route):
        sender = threading.Thread(target=lambda: answers.append(send()), daemon=True)
        sender.start()
        embed.wait_for(lambda: embed.pending_requests(route) == 1, 10)
        yield answers
    sender.join(10)
    assert len(answers) == 1, "the held request was not answered"


def test_a_slow_progress_receiver_applies_an_earlier_ping_after_the_completion(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    token = claimed_token(embed, node_key)
    with held(
        embed, "webhook/progress", lambda: hook(embed, token, ping("alice", "clip"), progress=True)
    ) as answers:
        assert hook(embed, token, complete("alice", "clip")).status_code == 200
        assert embed.video("clip").status == "published"
    [progress], [final] = embed.calls("webhook/progress"), embed.calls("webhook")
    assert answers[0].status_code == 200 and embed.pending_requests("webhook/progress") == 0
    assert progress.received_at < final.received_at < final.answered_at < progress.answered_at
    assert embed.video("clip").status == "processing", "the earlier ping took effect last"
    assert embed.job("alice", "clip").status == "encoding"


def test_a_held_completion_takes_effect_after_a_later_ping(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    token = claimed_token(embed, node_key)
    with held(embed, "webhook", lambda: hook(embed, token, complete("alice", "clip"))) as answers:
        assert hook(embed, token, ping("alice", "clip"), progress=True).status_code == 200
        assert embed.video("clip").status == "processing"
    assert answers[0].status_code == 200 and embed.video("clip").status == "published"


@pytest.mark.parametrize("route", ["webhook", "webhook/progress"])
def test_the_delay_knobs_hold_each_report_before_it_is_processed(
    node_key: NodeKey, route: str
) -> None:
    with EmbedServer(webhook_delay=0.3, progress_delay=0.3) as embed:
        token = claimed_token(embed, node_key)
        progress = route.endswith("progress")
        body = ping("alice", "clip") if progress else complete("alice", "clip")
        assert hook(embed, token, body, progress=progress).status_code == 200
        [call] = embed.calls(route)
    assert call.answered_at - call.received_at >= 0.3


# --- admin actions ---------------------------------------------------------------------------


def test_redispatch_resets_the_job_and_the_video(embed: EmbedServer, node_key: NodeKey) -> None:
    token = claimed_token(embed, node_key)
    hook(embed, token, {"owner": "alice", "permlink": "clip", "status": "failed", "error": "x"})
    my_job(embed, node_key)
    hook(embed, DEFAULT_WEBHOOK_KEY, complete("alice", "clip"))
    answer = embed.redispatch("alice", "clip")
    assert answer == {
        "success": True,
        "message": "Job reset to pending. Dispatcher will pick it up on the next cycle.",
        "job": {"owner": "alice", "permlink": "clip", "previousStatus": "completed"},
    }
    job, video = embed.job("alice", "clip"), embed.video("clip")
    assert (job.status, job.attempt_count, job.last_error, job.assigned_worker) == (
        "pending", 0, None, None,
    )  # fmt: skip
    assert (video.status, video.encoding_progress, video.manifest_cid) == (
        "processing", 0, "QmManifest",
    )  # fmt: skip
    with pytest.raises(EmbedAdminError, match="Job not found"):
        embed.redispatch("alice", "nothing")
    over_http = HTTP.post(embed.url + "/_reference/jobs/alice/clip/redispatch")
    assert over_http.json()["job"]["previousStatus"] == "pending"


def test_stalls_reset_the_job_twice_then_fail_it(embed: EmbedServer, node_key: NodeKey) -> None:
    register(embed, node_key)
    embed.add_video("alice", "clip", CID)
    embed.add_video("bob", "waiting", CID, premium=True)  # pending, not encoding: never stalled
    outcomes = []
    for _ in range(3):
        my_job(embed, node_key)
        outcomes.append([o.outcome for o in embed.reset_stalled(-1.0)])
        job = embed.job("alice", "clip")
        if job.status == "pending":
            assert (job.last_error, job.assigned_worker) == (
                "Reset due to stall (no progress update)", None,
            )  # fmt: skip
    assert outcomes == [["reset"], ["reset"], ["failed"]]
    job = embed.job("alice", "clip")
    assert (job.status, job.attempt_count, job.last_error) == (
        "failed", 2, "Stalled 3 times — giving up",
    )  # fmt: skip
    assert embed.video("clip").status == "failed"
    assert embed.job("bob", "waiting").status == "pending"


def test_a_progress_ping_restarts_the_stall_clock(embed: EmbedServer, node_key: NodeKey) -> None:
    token = claimed_token(embed, node_key)
    claimed = embed.job("alice", "clip").updated_at
    hook(embed, token, ping("alice", "clip"), progress=True)
    pinged = embed.job("alice", "clip").updated_at
    assert pinged > claimed
    between = time.time() - (claimed + pinged) / 2  # stalled since the claim, not the ping
    assert embed.reset_stalled(between) == []
    assert [o.outcome for o in embed.reset_stalled(-1.0)] == ["reset"]


def test_a_removed_encoder_is_unknown_until_it_registers_again(
    embed: EmbedServer, node_key: NodeKey
) -> None:
    register(embed, node_key)
    embed.set_encoder(node_key.did, banned=True)
    embed.remove_encoder(node_key.did)
    for route in ("heartbeat", "myJob"):
        gone = post_jws(embed, node_key.identity, route, {"timestamp": "t"})
        assert (gone.status_code, gone.json()) == (404, {"error": "Encoder not registered"})
    with pytest.raises(EmbedAdminError, match="Encoder not found"):
        embed.remove_encoder(node_key.did)
    again = register(embed, node_key)["encoder"]
    assert again["enabled"] is True and embed.encoder(node_key.did).banned is False


# --- managed dispatch ------------------------------------------------------------------------


@contextlib.contextmanager
def direct_api(make: Callable[..., Settings], tmp_path: Path, name: str) -> Iterator[
    tuple[str, JobStore]
]:  # fmt: skip
    """A node's real Direct API app over a real SQLite store, served on loopback."""
    settings = make(data_dir=tmp_path / name, temp_dir=tmp_path / name / "work",
                    direct_api_key=DIRECT_KEY)  # fmt: skip
    store = JobStore.from_settings(settings)
    store.migrate()
    app = create_app(settings, store, lambda: None, ready=lambda: True)
    try:
        with AsgiServer(app) as server:
            yield server.url, store
    finally:
        store.close()


def test_dispatch_pushes_up_to_five_jobs_round_robin_to_real_direct_apis(
    embed: EmbedServer, gateway_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with direct_api(gateway_settings, tmp_path, "a") as (url_a, store_a), \
            direct_api(gateway_settings, tmp_path, "b") as (url_b, store_b):  # fmt: skip
        embed.add_managed_encoder("enc-a", url_a, DIRECT_KEY)
        embed.add_managed_encoder("enc-b", url_b, DIRECT_KEY)
        embed.add_managed_encoder("off", "http://127.0.0.1:9", "k", enabled=False)
        embed.add_video("alice", "v0", CID, premium=True, frontend_app="app",
                        original_filename="v0.mp4")  # fmt: skip
        for n in range(1, 7):
            embed.add_video("alice", f"v{n}", CID, short=n == 1)
        first = embed.dispatch_once()
        second = embed.dispatch_once()
        assert [r.ok for r in first] == [True] * 5 and [r.permlink for r in second] == ["v5", "v6"]
        encode_calls = embed.calls("encode", direction="out")
        a_jobs, b_jobs = store_a.list_jobs(), store_b.list_jobs()
    assert [r.encoder for r in first] == ["enc-a", "enc-a", "enc-a", "enc-b", "enc-a"], (
        "round-robin per group: premium, short, then the free standard group"
    )
    call = encode_calls[0]
    assert call.path == f"{url_a}/encode" and call.api_key == DIRECT_KEY and call.status == 200
    assert call.body == {
        "owner": "alice", "permlink": "v0", "input_cid": f"{LOOPBACK_GATEWAY}/{CID}",
        "short": False, "premium": True, "webhook_url": f"{embed.url}/webhook",
        "api_key": DEFAULT_WEBHOOK_KEY, "frontend_app": "app", "originalFilename": "v0.mp4",
    }  # fmt: skip
    job = embed.job("alice", "v0")
    assert (job.status, job.assigned_worker, job.last_error) == ("encoding", "enc-a", None)
    assert job.encoder_job_id == call.answer["job_id"]
    assert len(a_jobs) + len(b_jobs) == 7
    by_id = {j.id: j for j in a_jobs}
    node_job = by_id[job.encoder_job_id]
    assert (
        node_job.source == f"ipfs://{CID}" and node_job.request["webhook_url"] == embed.webhook_url
    )
    assert node_job.request["api_key"] == DEFAULT_WEBHOOK_KEY


def test_one_cycle_spends_the_whole_dispatch_budget_of_a_failing_job(
    embed: EmbedServer, gateway_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # a job put back to pending after a dispatch error is the oldest pending job again: the
    # same cycle claims it again, so four errors in one cycle fail it (the real loop does this)
    embed.add_video("alice", "clip", CID)
    embed.add_video("bob", "next", CID)
    results = embed.dispatch_once()
    assert [(r.permlink, r.encoder, r.job_status) for r in results] == [
        ("clip", None, "pending"), ("clip", None, "pending"), ("clip", None, "pending"),
        ("clip", None, "failed"), ("next", None, "pending"),
    ]  # fmt: skip
    assert {r.error for r in results} == {"No suitable encoders available for free job"}
    job = embed.job("alice", "clip")
    assert (job.status, job.attempt_count) == ("failed", 4)
    assert job.last_error == "Max attempts exceeded: No suitable encoders available for free job"
    assert embed.video("clip").status == "failed"
    assert embed.job("bob", "next").attempt_count == 1

    with direct_api(gateway_settings, tmp_path, "a") as (url, _store):
        embed.add_managed_encoder("wrong-key", url, "not-the-key")
        refused = embed.dispatch_once()
        embed.remove_encoder("wrong-key")
    assert [r.encoder for r in refused] == ["wrong-key"] * 3
    assert all((r.error or "").startswith("Encoder API error: 401 - {") for r in refused)
    assert embed.job("bob", "next").status == "failed"
    assert [c.status for c in embed.calls("encode", direction="out")] == [401] * 3

    embed.add_video("carol", "third", CID)
    embed.add_managed_encoder("gone", url, DIRECT_KEY)  # the API has stopped: nobody listens
    closed = embed.dispatch_once()
    assert [r.error for r in closed] == ["fetch failed"] * 4
    assert embed.job("carol", "third").last_error == "Max attempts exceeded: fetch failed"
    assert embed.calls("encode", direction="out")[-1].status == 0
    assert embed.dispatch_once() == []


def test_dispatch_follows_the_tiers(
    embed: EmbedServer, gateway_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with direct_api(gateway_settings, tmp_path, "lite") as (lite_url, lite_store), \
            direct_api(gateway_settings, tmp_path, "perf") as (perf_url, perf_store):  # fmt: skip
        embed.add_managed_encoder("lite", lite_url, DIRECT_KEY, tier="lite")
        embed.add_video("alice", "premium", CID, premium=True)
        failed = embed.dispatch_once()
        assert {r.error for r in failed} == {
            "No suitable managed encoders available for premium job"
        }
        embed.add_managed_encoder("perf", perf_url, DIRECT_KEY, tier="performance")
        embed.add_video("alice", "free", CID)
        embed.add_video("alice", "premium-2", CID, premium=True)
        embed.add_video("alice", "short", CID, short=True)
        chosen = {r.permlink: r.encoder for r in embed.dispatch_once()}
        lite_jobs = [j.request["permlink"] for j in lite_store.list_jobs()]
        perf_jobs = [j.request["permlink"] for j in perf_store.list_jobs()]
    assert embed.job("alice", "premium").status == "failed"
    assert chosen == {"free": "lite", "premium-2": "perf", "short": "lite"}, (
        "free jobs never get performance; short ones any tier (round-robin)"
    )
    assert sorted(lite_jobs) == ["free", "short"] and perf_jobs == ["premium-2"]
    with pytest.raises(EmbedAdminError, match="already exists"):
        embed.add_managed_encoder("lite", lite_url, DIRECT_KEY)


def test_the_background_dispatcher_runs_every_interval(
    gateway_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with direct_api(gateway_settings, tmp_path, "a") as (url, store), \
            EmbedServer(dispatch_interval=0.2) as embed:  # fmt: skip
        embed.add_managed_encoder("enc", url, DIRECT_KEY)
        embed.add_video("alice", "clip", CID)
        embed.wait_for(lambda: embed.job("alice", "clip").status == "encoding"
                       and embed.job("alice", "clip").encoder_job_id, timeout=10)  # fmt: skip
        assert [j.request["permlink"] for j in store.list_jobs()] == ["clip"]


# --- faults, the call log, waits -------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "fault", "status", "body"),
    [
        ("myJob", "500", 500, {"error": "Internal server error"}),
        ("myJob", "404", 404, {"error": "Encoder not registered"}),
        ("heartbeat", "401", 401, {"error": "Invalid JWS signature"}),
        ("webhook", "401", 401, {"error": "Unauthorized"}),
        ("webhook/progress", "404", 404, {"error": "Job not found"}),
        ("updateNode", "html", 502, None),
        ("myJob", "malformed", 200, None),
    ],
)
def test_faults_hit_the_next_requests_only(
    embed: EmbedServer, node_key: NodeKey, route: str, fault: Any, status: int, body: Any
) -> None:
    register(embed, node_key)
    embed.add_video("alice", "clip", CID)
    embed.fail_next(route, fault, times=1)

    def send() -> httpx.Response:
        if route == "webhook":
            return hook(embed, DEFAULT_WEBHOOK_KEY, complete("alice", "clip"))
        if route == "webhook/progress":
            return hook(embed, DEFAULT_WEBHOOK_KEY, ping("alice", "clip"), progress=True)
        return post_jws(embed, node_key.identity, route, {"timestamp": "t", "node_info": {}})

    faulty, normal = send(), send()
    assert faulty.status_code == status and normal.status_code == 200
    if body is not None:
        assert faulty.json() == body
    elif fault == "html":
        assert "502 Bad Gateway" in faulty.text
    else:
        with pytest.raises(ValueError, match="Expecting"):
            faulty.json()
    assert [c.fault for c in embed.calls(route)][-2:] == [fault, None]


def test_a_timeout_fault_hangs(embed: EmbedServer, node_key: NodeKey) -> None:
    embed.hang_seconds = 2.0
    embed.fail_next("*", "timeout")
    with pytest.raises(httpx.ReadTimeout):
        HTTP.post(embed.url + API + "heartbeat", json={}, timeout=0.5)


def test_the_call_log_keeps_headers_bodies_and_times(embed: EmbedServer, node_key: NodeKey) -> None:
    embed.add_video("alice", "clip", CID)
    headers = {"X-API-Key": DEFAULT_WEBHOOK_KEY, "User-Agent": "speak-encoder/test",
               "Idempotency-Key": "j1:complete", "X-Other": "not kept"}  # fmt: skip
    HTTP.post(embed.url + "/webhook", json=complete("alice", "clip"), headers=headers)
    [call] = embed.wait_for_calls("webhook")
    assert call.api_key == DEFAULT_WEBHOOK_KEY and call.headers["idempotency-key"] == "j1:complete"
    assert "x-other" not in call.headers and call.headers["user-agent"] == "speak-encoder/test"
    assert call.body == complete("alice", "clip") and call.status == 200
    assert call.answer == {"success": True, "message": "Webhook processed successfully"}
    assert call.direction == "in" and call.received_at <= call.answered_at
    with pytest.raises(AssertionError, match=r"timed out after 0\.1 s waiting for no myJob"):
        embed.wait_for(lambda: embed.calls("myJob"), timeout=0.1, what="no myJob")


def test_dev_gateway_serves_the_legacy_gateway_and_the_embed_server() -> None:
    command = [
        sys.executable, "-m", "speak_encoder", "dev-gateway", "--port", "0", "--embed-port", "0",
        "--embed-job", CID, "--ipfs-gateway", LOOPBACK_GATEWAY,
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(lines)
        legacy = re.search(r"reference gateway \(legacy, §2\) on (http://\S+)", text)
        embed = re.search(r"reference embed server \(§3\) on (http://\S+)", text)
        assert legacy and embed, text
        assert HTTP.get(legacy.group(1) + API + "stats").status_code == 200
        video = HTTP.get(embed.group(1) + "/video/video-1").json()
        assert video["input_cid"] == CID and video["owner"] == "dev"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
