"""UnixFS CIDs computed locally are the CIDs a real IPFS node gives (js-ipfs, Kubo-compatible)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest

from speak_encoder.errors import HamtShardingRequired
from speak_encoder.storage.cid import CID, parse_cid
from speak_encoder.storage.kubo import KuboClient
from speak_encoder.storage.unixfs import (
    CHUNK_SIZE,
    MAX_LINKS,
    import_bytes,
    import_file,
    import_folder,
    import_path,
    walk_files,
)
from speak_encoder.testing.ipfs_node import JsIpfsNode
from tests.support.ipfs_fixtures import write_random_file

KIB = 1024


def node_add_file(node: JsIpfsNode, path: Path, cid_version: int) -> str:
    """``ipfs add`` of one file, as the node computes it (pin=false)."""
    params = {"cid-version": str(cid_version), "pin": "false"}
    if cid_version == 1:
        params["cid-base"] = "base32"
    with open(path, "rb") as handle:
        response = httpx.post(
            f"{node.api_url}/api/v0/add",
            params=params,
            files={"file": (path.name, handle, "application/octet-stream")},
            timeout=120,
        )
    response.raise_for_status()
    lines = [line for line in response.text.splitlines() if line.strip()]
    return str(httpx.Response(200, content=lines[-1]).json()["Hash"])


def node_add_folder(node: JsIpfsNode, folder: Path, cid_version: int) -> str:
    async def run() -> str:
        async with KuboClient(node.api_url) as client:
            return (await client.add_folder(folder, cid_version=cid_version, pin=False)).root

    return asyncio.run(run())


# --- pure: known values ------------------------------------------------------------------------


def test_well_known_cids() -> None:
    assert str(import_bytes(b"")) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert str(import_bytes(b"hello world\n")) == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    empty_raw = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert str(import_bytes(b"", cid_version=1)) == empty_raw


def test_empty_folder_is_the_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "nothing-inside").mkdir()
    assert str(import_folder(tmp_path)) == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


def test_single_chunk_v1_is_a_raw_block() -> None:
    data = b"x" * CHUNK_SIZE
    entry = import_bytes(data, cid_version=1)
    assert entry.cid == CID.v1(0x55, hashlib.sha256(data).digest())
    assert entry.size == entry.file_size == CHUNK_SIZE


def test_walk_order_is_depth_first_sorted(tmp_path: Path) -> None:
    for rel in ["b.txt", "a/z.ts", "a/b/c.ts", "A.txt", "ab.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"1")
    assert [rel for rel, _ in walk_files(tmp_path)] == [
        "A.txt", "a/b/c.ts", "a/z.ts", "ab.txt", "b.txt",
    ]  # fmt: skip


def test_hamt_sized_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    long = "s" * 200
    for i in range(1200):  # 1200 × (≈205 + 34) bytes of links > 256 KiB
        (folder / f"{long}{i:05d}.ts").touch()
    with pytest.raises(HamtShardingRequired, match="shard"):
        import_folder(tmp_path)


def test_sink_receives_children_before_parents(tmp_path: Path) -> None:
    path = write_random_file(tmp_path / "f.bin", 3 * CHUNK_SIZE + 5, seed=1)
    seen: list[CID] = []

    class Sink:
        def put(self, cid: CID, data: bytes) -> None:
            assert hashlib.sha256(data).digest() == cid.multihash[2:]
            seen.append(cid)

    entry = import_file(path, Sink())
    assert seen[-1] == entry.cid
    assert len(seen) == 5  # 4 leaves + root


# --- equality with the real node -------------------------------------------------------------

SIZES = {
    "0B": 0,
    "1B": 1,
    "256KiB": 256 * KIB,
    "256KiB+1": 256 * KIB + 1,
}


@pytest.mark.parametrize("cid_version", [0, 1])
@pytest.mark.parametrize("name", list(SIZES))
def test_file_cid_matches_node(
    ipfs_node: JsIpfsNode, tmp_path: Path, name: str, cid_version: int
) -> None:
    path = write_random_file(tmp_path / f"{name}.bin", SIZES[name], seed=len(name))
    local = import_file(path, cid_version=cid_version)
    assert local.file_size == SIZES[name]
    assert str(local) == node_add_file(ipfs_node, path, cid_version)


@pytest.fixture(scope="module")
def two_level_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    size = (MAX_LINKS + 3) * CHUNK_SIZE + 123  # > 174 × 256 KiB: two levels of parents
    return write_random_file(tmp_path_factory.mktemp("big") / "big.bin", size, seed=174)


@pytest.mark.parametrize("cid_version", [0, 1])
def test_two_level_file_matches_node(
    ipfs_node: JsIpfsNode, two_level_file: Path, cid_version: int
) -> None:
    local = import_file(two_level_file, cid_version=cid_version)
    assert str(local) == node_add_file(ipfs_node, two_level_file, cid_version)


def make_unicode_tree(root: Path) -> Path:
    files = {
        "vidéo/日本語 ファイル.txt": b"konnichiwa\n",
        "vidéo/sub dir/a+b=c & d%20e.bin": bytes(range(256)) * 1100,
        "Ünïcode/ñ/ëmoji 🎬.m3u8": b"#EXTM3U\n",
        "Zeta.txt": b"z",
        "alpha.txt": b"",
        "naïve/nested/deeper/deepest.ts": b"\x47" * (300 * KIB),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.mark.parametrize("cid_version", [0, 1])
def test_unicode_nested_folder_matches_node(
    ipfs_node: JsIpfsNode, tmp_path: Path, cid_version: int
) -> None:
    folder = make_unicode_tree(tmp_path / "tree")
    local = import_folder(folder, cid_version=cid_version)
    assert str(local) == node_add_folder(ipfs_node, folder, cid_version)


@pytest.mark.parametrize("cid_version", [0, 1])
def test_encoder_hls_folder_matches_node(
    ipfs_node: JsIpfsNode, ipfs_hls_folder: Path, cid_version: int
) -> None:
    assert len(list((ipfs_hls_folder / "480p").glob("*.ts"))) >= 2
    local = import_path(ipfs_hls_folder, cid_version=cid_version)
    node_root = node_add_folder(ipfs_node, ipfs_hls_folder, cid_version)
    assert str(local) == node_root
    assert parse_cid(node_root).version == cid_version
