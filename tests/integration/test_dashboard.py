"""The dashboard's HTTP surface: page + CSP, JSON snapshot, SSE, token-gated actions, the store.

Over a real :class:`Service` (SQLite job store, scheduler, monitor) and the operator app, through
httpx's ASGI transport (the browser tests drive the same routes over real HTTP).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from speak_encoder.config import SecretStr, Settings
from speak_encoder.logs import RingBufferHandler
from speak_encoder.node.models import NewJob, SourceKind
from speak_encoder.service import Service
from speak_encoder.sources.gateway_protocol import PollRounds
from speak_encoder.storage.local_store import stored_path
from speak_encoder.testing.ipfs_node import JsIpfsNode
from speak_encoder.web.app import bind_web_socket, create_web_app, serve_web
from speak_encoder.web.dashboard import CSP, STATIC_DIR, Dashboard, dashboard_routes

TOKEN = "dash-token-123-0123456"
CID = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"  # the empty folder's CIDv0
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def ring() -> Iterator[RingBufferHandler]:
    handler = RingBufferHandler(capacity=100)
    logger = logging.getLogger("speak_encoder.tests.dashboard")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


def make_service(tmp_path: Path, token: str | None, **overrides: Any) -> Service:
    fields: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "node_name": "dash-node",
        "publish_targets": "",
        "ipfs_api_addr": "",
        "hardware_acceleration": False,
        "dashboard_token": SecretStr(token) if token else None,
        **overrides,
    }
    settings = Settings(**fields)
    node = Service(settings)
    node.startup()
    node.monitor.check()
    return node


class Client:
    """Requests into the operator app through httpx's ASGI transport (one event loop each)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def client_for(node: Service, ring: RingBufferHandler, **kw: Any) -> Client:
    return Client(create_web_app(node, routes=dashboard_routes(node, ring=ring, **kw)))


@pytest.fixture
def secured(tmp_path: Path, ring: RingBufferHandler) -> Iterator[tuple[Service, Client]]:
    node = make_service(tmp_path, TOKEN)
    with client_for(node, ring) as client:
        yield node, client
    node.store.close()


def submit(node: Service, source: str, **fields: Any) -> str:
    job, _ = node.store.submit(NewJob(source=source, **fields), queue_max=100)
    return job.id


def fail(node: Service, job_id: str, error: str) -> None:
    claimed = node.store.claim(node.node, lease_seconds=60)
    assert claimed is not None and claimed.id == job_id
    node.store.fail(job_id, node.node, error=error, kind="test")


# --- the page --------------------------------------------------------------------------------


def test_page_has_strict_csp_and_no_inline_script_or_cdn(secured: Any) -> None:
    _, client = secured
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert csp == CSP and "default-src 'self'" in csp and "unsafe" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    html = page.text
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []  # no inline script
    assert not re.search(r"\son[a-z]+=", html)  # no inline handlers
    for name in ("index.html", "app.js", "app.css"):
        text = (STATIC_DIR / name).read_text(encoding="utf-8")
        text = text.replace('"http://www.w3.org/2000/svg"', "")  # the SVG namespace name
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text
    for asset in ("/static/app.js", "/static/app.css", "/static/vendor/hls.min.js"):
        answer = client.get(asset)
        assert answer.status_code == 200, asset
    assert (STATIC_DIR / "vendor" / "hls.js.LICENSE").read_text().startswith("Copyright")


# --- the snapshot ------------------------------------------------------------------------------


def test_state_is_data_without_local_paths(
    secured: Any, ring: RingBufferHandler, tmp_path: Path
) -> None:
    node, client = secured
    local = tmp_path / "secret-folder" / f"{XSS}.mp4"
    queued = submit(node, str(local), request={"owner": XSS, "permlink": "p1"})
    failing = submit(node, "https://user:hunter2@example.com/a.mp4", kind=SourceKind.DIRECT)
    node.store.list_jobs()  # both stored
    # the oldest job is claimed first: fail the local one, keep the remote one queued
    fail(node, queued, f"source file not found: {local} (in {node.settings.work_dir}/x)")
    logging.getLogger("speak_encoder.tests.dashboard").info("X-API-Key: abcdef123456 hello")

    answer = client.get("/api/state")
    assert answer.status_code == 200
    data = answer.json()
    text = answer.text
    assert str(tmp_path) not in text and "hunter2" not in text and "abcdef123456" not in text
    assert data["node"]["name"] == "dash-node" and data["node"]["can_act"] is True
    assert data["node"]["did"] is None  # no identity configured
    assert data["node"]["sources"]["local"] is True
    [failed] = data["failed"]
    assert failed["source"] == f"{XSS}.mp4" and failed["owner"] == XSS
    assert failed["error"] == f"source file not found: {XSS}.mp4 (in $WORK_DIR/x)"
    assert [j["id"] for j in data["queue"]] == [failing]
    assert data["memory"] and len(data["memory"][0]) == 4
    assert data["outbox"] == {} or isinstance(data["outbox"], dict)
    assert any("hello" in e["msg"] for e in data["logs"])
    seq = data["log_seq"]
    again = (client.get("/api/state", params={"after": seq})).json()
    assert again["logs"] == [] and again["log_seq"] == seq


def test_complete_result_keeps_only_cid_and_durations(secured: Any) -> None:
    node, client = secured
    job_id = submit(node, "https://example.com/v.mp4", kind=SourceKind.DIRECT)
    assert node.store.claim(node.node, lease_seconds=60) is not None
    result = {"cid": CID, "manifest": "/srv/out/manifest.m3u8", "folder": "/srv/out",
              "duration": 3.0, "elapsed_seconds": 1.5}  # fmt: skip
    assert node.store.complete(job_id, node.node, result)
    [job] = (client.get("/api/state")).json()["recent"]
    assert job["result"] == {
        "cid": CID, "duration": 3.0, "elapsed_seconds": 1.5, "thumbnail": None
    }  # fmt: skip
    assert job["playable"] is True and job["poster"] is None


def test_a_poster_is_shown_from_the_local_store(secured: Any) -> None:
    node, client = secured
    job_id = submit(node, "https://example.com/v.mp4", kind=SourceKind.DIRECT)
    assert node.store.claim(node.node, lease_seconds=60) is not None
    thumbnail = f"ipfs://{CID}/thumbnail.jpg"
    assert node.store.complete(job_id, node.node, {"cid": CID, "thumbnail": thumbnail})
    [job] = (client.get("/api/state")).json()["recent"]
    assert job["result"]["thumbnail"] == thumbnail
    assert job["poster"] == f"/store/{CID}/thumbnail.jpg"


# --- the event stream ------------------------------------------------------------------------


def test_event_stream_sends_snapshots_and_resumes_the_log(
    tmp_path: Path, ring: RingBufferHandler
) -> None:
    node = make_service(tmp_path, None)
    logger = logging.getLogger("speak_encoder.tests.dashboard")
    logger.info("line one")
    with client_for(node, ring, interval=0.05, max_stream_s=0.3) as client:
        answer = client.get("/api/events")
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = [e for e in answer.text.split("\n\n") if e.startswith("id:")]
        assert len(events) >= 2
        first = json.loads(events[0].split("data: ", 1)[1])
        assert first["node"]["name"] == "dash-node"
        assert [e["msg"] for e in first["logs"]] == ["line one"]
        later = json.loads(events[1].split("data: ", 1)[1])
        assert later["logs"] == []  # each line is sent once per stream
        logger.info("line two")
        seq = first["log_seq"]
        resumed = client.get("/api/events", headers={"Last-Event-ID": str(seq)})
        data = json.loads(resumed.text.split("data: ", 1)[1].split("\n", 1)[0])
        assert [e["msg"] for e in data["logs"]] == ["line two"]
    node.store.close()


# --- actions -----------------------------------------------------------------------------------


def test_actions_need_the_token(secured: Any) -> None:
    node, client = secured
    job_id = submit(node, "https://example.com/a.mp4", kind=SourceKind.DIRECT)
    fail(node, job_id, "boom")
    url = f"/api/jobs/{job_id}/retry"
    assert (client.post(url)).status_code == 401
    assert (client.post(url, headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (client.post(url, headers={"Authorization": TOKEN})).status_code == 401
    assert (client.get(url)).status_code == 405
    assert node.store.require(job_id).state.value == "failed"

    auth = {"Authorization": f"Bearer {TOKEN}"}
    answer = client.post(url, headers=auth)
    assert answer.status_code == 200 and answer.json()["job"]["state"] == "queued"
    cancel = client.post(f"/api/jobs/{job_id}/cancel", headers=auth)
    assert cancel.status_code == 200 and cancel.json()["job"]["state"] == "cancelled"
    missing = client.post(f"/api/jobs/{'0' * 32}/retry", headers=auth)
    assert missing.status_code == 404
    assert (client.post("/api/jobs/..%2F..%2Fx/retry", headers=auth)).status_code == 404


def test_without_a_configured_token_every_action_is_refused(
    tmp_path: Path, ring: RingBufferHandler
) -> None:
    node = make_service(tmp_path, None)
    job_id = submit(node, "https://example.com/a.mp4", kind=SourceKind.DIRECT)
    fail(node, job_id, "boom")
    with client_for(node, ring) as client:
        assert (client.get("/api/state")).json()["node"]["can_act"] is False
        for header in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            answer = client.post(f"/api/jobs/{job_id}/retry", headers=header)
            assert answer.status_code == 403 and "read-only" in answer.json()["error"]
    assert node.store.require(job_id).state.value == "failed"
    node.store.close()


# --- the local store -------------------------------------------------------------------------


def test_store_serves_only_playlists_and_segments_of_a_cid(secured: Any, tmp_path: Path) -> None:
    node, client = secured
    folder = stored_path(node.settings, CID)
    (folder / "360p").mkdir(parents=True)
    (folder / "manifest.m3u8").write_text("#EXTM3U\n")
    (folder / "360p" / "index.m3u8").write_text("#EXTM3U\n")
    (folder / "360p" / "seg0.ts").write_bytes(b"\x47" * 188)
    (folder / ".hidden.ts").write_bytes(b"x")
    (folder / "notes.txt").write_text("x")
    outside = tmp_path / "outside.ts"
    outside.write_bytes(b"secret")
    (folder / "link.ts").symlink_to(outside)
    (node.settings.data_dir / "store" / "x.m3u8").write_text("#EXTM3U\n")

    manifest = client.get(f"/store/{CID}/manifest.m3u8")
    assert manifest.status_code == 200
    assert manifest.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    segment = client.get(f"/store/{CID}/360p/seg0.ts")
    assert segment.status_code == 200 and segment.headers["content-type"] == "video/mp2t"
    assert (client.get(f"/store/{CID}/360p/index.m3u8")).status_code == 200
    for bad in (
        f"/store/{CID}/.hidden.ts",
        f"/store/{CID}/notes.txt",
        f"/store/{CID}/link.ts",
        f"/store/{CID}/..%2Fx.m3u8",
        f"/store/{CID}/360p/..%2F..%2Fx.m3u8",
        "/store/not-a-cid/manifest.m3u8",
        "/store/..%2F..%2Fjobs.sqlite3/x.ts",
        f"/store/{CID}%20/manifest.m3u8",
        f"/store/{CID}/missing.m3u8",
    ):
        answer = client.get(bad)
        assert answer.status_code == 404, bad
        assert b"secret" not in answer.content


# --- IPFS status, job sources, pins and outbox --------------------------------------------------


def test_ipfs_status_shows_the_peer_id(
    tmp_path: Path, ring: RingBufferHandler, ipfs_node: JsIpfsNode
) -> None:
    node = make_service(tmp_path, None, ipfs_api_addr=ipfs_node.api_url)
    with client_for(node, ring) as client:
        ipfs = client.get("/api/state").json()["node"]["ipfs"]
    node.store.close()
    assert ipfs["configured"] is True and ipfs["ok"] is True, ipfs
    assert isinstance(ipfs["peer_id"], str) and len(ipfs["peer_id"]) > 20
    assert ipfs["error"] is None and ipfs["checked_at"] is not None


def test_ipfs_status_not_configured_or_unreachable(
    tmp_path: Path, ring: RingBufferHandler, closed_port: int
) -> None:
    node = make_service(tmp_path, None)
    with client_for(node, ring) as client:
        ipfs = client.get("/api/state").json()["node"]["ipfs"]
    node.store.close()
    assert ipfs == {"configured": False, "ok": False, "peer_id": None,
                    "error": "not configured", "checked_at": None}  # fmt: skip

    node = make_service(tmp_path / "b", None, ipfs_api_addr=f"http://127.0.0.1:{closed_port}")
    with client_for(node, ring) as client:
        ipfs = client.get("/api/state").json()["node"]["ipfs"]
        assert ipfs["configured"] is True and ipfs["ok"] is False and ipfs["peer_id"] is None
        assert ipfs["error"] and ipfs["checked_at"] is not None
        # cached: no second check within the interval
        again = client.get("/api/state").json()["node"]["ipfs"]
        assert again["checked_at"] == ipfs["checked_at"]
    node.store.close()


def test_sources_list_enabled_sources_with_health(
    tmp_path: Path, ring: RingBufferHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = make_service(tmp_path, None)
    with client_for(node, ring) as client:
        rows = client.get("/api/state").json()["node"]["source_health"]
    assert [(r["name"], r["enabled"], r["health"]) for r in rows] == [("local", True, "ok")]
    node.store.close()

    node = make_service(
        tmp_path / "b", None,
        direct_api_enabled=True, gateway_enabled=True, embed_gateway_enabled=True,
    )  # fmt: skip
    node.ready = True
    now = time.time()
    # The pollers' common shape (sources.gateway_protocol.Poller): registered + PollRounds.
    gateway_rounds = PollRounds("gateway", 60)
    gateway_rounds.succeeded()
    node.gateway_source = SimpleNamespace(
        registered=True, rounds=gateway_rounds, needs_update=None, latest_version=None
    )
    embed_rounds = PollRounds("embed gateway", 60)
    embed_rounds.last_ok_at = now - 60
    embed_rounds.failed("embed gateway", "https://user:hunter2@gw.example/api refused: 503")
    embed = SimpleNamespace(registered=False, rounds=embed_rounds)
    monkeypatch.setattr(node, "embed_source", embed, raising=False)
    with client_for(node, ring) as client:
        answer = client.get("/api/state")
    node.store.close()
    assert "hunter2" not in answer.text
    rows = {r["name"]: r for r in answer.json()["node"]["source_health"]}
    assert list(rows) == ["local", "direct_api", "gateway", "embed_gateway"]
    assert rows["direct_api"]["health"] == "listening"
    assert rows["gateway"]["health"] == "ok" and rows["gateway"]["registered"] is True
    assert rows["gateway"]["last_ok_at"] == pytest.approx(now)
    embed_row = rows["embed_gateway"]
    assert embed_row["health"] == "failing" and embed_row["registered"] is False
    assert "503" in embed_row["last_error"]


def test_pins_retry_needs_the_token_and_keeps_failing_pins_pending(
    tmp_path: Path, ring: RingBufferHandler, closed_port: int
) -> None:
    node = make_service(
        tmp_path, TOKEN, ipfs_api_addr=f"http://127.0.0.1:{closed_port}", ipfs_connect_timeout=2
    )
    node.store.pin_queue(node.settings).add(CID, "local", None, "node down")
    with client_for(node, ring) as client:
        assert client.post("/api/pins/retry").status_code == 401
        wrong = client.post("/api/pins/retry", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.get("/api/pins/retry").status_code == 405
        auth = {"Authorization": f"Bearer {TOKEN}"}
        answer = client.post("/api/pins/retry", headers=auth)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["attempted"] == 1 and body["done"] == 0 and body["failed"] == 1
        assert body["pins"]["pending"] == 1
        assert client.get("/api/state").json()["pins"]["pending"] == 1
    [entry] = node.store.pin_queue(node.settings).entries()
    assert entry.attempts >= 1
    node.store.close()

    readonly = make_service(tmp_path / "ro", None)
    with client_for(readonly, ring) as client:
        for url in ("/api/pins/retry", "/api/outbox/retry"):
            refused = client.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
            assert refused.status_code == 403, url
    readonly.store.close()


def test_outbox_retry_rearms_given_up_reports(secured: Any) -> None:
    node, client = secured
    for n in range(2):
        added = node.store.outbox_add(
            job_id=None,
            kind="webhook",
            target="https://example.com/h",
            payload={"n": n},
            headers={},
            idempotency_key=f"k{n}",
        )
        assert added
    [first, second] = node.store.outbox_due()
    node.store.outbox_failed(first.id, error="410 gone", next_attempt_at=None)
    node.store.outbox_failed(second.id, error="timeout", next_attempt_at=time.time() + 600)
    assert node.store.outbox_counts()["given_up"] == 1
    assert client.post("/api/outbox/retry").status_code == 401
    answer = client.post("/api/outbox/retry", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.json()["rearmed"] == 1
    assert answer.json()["outbox"]["given_up"] == 0 and answer.json()["outbox"]["pending"] == 2
    [due] = node.store.outbox_due()
    assert due.id == first.id and due.attempts == 0


def test_the_ipfs_check_is_owned_by_the_server_lifespan(
    tmp_path: Path, ring: RingBufferHandler
) -> None:
    """A check still running when the operator server stops is cancelled and awaited by the
    app's lifespan: serve_web returns with no check left behind."""
    silent = socket.create_server(("127.0.0.1", 0))  # takes connections, never answers
    port = silent.getsockname()[1]
    node = make_service(tmp_path, None, ipfs_api_addr=f"http://127.0.0.1:{port}")
    dashboard = Dashboard(node, ring=ring)
    app = create_web_app(node, routes=dashboard.routes, lifespan=dashboard.lifespan)

    async def main() -> tuple[bool, bool]:
        stop = asyncio.Event()
        server = asyncio.create_task(
            serve_web(app, stop=stop, sock=bind_web_socket("127.0.0.1", 0))
        )
        await dashboard.ipfs.refresh(wait=False)
        during = dashboard.ipfs.checking
        stop.set()
        await asyncio.wait_for(server, 10)
        return during, dashboard.ipfs.checking

    try:
        during, after = asyncio.run(main())
    finally:
        silent.close()
        node.store.close()
    assert during is True  # the check was waiting on the silent node
    assert after is False  # the lifespan ended it with the server
    assert dashboard.ipfs.current()["checked_at"] is None  # cancelled, not answered
