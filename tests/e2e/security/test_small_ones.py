"""Item 10: the small ones.

* a malformed ``DATABASE_URL`` is a configuration error naming the key (no traceback, no
  password echoed);
* ``/docs`` (Swagger UI from a CDN) is off unless ``DIRECT_API_DOCS=true``;
* ``DIRECT_API_KEY`` / ``DASHBOARD_TOKEN`` shorter than 16 characters stop the node at start;
* failed authentications are throttled per client address (Direct API and dashboard);
* an IPFS source fetched from a gateway is checked against its CID while it streams.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from speak_encoder.asgi_server import AUTH_MAX_FAILURES
from speak_encoder.config import Settings
from speak_encoder.errors import CidMismatch
from speak_encoder.pipeline.fetch import fetch_source
from speak_encoder.pipeline.source import parse_source
from speak_encoder.testing.http_faults import FaultServer, PatternPayload
from speak_encoder.testing.ipfs_node import free_port
from tests.e2e.security.conftest import CLI, cli_env
from tests.support.fetch_fixtures import payload_cid
from tests.support.node_fixtures import NodeProcess

API_KEY = "small-ones-test-key-0123456789"
TOKEN = "small-ones-operator-token-0123"
PASSWORD = "hunter2-secret-pw"


@pytest.mark.parametrize(
    "url",
    [
        f"postgres://enc:{PASSWORD}@db.invalid/jobs",  # "postgres" is not SQLAlchemy's name
        f"postgresql://enc:{PASSWORD}@db.invalid/jobs",  # psycopg2, which is not installed
        f"::{PASSWORD}::",
        f"mysql://enc:{PASSWORD}@db.invalid/jobs",
    ],
)
def test_a_malformed_database_url_names_the_key(url: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, DATABASE_URL=url)
    done = subprocess.run([*CLI, "jobs", "list"], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: invalid configuration: DATABASE_URL: ")
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr


@pytest.mark.parametrize("key", ["DIRECT_API_KEY", "DASHBOARD_TOKEN"])
def test_short_keys_stop_the_node_at_start(key: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, DIRECT_API_ENABLED="true", **{key: "fifteen-chars15"})
    done = subprocess.run([*CLI, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"{key}: must be at least 16 characters" in done.stderr
    assert "fifteen-chars15" not in done.stderr


@pytest.mark.slow
def test_docs_are_off_and_failed_authentications_are_throttled(
    make_node: Callable[..., NodeProcess],
) -> None:
    api_port = free_port()
    node = make_node(
        DIRECT_API_ENABLED="true", DIRECT_API_PORT=str(api_port), DIRECT_API_KEY=API_KEY,
        DASHBOARD_TOKEN=TOKEN, HARDWARE_ACCELERATION="false",
    )  # fmt: skip
    node.start()
    api = f"http://127.0.0.1:{api_port}"
    dashboard = f"http://127.0.0.1:{node.env['DASHBOARD_PORT']}"
    node.wait_healthy(api)
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{api}/docs").status_code == 404
        assert client.get(f"{api}/openapi.json").status_code == 200
        for _ in range(2 * AUTH_MAX_FAILURES):  # no key at all is not a guess: never throttled
            assert client.get(f"{api}/jobs").status_code == 401
        for _ in range(AUTH_MAX_FAILURES):
            assert client.get(f"{api}/jobs", headers={"X-API-Key": "guess"}).status_code == 401
        blocked = client.get(f"{api}/jobs", headers={"X-API-Key": API_KEY})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
        assert "too many failed authentications" in blocked.json()["error"]
        for _ in range(AUTH_MAX_FAILURES):
            wrong = client.post(f"{dashboard}/api/pins/retry",
                                headers={"Authorization": "Bearer guess"})  # fmt: skip
            assert wrong.status_code == 401
        held = client.post(f"{dashboard}/api/pins/retry",
                           headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert held.status_code == 429 and "retry-after" in held.headers


@pytest.mark.slow
def test_the_docs_page_can_be_turned_on(make_node: Callable[..., NodeProcess]) -> None:
    api_port = free_port()
    node = make_node(DIRECT_API_ENABLED="true", DIRECT_API_PORT=str(api_port),
                     DIRECT_API_KEY=API_KEY, DIRECT_API_DOCS="true")  # fmt: skip
    node.start()
    api = f"http://127.0.0.1:{api_port}"
    node.wait_healthy(api)
    assert httpx.get(f"{api}/docs", timeout=10).status_code == 200


def test_gateway_bytes_that_are_not_the_cid_are_refused_and_deleted(
    job_dir: Path, fetch_settings: Callable[..., Settings]
) -> None:
    wanted = PatternPayload(700_000, seed=1)
    cid = payload_cid(wanted)
    with FaultServer() as liar, FaultServer() as honest:
        liar.add_gateway(cid, PatternPayload(700_000, seed=2))  # same size, other bytes
        honest.add_gateway(cid, wanted)
        alone = fetch_settings(ipfs_gateways=liar.base_url)
        with pytest.raises(CidMismatch, match=f"not CID {cid}") as refused:
            asyncio.run(fetch_source(parse_source(cid), job_dir, alone))
        assert not refused.value.retryable
        assert list(job_dir.iterdir()) == [], "the wrong bytes were not deleted"
        both = fetch_settings(ipfs_gateways=f"{liar.base_url},{honest.base_url}")
        got = asyncio.run(fetch_source(parse_source(cid), job_dir, both))
    assert got.sha256 == wanted.sha256() and got.origin == honest.base_url
