"""CARv1 export: a real node imports it (dag/import) to the same root, with the same bytes."""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path

import httpx
import pytest

from speak_encoder.storage.car import car_header, iter_car, write_car, write_car_stream
from speak_encoder.storage.cid import parse_cid
from speak_encoder.storage.unixfs import CHUNK_SIZE, import_path
from speak_encoder.testing.ipfs_node import JsIpfsNode
from tests.support.ipfs_fixtures import write_random_file


def dag_import(node: JsIpfsNode, car: Path) -> str:
    with open(car, "rb") as handle:
        response = httpx.post(
            f"{node.api_url}/api/v0/dag/import",
            params={"pin-roots": "true"},
            files={"file": ("x.car", handle, "application/vnd.ipld.car")},
            timeout=120,
        )
    response.raise_for_status()
    roots = [json.loads(line)["Root"]["Cid"]["/"] for line in response.text.splitlines() if line]
    assert len(roots) == 1
    return str(roots[0])


def node_cat(node: JsIpfsNode, path: str) -> bytes:
    response = httpx.post(
        f"{node.api_url}/api/v0/cat", params={"arg": path, "timeout": "10s"}, timeout=30
    )
    response.raise_for_status()
    return response.content


def test_header_is_canonical_dag_cbor() -> None:
    root = parse_cid("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn")
    header = car_header(root)
    assert header[0] == len(header) - 1
    assert header[1:8] == b"\xa2\x65roots"
    assert header.endswith(b"\x67version\x01")
    assert root.to_bytes() in header


@pytest.mark.parametrize("cid_version", [0, 1])
def test_car_round_trip_through_the_node(
    ipfs_node: JsIpfsNode, tmp_path: Path, cid_version: int
) -> None:
    folder = tmp_path / "out"
    # Fresh random content: the node cannot already hold these blocks.
    seed = secrets.randbits(32)
    segment = write_random_file(folder / "480p" / "480p_0.ts", 3 * CHUNK_SIZE + 7, seed)
    (folder / "480p" / "index.m3u8").write_text(f"#EXTM3U\n# {seed}\n480p_0.ts\n")
    (folder / "manifest.m3u8").write_text(f"#EXTM3U\n# {seed}\n480p/index.m3u8\n")

    car = tmp_path / "out.car"
    entry = write_car(folder, car, cid_version=cid_version)
    assert entry == import_path(folder, cid_version=cid_version)
    assert not car.with_name("out.car.partial").exists()

    assert dag_import(ipfs_node, car) == str(entry)
    assert node_cat(ipfs_node, f"{entry}/480p/480p_0.ts") == segment.read_bytes()
    assert node_cat(ipfs_node, f"{entry}/manifest.m3u8") == (folder / "manifest.m3u8").read_bytes()

    with open(car, "rb") as handle:
        header, sections = iter_car(handle)
    assert header.startswith(b"\xa2\x65roots")
    assert sections[-1][0] == entry.cid  # root written last
    assert len(sections) == 5 + 1 + 1 + 1 + 1  # 4 leaves + parent, index, 480p, manifest, root

    piped = io.BytesIO()
    assert write_car_stream(folder, piped, cid_version=cid_version) == entry
    assert piped.getvalue() == car.read_bytes()


def test_car_of_a_single_file(ipfs_node: JsIpfsNode, tmp_path: Path) -> None:
    path = write_random_file(tmp_path / "one.bin", 1000, secrets.randbits(32))
    entry = write_car(path, tmp_path / "one.car")
    assert dag_import(ipfs_node, tmp_path / "one.car") == str(entry)
    assert node_cat(ipfs_node, str(entry)) == path.read_bytes()
