"""The fetch stage reads the local node through the shared Kubo client (a real js-ipfs node).

One Kubo client: ``pipeline.fetch`` opens ``cat`` with :meth:`KuboClient.open_cat` (the fast
bulk read of :mod:`speak_encoder.storage.kubo_stream`) and parses ``IPFS_API_ADDR`` with
:func:`~speak_encoder.storage.kubo.api_base_url`, the one multiaddr parser.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from speak_encoder.config import Settings
from speak_encoder.errors import IpfsUnavailable, StallError
from speak_encoder.pipeline.fetch import fetch_source, kubo_api_url
from speak_encoder.pipeline.source import parse_source
from speak_encoder.storage.kubo import KuboClient, api_base_url
from speak_encoder.storage.kubo_stream import opened
from speak_encoder.testing.ipfs_node import JsIpfsNode, free_port
from tests.support.ipfs_fixtures import write_random_file

SettingsFactory = Callable[..., Settings]
UNKNOWN_CID = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQX"  # valid, held by nobody


def _add(node: JsIpfsNode, path: Path) -> str:
    with open(path, "rb") as handle:
        answer = httpx.post(
            f"{node.api_url}/api/v0/add", files={"file": (path.name, handle)}, timeout=120
        )
    answer.raise_for_status()
    return str(answer.json()["Hash"])


def test_fetch_reads_the_local_node_through_the_shared_client(
    ipfs_node: JsIpfsNode, tmp_path: Path, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    source = write_random_file(tmp_path / "v.bin", 3 * 1024 * 1024 + 17, seed=31)
    cid = _add(ipfs_node, source)
    settings = fetch_settings(ipfs_api_addr=ipfs_node.api_multiaddr)
    got = asyncio.run(fetch_source(parse_source(cid), job_dir, settings))
    assert got.origin == "local kubo"
    assert got.size == source.stat().st_size
    assert got.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert got.path.read_bytes() == source.read_bytes()


def test_an_unknown_cid_on_the_offline_node_is_a_stall(
    ipfs_node: JsIpfsNode, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    settings = fetch_settings(ipfs_api_addr=ipfs_node.api_url, fetch_stall_timeout=2)
    with pytest.raises(StallError) as caught:  # js-ipfs offline waits for the block
        asyncio.run(fetch_source(parse_source(UNKNOWN_CID), job_dir, settings))
    assert "local kubo sent nothing (or almost nothing) for 2 s" in caught.value.message
    assert list(job_dir.iterdir()) == []


def test_the_direct_read_and_httpx_read_give_the_same_bytes(
    ipfs_node: JsIpfsNode, tmp_path: Path
) -> None:
    source = write_random_file(tmp_path / "s.bin", 2 * 1024 * 1024 + 5, seed=7)
    cid = _add(ipfs_node, source)

    async def read(client: KuboClient, offset: int) -> tuple[int, dict[str, str], bytes]:
        stream = await client.open_cat(cid, offset=offset, stall_timeout=30)
        async with opened(stream) as answer:
            body = b"".join([piece async for piece in answer.pieces()])
            assert answer.received >= len(body)
            return answer.status, answer.headers, body

    async def run() -> None:
        async with (
            KuboClient(ipfs_node.api_url) as direct,
            KuboClient(ipfs_node.api_url, transport=httpx.AsyncHTTPTransport()) as via_httpx,
        ):
            for offset in (0, 1_000_003):
                status_a, headers_a, body_a = await read(direct, offset)
                status_b, _, body_b = await read(via_httpx, offset)
                assert (status_a, status_b) == (200, 200)
                assert body_a == body_b == source.read_bytes()[offset:]
                assert "chunked" in headers_a.get("transfer-encoding", "")

    asyncio.run(run())


def test_the_direct_read_names_a_closed_port(tmp_path: Path) -> None:
    async def run() -> None:
        async with KuboClient(f"/ip4/127.0.0.1/tcp/{free_port()}", connect_timeout=2) as client:
            with pytest.raises(IpfsUnavailable, match="cannot connect to the IPFS node"):
                await client.cat(UNKNOWN_CID, tmp_path / "never")

    asyncio.run(run())
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    "addr",
    [
        "/ip4/127.0.0.1/tcp/5001",
        "/ip6/::1/tcp/5001",
        "/dns/ipfs.example/tcp/443/https",
        "http://10.0.0.2:5001/api/v0",
    ],
)
def test_one_multiaddr_parser(addr: str) -> None:
    assert kubo_api_url(addr) == api_base_url(addr)
