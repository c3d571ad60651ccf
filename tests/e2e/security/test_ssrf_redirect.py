"""Item 4: a source download follows no redirect to where the node must not go.

Every hop of a remote job's URL is checked and pinned like a webhook; a refused hop never gets a
request and always gives the same error, so what a gateway is told cannot reveal what an
internal address would have answered. Tests run on loopback with ALLOW_PRIVATE_URLS=true (as a
lab would): the node's own IPFS RPC stays forbidden whatever the setting, which is the internal
target here (the one that matters most: ``/api/v0/...`` on it controls the node's IPFS).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from speak_encoder.config import Settings
from speak_encoder.errors import SourceRejected, UnsafeUrl
from speak_encoder.node.models import JobState
from speak_encoder.pipeline.fetch import REFUSED_HOP, FetchedSource, fetch_source
from speak_encoder.pipeline.source import parse_source
from speak_encoder.testing.gateway import ReferenceGateway
from speak_encoder.testing.http_faults import BytesPayload, FaultServer, PatternPayload
from speak_encoder.urlguard import UrlGuard
from tests.support.gateway_fixtures import GatewayNodeProcess, NodeKey
from tests.support.node_fixtures import NodeProcess

SECRET = b"the node's private answer " * 100


def fetch(url: str, job_dir: Path, settings: Settings, guard: UrlGuard) -> FetchedSource:
    return asyncio.run(fetch_source(parse_source(url), job_dir, settings, guard=guard))


@pytest.fixture
def internal(
    request: pytest.FixtureRequest, closed_port: int
) -> Iterator[tuple[int, FaultServer | None]]:
    """The node's IPFS RPC port, behaving as the test's parameter says."""
    behaviour = request.param
    if behaviour == "closed":
        yield closed_port, None
        return
    with FaultServer() as server:
        if behaviour == "200":
            server.add("/internal", BytesPayload(SECRET))
        else:
            server.add("/internal", b"", status=int(behaviour))
        yield server.port, server


@pytest.mark.parametrize("internal", ["closed", "500", "401", "200"], indirect=True)
def test_a_redirect_to_the_rpc_is_refused_with_one_message(
    internal: tuple[int, FaultServer | None], fault_server: FaultServer, job_dir: Path,
    fetch_settings: Callable[..., Settings],
) -> None:  # fmt: skip
    port, server = internal
    settings = fetch_settings(allow_private_urls=True, ipfs_api_addr=f"/ip4/127.0.0.1/tcp/{port}")
    for i, target in enumerate((f"http://127.0.0.1:{port}/internal",
                                f"http://localhost:{port}/internal")):  # fmt: skip
        fault_server.add(f"/v{i}.mp4", b"", redirect=target)
        with pytest.raises(UnsafeUrl) as refused:
            fetch(
                fault_server.url(f"/v{i}.mp4"), job_dir, settings, UrlGuard.from_settings(settings)
            )
        assert refused.value.message == REFUSED_HOP  # the same whatever the port would answer
        assert not refused.value.retryable
    if server is not None:
        assert server.requests == [], "the internal address got a request"
    assert list(job_dir.iterdir()) == []


def test_every_hop_is_pinned_to_the_checked_address(
    fault_server: FaultServer, job_dir: Path, fetch_settings: Callable[..., Settings]
) -> None:
    """``media.test`` exists only in the guard's resolver: the download reaching the server
    proves the request went to the address that was checked, with the original Host."""
    payload = PatternPayload(300_000)
    fault_server.add("/final.mp4", payload)
    fault_server.add("/start.mp4", b"", redirect=f"http://media.test:{fault_server.port}/final.mp4")
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"] if host.endswith(".test") else []

    settings = fetch_settings(allow_private_urls=True)
    guard = UrlGuard.from_settings(settings, resolve=resolve)
    got = fetch(f"http://first.test:{fault_server.port}/start.mp4", job_dir, settings, guard)
    assert got.sha256 == payload.sha256()
    assert asked == ["first.test", "media.test"]  # each hop resolved once, by the guard
    hosts = [r.headers["host"] for r in fault_server.requests]
    assert hosts == [f"first.test:{fault_server.port}", f"media.test:{fault_server.port}"]


def test_more_than_five_redirects_are_refused(
    fault_server: FaultServer, job_dir: Path, fetch_settings: Callable[..., Settings]
) -> None:
    for i in range(7):
        fault_server.add(f"/r{i}", b"", redirect=f"/r{i + 1}")
    settings = fetch_settings(allow_private_urls=True)
    with pytest.raises(SourceRejected, match="redirected more than 5 times"):
        fetch(fault_server.url("/r0"), job_dir, settings, UrlGuard.from_settings(settings))
    assert len(fault_server.requests) == 6


@pytest.mark.slow
def test_a_gateway_job_redirected_to_the_rpc_fails_with_the_uniform_error(
    make_gateway_node: Callable[..., GatewayNodeProcess], reference_gateway: ReferenceGateway,
    node_key: NodeKey, fault_server: FaultServer,
) -> None:  # fmt: skip
    """A real node claims a legacy gateway job whose source redirects to the node's RPC."""
    with FaultServer() as rpc:
        rpc.add("/api/v0/shutdown", BytesPayload(SECRET))
        fault_server.add("/clip.mp4", b"", redirect=f"{rpc.base_url}/api/v0/shutdown")
        offered = reference_gateway.add_job(fault_server.url("/clip.mp4"), size=1000)
        node: NodeProcess = make_gateway_node(
            GATEWAY_ENABLED="true", GATEWAY_URL=reference_gateway.url,
            ENCODER_PRIVATE_KEY=node_key.env_value, ALLOW_PRIVATE_URLS="true",
            IPFS_API_ADDR=f"/ip4/127.0.0.1/tcp/{rpc.port}",
        )  # fmt: skip
        node.start()
        deadline = time.monotonic() + 90
        while not reference_gateway.calls("failJob") and time.monotonic() < deadline:
            assert node.alive(), node.log()[-3000:]
            time.sleep(0.2)
        [fail] = reference_gateway.calls("failJob")
        # the node asks its own RPC for its peer id (registration); nothing else reaches it
        stray = [r.path for r in rpc.requests if (r.method, r.path) != ("POST", "/api/v0/id")]
        assert stray == [], "the redirect reached the RPC"
    error = (fail.payload or {})["error"]
    assert error["error"] == REFUSED_HOP and error["retryable"] is False
    assert str(rpc.port) not in error["error"]
    store = node.store()
    try:
        [job] = store.list_jobs()
    finally:
        store.close()
    assert job.state is JobState.FAILED and job.error_kind == "UnsafeUrl"
    assert offered["id"] == job.external_id
