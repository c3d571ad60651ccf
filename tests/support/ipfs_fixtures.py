"""IPFS fixtures: one real js-ipfs node per test session, and generated content for it."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from speak_encoder.testing.ipfs_node import JsIpfsNode


@pytest.fixture(scope="session")
def ipfs_node() -> Iterator[JsIpfsNode]:
    """A js-ipfs daemon on loopback for the whole session (an error if not installed)."""
    node = JsIpfsNode()
    node.start()
    try:
        yield node
    finally:
        node.close()


def write_random_file(path: Path, size: int, seed: int) -> Path:
    """Deterministic pseudo-random bytes, written 1 MiB at a time."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 1024 * 1024)
            out.write(rng.randbytes(n))
            left -= n
    return path


@pytest.fixture(scope="session")
def ipfs_hls_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real encoder-like output folder: manifest.m3u8 + 480p/index.m3u8 + 480p_N.ts."""
    out = tmp_path_factory.mktemp("hls-output")
    (out / "480p").mkdir()
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-loglevel", "error",
            "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-t", "4",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "60",
            "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
            "-hls_segment_filename", str(out / "480p" / "480p_%d.ts"),
            str(out / "480p" / "index.m3u8"),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    (out / "manifest.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=320x180,CODECS="avc1.42c00d"\n'
        "480p/index.m3u8\n",
        encoding="utf-8",
    )
    return out
