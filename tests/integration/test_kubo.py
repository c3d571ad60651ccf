"""The Kubo RPC client against a real node: add/cat/pin/verify, errors, timeouts, memory."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
import time
from pathlib import Path

import psutil
import pytest

from speak_encoder.errors import (
    CidMismatch,
    IpfsApiError,
    IpfsBadResponse,
    IpfsRequestRejected,
    IpfsTimeout,
    IpfsUnavailable,
)
from speak_encoder.storage.kubo import KuboClient, api_base_url
from speak_encoder.storage.kubo_multipart import MultipartFolder
from speak_encoder.storage.unixfs import import_file, import_folder
from speak_encoder.testing.ipfs_node import JsIpfsNode, free_port
from speak_encoder.testing.ipfs_proxy import WRONG_ROOT, KuboFaultProxy
from tests.support.ipfs_fixtures import write_random_file

UNKNOWN_CID = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQX"  # valid, held by nobody


def make_folder(root: Path, seed: int | None = None) -> Path:
    seed = secrets.randbits(32) if seed is None else seed
    write_random_file(root / "480p" / "480p_0.ts", 600_000, seed)
    write_random_file(root / "480p" / "480p_1.ts", 300_001, seed + 1)
    (root / "480p" / "index.m3u8").write_text(f"#EXTM3U\n#{seed}\n480p_0.ts\n480p_1.ts\n")
    (root / "manifest.m3u8").write_text("#EXTM3U\n480p/index.m3u8\n")
    return root


def test_api_base_url_forms() -> None:
    assert api_base_url("/ip4/127.0.0.1/tcp/5001") == "http://127.0.0.1:5001"
    assert api_base_url("/dns4/ipfs.example/tcp/443/https") == "https://ipfs.example:443"
    assert api_base_url("https://hot.example/api/v0/add") == "https://hot.example"
    assert api_base_url("http://node:5001/") == "http://node:5001"


def test_multipart_body_is_exactly_as_announced(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "out", seed=3)
    (folder / "a b+c%.txt").write_bytes(b"x")
    body = MultipartFolder(folder, chunk_bytes=64 * 1024)

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in body.stream()])

    data = asyncio.run(collect())
    assert len(data) == body.content_length
    assert b'filename="480p%2F480p_0.ts"' in data
    assert b'filename="a%20b%2Bc%25.txt"' in data
    assert data.count(b'name="file"') == body.files == 5
    assert data.count(b"Content-Type: application/octet-stream") == 5


def test_add_cat_pin_verify(ipfs_node: JsIpfsNode, tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "out")
    expected = str(import_folder(folder))
    progress: list[tuple[int, int]] = []

    async def run() -> None:
        async with KuboClient(ipfs_node.api_multiaddr) as client:
            assert "Version" in await client.version()
            assert "ID" in await client.id()
            added = await client.add_folder(
                folder, expected_cid=expected, on_progress=lambda d, t: progress.append((d, t))
            )
            assert added.root == expected
            assert added.entries == 6  # 4 files, 480p, root
            assert await client.pin_ls(expected)
            names = sorted(link.name for link in await client.ls(expected))
            assert names == ["480p", "manifest.m3u8"]

            segment = folder / "480p" / "480p_0.ts"
            seg_cid = str(import_file(segment))
            dest = tmp_path / "cat.bin"
            assert await client.cat(seg_cid, dest) == segment.stat().st_size
            assert dest.read_bytes() == segment.read_bytes()
            # resume: keep the first 1000 bytes, fetch the rest from offset 1000
            with open(dest, "r+b") as handle:
                handle.truncate(1000)
            assert await client.cat(seg_cid, dest, offset=1000) == segment.stat().st_size
            assert dest.read_bytes() == segment.read_bytes()

            await client.pin_rm(expected)
            assert not await client.pin_ls(expected)  # "not pinned" is an answer
            await client.pin_add(expected, timeout=10)
            assert await client.pin_ls(expected)
            assert int((await client.repo_stat())["NumObjects"]) > 0

    asyncio.run(run())
    assert progress[-1][0] == progress[-1][1] > 900_000
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(progress))


def test_kubo_error_json_is_translated(ipfs_node: JsIpfsNode) -> None:
    async def run() -> None:
        async with KuboClient(ipfs_node.api_url) as client:
            with pytest.raises(IpfsRequestRejected, match="HTTP 400"):
                await client.pin_add("not-a-cid", timeout=5)
            with pytest.raises(IpfsTimeout, match="timed out"):
                await client.pin_add(UNKNOWN_CID, timeout=1)
            with pytest.raises(IpfsRequestRejected, match="HTTP 404"):
                await client._call("no/such/command")

    asyncio.run(run())


@pytest.mark.timeout(60)  # the hang guard: js-ipfs itself would wait for the CID forever
def test_cat_of_unknown_cid_times_out_clearly(ipfs_node: JsIpfsNode, tmp_path: Path) -> None:
    async def run() -> None:
        async with KuboClient(ipfs_node.api_url) as client:
            with pytest.raises(IpfsTimeout, match=r"no answer from the node for 1\.5 s"):
                await client.cat(UNKNOWN_CID, tmp_path / "never", stall_timeout=1.5)

    asyncio.run(run())


def test_node_down_is_unavailable(tmp_path: Path) -> None:
    async def run() -> None:
        async with KuboClient(f"http://127.0.0.1:{free_port()}", connect_timeout=2) as client:
            with pytest.raises(IpfsUnavailable, match="cannot connect"):
                await client.version()
            with pytest.raises(IpfsUnavailable):
                await client.add_folder(make_folder(tmp_path / "f"))

    asyncio.run(run())


def test_wrong_root_from_the_node_fails_loudly(ipfs_node: JsIpfsNode, tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "out")
    expected = str(import_folder(folder))

    async def run() -> None:
        with KuboFaultProxy(ipfs_node.api_url, "wrong-root") as proxy:
            async with KuboClient(proxy.url) as client:
                with pytest.raises(CidMismatch) as caught:
                    await client.add_folder(folder, expected_cid=expected)
        assert caught.value.got == WRONG_ROOT
        assert expected in str(caught.value)

    asyncio.run(run())


def test_html_error_pages_are_rejected(ipfs_node: JsIpfsNode, tmp_path: Path) -> None:
    async def run() -> None:
        with KuboFaultProxy(ipfs_node.api_url, "html") as proxy:
            async with KuboClient(proxy.url) as client:
                with pytest.raises(IpfsBadResponse, match="HTML"):
                    await client.add_folder(make_folder(tmp_path / "f"))
                with pytest.raises(IpfsBadResponse, match="HTML"):
                    await client.version()

    asyncio.run(run())


def test_api_error_is_retryable() -> None:
    assert IpfsApiError("x").retryable
    assert IpfsTimeout("x").retryable
    assert not CidMismatch("x", expected="a", got="b").retryable


@pytest.mark.slow
def test_add_of_200mb_keeps_memory_flat(ipfs_node: JsIpfsNode, tmp_path: Path) -> None:
    folder = tmp_path / "big"
    seed = secrets.randbits(32)
    for i in range(10):  # 10 × 20 MB "segments"
        write_random_file(folder / "1080p" / f"1080p_{i}.ts", 20_000_000, seed + i)
    expected = str(import_folder(folder))
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    async def run() -> None:
        async with KuboClient(ipfs_node.api_url) as client:
            await client.add_folder(folder, expected_cid=expected)

    try:
        asyncio.run(run())
    finally:
        stop.set()
        sampler.join()
    growth = (peak - baseline) / 1e6
    assert growth < 40, f"RSS grew by {growth:.1f} MB while uploading 200 MB"
