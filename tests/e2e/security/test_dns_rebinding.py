"""Item 8: the dashboard and the Direct API answer only their own host names, and one client
cannot take every live-update stream.

A DNS-rebinding page reaches ``127.0.0.1:3001`` under the attacker's own name (``Host:
evil.example``): it gets 400 before any route runs. The bound address, loopback, ``localhost``
and the names in ``ALLOWED_HOSTS`` are answered.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import httpx
import pytest

from speak_encoder.testing.ipfs_node import free_port
from speak_encoder.web.dashboard import MAX_STREAMS_PER_CLIENT
from tests.support.node_fixtures import NodeProcess

API_KEY = "rebinding-test-key-0123456789"


@pytest.mark.slow
def test_foreign_host_names_get_400_on_both_servers(
    make_node: Callable[..., NodeProcess],
) -> None:
    api_port = free_port()
    node = make_node(
        DIRECT_API_ENABLED="true", DIRECT_API_PORT=str(api_port), DIRECT_API_KEY=API_KEY,
        ALLOWED_HOSTS="encoder.lan", HARDWARE_ACCELERATION="false",
    )  # fmt: skip
    node.start()
    dashboard = f"http://127.0.0.1:{node.env['DASHBOARD_PORT']}"
    api = f"http://127.0.0.1:{api_port}"
    node.wait_healthy(dashboard)
    node.wait_healthy(api)
    key = {"X-API-Key": API_KEY}
    for host in ("evil.example", "evil.example:3001", "127.0.0.1.evil.example", "encoder.lan.x"):
        state = httpx.get(f"{dashboard}/api/state", headers={"Host": host}, timeout=10)
        assert state.status_code == 400 and "ALLOWED_HOSTS" in state.json()["error"]
        jobs = httpx.get(f"{api}/jobs", headers={**key, "Host": host}, timeout=10)
        assert jobs.status_code == 400 and jobs.json()["status"] == "failed"  # docs/protocols.md §4
    for host in ("127.0.0.1", f"127.0.0.1:{api_port}", "localhost", "LOCALHOST:1", "[::1]:80",
                 "encoder.lan", "Encoder.LAN:3001"):  # fmt: skip
        assert httpx.get(f"{dashboard}/api/state", headers={"Host": host}, timeout=10).is_success
        assert httpx.get(f"{api}/jobs", headers={**key, "Host": host}, timeout=10).is_success


@pytest.mark.slow
def test_one_client_gets_only_its_share_of_the_event_streams(
    make_node: Callable[..., NodeProcess],
) -> None:
    node = make_node(HARDWARE_ACCELERATION="false")
    node.start()
    dashboard = f"http://127.0.0.1:{node.env['DASHBOARD_PORT']}"
    node.wait_healthy(dashboard)
    with httpx.Client(timeout=10) as client, contextlib.ExitStack() as streams:
        for _ in range(MAX_STREAMS_PER_CLIENT):
            opened = streams.enter_context(client.stream("GET", f"{dashboard}/api/events"))
            assert opened.status_code == 200
        refused = client.get(f"{dashboard}/api/events")
        assert refused.status_code == 503 and "this address" in refused.json()["error"]
        assert client.get(f"{dashboard}/api/state").status_code == 200  # the page still works
    # the streams closed: the same client may open one again
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", f"{dashboard}/api/events") as again,
        ):
            if again.status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError("the closed streams were never given back")
