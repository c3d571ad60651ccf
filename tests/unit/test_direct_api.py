"""The Direct API (docs/protocols.md §4): auth, validation, limits, dedup, the SSRF guard, views.

Pure-API cases go through Starlette's TestClient (httpx over ASGI, the real app and a real
SQLite store); the socket cases run the real uvicorn server on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from speak_encoder.config import Settings, load_settings
from speak_encoder.node.models import JobState, SourceKind
from speak_encoder.node.store import JobStore
from speak_encoder.sources.direct_api import bind_socket, create_app, serve
from speak_encoder.sources.direct_request import DirectJobRequest, to_new_job
from speak_encoder.urlguard import UrlGuard, system_resolve

KEY = "direct-key-5b0c-0123456"
HOOK_KEY = "hook-secret-key-77"
CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
CID_V1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
PUBLIC_HOOK = "https://hooks.example/3speak/hook"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ERROR_KEYS = {"job_id", "status", "created_at", "error"}
AUTH = {"X-API-Key": KEY}


async def lab_dns(host: str, port: int) -> list[str]:
    """``*.example`` names are public addresses; anything else is resolved for real."""
    if host.endswith(".example"):
        return ["93.184.215.14"]
    return await system_resolve(host, port)


class Api:
    """An app over a fresh store, with a counter of ``wake()`` calls."""

    def __init__(self, settings: Settings, store: JobStore, ready: bool = True) -> None:
        self.settings = settings
        self.store = store
        self.wakes = 0
        self.ready = ready
        self.app: FastAPI = create_app(
            settings,
            store,
            self._wake,
            ready=lambda: self.ready,
            guard=UrlGuard.from_settings(settings, resolve=lab_dns),
        )
        self.client = TestClient(
            self.app, raise_server_exceptions=False, base_url="http://127.0.0.1"
        )

    def _wake(self) -> None:
        self.wakes += 1

    def submit(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post("/encode", json=body, headers=AUTH if headers is None else headers)


def job_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "owner": "alice",
        "permlink": "my-video",
        "input_cid": CID,
        "short": False,
        "webhook_url": PUBLIC_HOOK,
        "api_key": HOOK_KEY,
        "frontend_app": "tests",
        "originalFilename": "clip.mp4",
        "duration": 12.5,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    stores: list[JobStore] = []

    def build(*, ready: bool = True, **overrides: Any) -> Api:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "direct_api_key": KEY,
            "allow_private_urls": False,
            "ipfs_api_addr": "/ip4/127.0.0.1/tcp/5001",
            "node_name": "test-node",
        }
        values.update(overrides)
        settings = load_settings(**values)
        store = JobStore.from_settings(settings)
        store.migrate()
        stores.append(store)
        return Api(settings, store, ready)

    yield build
    for store in stores:
        store.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def assert_error(response: httpx.Response, status: int, pattern: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["status"] == "failed"
    assert ISO_Z.match(body["created_at"])
    assert re.search(pattern, body["error"]), body["error"]
    return body


# --- health and auth ------------------------------------------------------------------------


def test_health_needs_no_key_and_reports_readiness(make_api: Callable[..., Api]) -> None:
    api = make_api(ready=False)
    body = api.client.get("/health").json()
    assert (
        body["status"] == "starting" and body["ready"] is False and ISO_Z.match(body["timestamp"])
    )
    api.ready = True
    assert api.client.get("/health").json()["status"] == "healthy"


@pytest.mark.parametrize(
    ("headers", "pattern"),
    [
        ({}, "missing API key"),
        ({"X-API-Key": "wrong"}, "invalid API key"),
        ({"Authorization": "Bearer wrong"}, "invalid API key"),
        ({"Authorization": f"Basic {KEY}"}, "missing API key"),
        ({"X-API-Key": KEY + "x"}, "invalid API key"),
        ({"X-API-Key": "é".encode()}, "invalid API key"),  # type: ignore[dict-item]
    ],
)
def test_missing_or_wrong_key_is_refused(api: Api, headers: dict[str, str], pattern: str) -> None:
    for method, path in (("GET", "/jobs"), ("GET", f"/job/{'a' * 32}"), ("POST", "/encode")):
        assert_error(api.client.request(method, path, headers=headers), 401, pattern)
    assert api.store.counts()[JobState.QUEUED.value] == 0


@pytest.mark.parametrize("headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}])
def test_both_header_styles_are_accepted(api: Api, headers: dict[str, str]) -> None:
    assert api.client.get("/jobs", headers=headers).json() == {
        "total": 0,
        "pending": 0,
        "active": 0,
    }
    assert api.submit(job_body(), headers=headers).status_code == 200


def test_no_key_configured_refuses_everything_but_health(make_api: Callable[..., Api]) -> None:
    api = make_api(direct_api_key=None)
    for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "anything"}):
        assert_error(api.client.get("/jobs", headers=headers), 401, "no DIRECT_API_KEY configured")
        assert_error(api.submit(job_body(), headers), 401, "no DIRECT_API_KEY configured")
    assert api.client.get("/health").status_code == 200


# --- submitting -----------------------------------------------------------------------------


def test_submit_returns_exactly_the_upstream_shape(api: Api) -> None:
    response = api.submit(job_body())
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"job_id", "status", "created_at", "message", "progress"}
    assert body["status"] == "queued" and body["progress"] == 0
    assert body["message"] == "Job submitted successfully"
    assert ISO_Z.match(body["created_at"])
    assert HOOK_KEY not in response.text
    assert api.wakes == 1
    job = api.store.require(body["job_id"])
    assert job.kind is SourceKind.DIRECT
    assert job.source == f"ipfs://{CID}"
    assert job.rungs == ("480p",) and job.short is False
    assert job.dedup_key == f"alice/my-video/{CID}"
    assert job.request["api_key"] == HOOK_KEY  # kept for the webhook, never returned
    assert job.request["originalFilename"] == "clip.mp4"


@pytest.mark.parametrize(
    "reference",
    [f"ipfs://{CID}", f"ipfs://{CID}/video.mp4", f"https://gw.example/ipfs/{CID}?filename=a.mp4"],
)
def test_input_cid_is_reduced_to_the_bare_cid(api: Api, reference: str) -> None:
    job_id = api.submit(job_body(input_cid=reference)).json()["job_id"]
    job = api.store.require(job_id)
    assert job.source == f"ipfs://{CID}"
    assert job.request["input_cid"] == reference  # as submitted: the webhook echoes it
    assert job.dedup_key == f"alice/my-video/{CID}"


def test_rendition_policy(make_api: Callable[..., Api]) -> None:
    settings = make_api(standard_rungs="480p,720p").settings

    def new(**kw: Any):  # type: ignore[no-untyped-def]
        return to_new_job(DirectJobRequest.model_validate(job_body(**kw)), settings)

    assert (new(short=True).rungs, new(short=True).short) == (("480p",), True)
    assert new(short=True, premium=True).rungs == ("480p",)  # short wins
    assert new(premium=True).rungs is None  # the full ladder
    assert new().rungs == ("480p", "720p")
    embed = to_new_job(DirectJobRequest.model_validate(job_body()), settings, SourceKind.EMBED)
    assert embed.kind is SourceKind.EMBED


@pytest.mark.parametrize(
    "field", ["owner", "permlink", "input_cid", "webhook_url", "api_key", "short"]
)
def test_each_missing_field_is_a_400_naming_it(api: Api, field: str) -> None:
    assert_error(api.submit(job_body(**{field: ...})), 400, rf"{field}: is required")


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"owner": ""}, "owner"),
        ({"owner": "   "}, "owner: must not be empty"),
        ({"permlink": "a" * 300}, "permlink"),
        ({"permlink": "bad\x00link"}, "permlink: must not contain control characters"),
        ({"api_key": ""}, "api_key"),
        ({"api_key": "key\r\nX-Injected: 1"}, "api_key"),
        ({"short": "yes"}, "short"),
        ({"short": 1}, "short"),
        ({"premium": "true"}, "premium"),
        ({"duration": -1}, "duration"),
        ({"input_cid": "not-a-cid"}, "input_cid"),
        ({"input_cid": "Qm" + "1" * 44}, "input_cid"),
        ({"input_cid": "https://gw.example/video.mp4"}, "input_cid"),
        ({"webhook_url": "ftp://hooks.example/x"}, "webhook_url"),
        ({"webhook_url": "javascript:alert(1)"}, "webhook_url"),
        ({"owner": 5}, "owner"),
    ],
)
def test_invalid_fields_are_400_naming_them(
    api: Api, overrides: dict[str, Any], pattern: str
) -> None:
    assert_error(api.submit(job_body(**overrides)), 400, pattern)
    assert api.wakes == 0


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[1,2]", b'"text"', b'{"duration": NaN}', b"[" * 5000 + b"]" * 5000],
)
def test_broken_bodies_are_400(api: Api, raw: bytes) -> None:
    response = api.client.post(
        "/encode", content=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert set(response.json()) == ERROR_KEYS


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.8/hook",
        "http://10.255.0.1/hook",
        "http://172.16.0.5/hook",
        "http://172.31.9.9/hook",
        "http://192.168.1.20/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://user:pw@hooks.example/hook",
    ],
)
def test_webhook_urls_to_private_addresses_are_refused(api: Api, url: str) -> None:
    assert_error(api.submit(job_body(webhook_url=url)), 400, "webhook_url")
    assert api.store.counts()[JobState.QUEUED.value] == 0


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:5001/api/v0/shutdown", "http://localhost:5001/", "http://[::1]:5001/"]
)
def test_the_ipfs_rpc_is_refused_even_with_allow_private(
    make_api: Callable[..., Api], url: str
) -> None:
    api = make_api(allow_private_urls=True)
    assert api.submit(job_body(webhook_url="http://127.0.0.1:8080/hook")).status_code == 200
    assert_error(api.submit(job_body(webhook_url=url, permlink="p2")), 400, "own IPFS RPC")


# --- limits ---------------------------------------------------------------------------------


def test_oversized_body_is_413(make_api: Callable[..., Api]) -> None:
    api = make_api(direct_api_max_body=2048)
    big = job_body(frontend_app="x" * 1000, originalFilename="y" * 1000, owner="z" * 200)
    assert_error(api.submit(big), 413, "DIRECT_API_MAX_BODY")
    raw = json.dumps(big).encode()
    # a lying Content-Length: the bytes are counted as they arrive
    response = api.client.post("/encode", content=raw, headers={**AUTH, "Content-Length": "10"})
    assert_error(response, 413, "DIRECT_API_MAX_BODY")
    # chunked (no Content-Length at all)
    response = api.client.post("/encode", content=iter([raw[:1500], raw[1500:]]), headers=AUTH)
    assert_error(response, 413, "DIRECT_API_MAX_BODY")
    assert api.store.counts()[JobState.QUEUED.value] == 0


def test_queue_full_is_429_with_retry_after_and_nothing_dropped(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(queue_max=2)
    ids = [api.submit(job_body(permlink=f"v{i}")).json()["job_id"] for i in range(2)]
    refused = api.submit(job_body(permlink="v2"))
    body = assert_error(refused, 429, "queue is full")
    assert body["job_id"] == ""
    assert int(refused.headers["Retry-After"]) >= 1
    assert {j.id for j in api.store.list_jobs()} == set(ids)
    assert api.store.counts()[JobState.QUEUED.value] == 2
    # a duplicate of a queued job is still answered while the queue is full
    assert api.submit(job_body(permlink="v0")).json()["job_id"] == ids[0]


def test_duplicate_returns_the_same_job(api: Api) -> None:
    first = api.submit(job_body()).json()
    again = api.submit(job_body(input_cid=f"ipfs://{CID}", api_key="other")).json()
    assert again["job_id"] == first["job_id"]
    assert api.store.counts()[JobState.QUEUED.value] == 1
    assert api.store.require(first["job_id"]).request["api_key"] == "other"  # the newest wins
    assert api.wakes == 1
    other = api.submit(job_body(input_cid=CID_V1)).json()
    assert other["job_id"] != first["job_id"]
    # recently completed: still the same job, with its status
    job = api.store.claim("test-node", lease_seconds=60)
    assert job is not None and job.id == first["job_id"]
    api.store.complete(job.id, "test-node", {"cid": CID, "qualities_encoded": ["480p"]})
    done = api.submit(job_body()).json()
    assert (done["job_id"], done["status"]) == (job.id, "queued")
    reopened = api.store.require(job.id)
    assert reopened.generation == 1 and reopened.request["api_key"] == HOOK_KEY


def test_xss_looking_names_are_stored_verbatim_as_data(api: Api) -> None:
    evil = "<img src=x onerror=alert(1)>"
    response = api.submit(job_body(owner=evil, permlink=evil + "<script>"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    job = api.store.require(response.json()["job_id"])
    assert job.request["owner"] == evil and job.request["permlink"] == evil + "<script>"
    assert job.dedup_key == f"{evil}/{evil}<script>/{CID}"


# --- reading --------------------------------------------------------------------------------


def test_job_view_has_no_paths_or_secrets(api: Api) -> None:
    job_id = api.submit(job_body()).json()["job_id"]
    view = api.client.get(f"/job/{job_id}", headers=AUTH).json()
    assert set(view) == {
        "job_id",
        "status",
        "created_at",
        "updated_at",
        "progress",
        "result",
        "error",
    }
    assert (view["status"], view["progress"], view["result"], view["error"]) == (
        "queued",
        0,
        None,
        None,
    )
    job = api.store.claim("test-node", lease_seconds=60)
    assert job is not None
    api.store.set_stage(job.id, "test-node", "encode")  # type: ignore[arg-type]
    api.store.set_progress(job.id, "test-node", "encode", 0.5)  # type: ignore[arg-type]
    running = api.client.get(f"/job/{job_id}", headers=AUTH).json()
    assert running["status"] == "running" and 12 < running["progress"] < 99
    work = str(api.settings.work_dir)
    result = {
        "cid": CID,
        "manifest": f"ipfs://{CID}/manifest.m3u8",
        "qualities_encoded": ["480p"],
        "renditions": [{"name": "480p", "width": 854, "height": 480, "path": f"{work}/x/480p"}],
        "duration": 12.5,
        "stored": f"{api.settings.data_dir}/store/{CID}",
        "published": {"targets": [{"name": "local", "error": f"failed at {work}/x"}]},
    }
    api.store.complete(job.id, "test-node", result)
    response = api.client.get(f"/job/{job_id}", headers=AUTH)
    done = response.json()
    assert done["status"] == "complete" and done["progress"] == 100
    assert done["result"]["manifest_cid"] == CID
    assert done["result"]["qualities_encoded"] == ["480p"]
    assert done["result"]["renditions"] == [{"name": "480p", "width": 854, "height": 480}]
    for secret in (str(api.settings.data_dir), work, HOOK_KEY, KEY, "/tmp"):
        assert secret not in response.text


def test_job_error_hides_local_paths(api: Api) -> None:
    job_id = api.submit(job_body()).json()["job_id"]
    api.store.claim("test-node", lease_seconds=60)
    where = f"{api.settings.work_dir}/{job_id}/source.mp4"
    api.store.fail(job_id, "test-node", error=f"ffmpeg could not read {where}", kind="MediaError")
    view = api.client.get(f"/job/{job_id}", headers=AUTH).json()
    assert view["status"] == "failed"
    assert str(api.settings.work_dir) not in view["error"] and "source.mp4" in view["error"]


@pytest.mark.parametrize("job_id", ["a" * 32, "not-a-job", "..%2E", "%3Cimg%20src=x%3E"])
def test_unknown_job_is_404_in_the_error_shape(api: Api, job_id: str) -> None:
    body = assert_error(api.client.get(f"/job/{job_id}", headers=AUTH), 404, "^Job not found$")
    assert body["job_id"]


def test_jobs_counts(api: Api) -> None:
    for i in range(3):
        api.submit(job_body(permlink=f"p{i}"))
    api.store.claim("test-node", lease_seconds=60)
    assert api.client.get("/jobs", headers=AUTH).json() == {"total": 3, "pending": 2, "active": 1}


def test_unknown_routes_and_methods_use_the_error_shape(api: Api) -> None:
    assert_error(api.client.get("/nope", headers=AUTH), 404, "no such route")
    assert_error(api.client.delete("/encode", headers=AUTH), 405, "not allowed")


def test_openapi_is_served(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    assert {"/health", "/encode", "/job/{job_id}", "/jobs"} <= set(schema["paths"])
    body = schema["paths"]["/encode"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["required"]) >= {"owner", "permlink", "input_cid", "short"}
    # the Swagger UI loads its script from a CDN: off unless DIRECT_API_DOCS=true
    assert api.client.get("/docs").status_code == 404


# --- a real socket --------------------------------------------------------------------------


@contextlib.contextmanager
def running(api: Api) -> Iterator[str]:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    holder: dict[str, Any] = {}
    ready = threading.Event()

    async def main() -> None:
        holder["loop"] = asyncio.get_running_loop()
        holder["stop"] = asyncio.Event()
        ready.set()
        await serve(api.app, api.settings, stop=holder["stop"], sock=sock)

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    ready.wait(5)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"{base}/health", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield base
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(15)
        assert not thread.is_alive()


def test_real_socket_submit_limits_and_quiet_logs(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = make_api(direct_api_max_body=4096)
    with running(api) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/health").json()["ready"] is True
        ok = client.post("/encode", json=job_body(), headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.json()["status"] == "queued"
        assert (
            client.get(f"/job/{ok.json()['job_id']}?token=q-secret", headers=AUTH).status_code
            == 200
        )
        assert_error(client.get("/jobs"), 401, "missing API key")
        chunks = (b"x" * 1024 for _ in range(40))  # chunked, no Content-Length, 40 KiB
        assert_error(client.post("/encode", content=chunks, headers=AUTH), 413, "MAX_BODY")
        assert client.get("/health").status_code == 200  # still serving
    assert api.store.counts()[JobState.QUEUED.value] == 1
    server_log = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("speak_encoder", "uvicorn"))
    )
    assert "/encode" in server_log  # the request log is there …
    for secret in (KEY, HOOK_KEY, "q-secret", "Bearer"):  # … without headers or queries
        assert secret not in server_log


def test_bind_failure_is_a_config_error() -> None:
    from speak_encoder.errors import ConfigError

    with contextlib.closing(bind_socket("127.0.0.1", 0)) as taken:
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="DIRECT_API_PORT"):
            bind_socket("127.0.0.1", port)


# --- fuzzing against the OpenAPI schema -----------------------------------------------------

FUZZ_EXAMPLES = 80


async def offline_dns(host: str, port: int) -> list[str]:
    """No network while fuzzing: IP literals are themselves, every name is a public address."""
    import ipaddress

    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        return ["93.184.215.14"]


@pytest.fixture
def fuzz_api(make_api: Callable[..., Api]) -> Api:
    # schemathesis calls the app as Host "testserver": allowed as an operator would allow a name
    api = make_api(queue_max=10_000, allowed_hosts="testserver")
    api.app = create_app(
        api.settings,
        api.store,
        lambda: None,
        ready=lambda: True,
        guard=UrlGuard.from_settings(api.settings, resolve=offline_dns),
    )
    api.client = TestClient(api.app, raise_server_exceptions=False, base_url="http://127.0.0.1")
    return api


def test_schemathesis_finds_no_server_error(fuzz_api: Api) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_api.app)
    failures: list[str] = []
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=FUZZ_EXAMPLES // 2,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                for headers in (AUTH, {}):
                    response = case.call(headers=headers)
                    if response.status_code >= 500:
                        failures.append(f"{case.method} {case.path}: {response.status_code}")
                    assert response.status_code < 500, response.text
                    content_type = response.headers.get("content-type", [""])[0]
                    assert content_type == "application/json", content_type

            try:
                run()
            except Unsatisfiable:  # no input to break (GET /health, GET /jobs)
                assert mode is GenerationMode.NEGATIVE
            calls[operation.path] = calls.get(operation.path, 0) + 1
    assert not failures
    assert calls.get("/encode") == 2


def test_valid_looking_bodies_never_fail_the_server(fuzz_api: Api) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    refs = st.sampled_from([CID, CID_V1, f"ipfs://{CID}", f"https://gw.example/ipfs/{CID_V1}/x"])

    @settings(
        max_examples=FUZZ_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        owner=st.text(min_size=0, max_size=40),
        permlink=st.text(min_size=1, max_size=40),
        input_cid=refs,
        short=st.booleans(),
        premium=st.none() | st.booleans(),
        duration=st.none() | st.floats(allow_nan=False, allow_infinity=False),
        api_key=st.text(min_size=0, max_size=20),
        webhook_url=st.sampled_from(
            [
                "https://hooks.example/h",
                "http://10.0.0.1/h",
                "https://h.example:0/",
                "http://[::1]/",
            ]
        ),
    )
    def run(**body: Any) -> None:
        response = fuzz_api.submit({k: v for k, v in body.items() if v is not None})
        assert response.status_code in (200, 400), response.text
        statuses.append(response.status_code)
        if response.status_code == 200:
            job = fuzz_api.store.require(response.json()["job_id"])
            assert job.request["owner"] == body["owner"]  # verbatim
            assert "api_key" not in response.json()

    statuses: list[int] = []
    run()
    assert 200 in statuses and 400 in statuses
