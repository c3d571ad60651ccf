"""Item 5: a "video" that is a playlist, a list or an image never makes ffmpeg open other files.

Probe and encode accept only single-file media containers (``-format_whitelist``, then ``-f`` of
the demuxer the probe found) and only the ``file`` protocol: an HLS playlist whose segment is a
local file would otherwise have the node encode — and publish — that file.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from speak_encoder.node.models import JobState
from speak_encoder.pipeline.ffmpeg import EncoderTuning, build_command
from speak_encoder.pipeline.ladder import load_ladder
from speak_encoder.pipeline.plan import EncodeOptions, plan_encode
from speak_encoder.pipeline.probe import ALLOWED_DEMUXERS, probe
from speak_encoder.storage.unixfs import import_bytes
from speak_encoder.testing.hostile import black_png, disguised_playlist
from speak_encoder.testing.http_faults import BytesPayload, FaultServer
from tests.e2e.security.conftest import cli_env, run_cli
from tests.support.node_fixtures import NodeProcess


def local_secret(tmp_path: Path, sample: Callable[[str], Path]) -> Path:
    """A video that exists only on the node's disk (an MPEG-TS, as HLS segments are)."""
    secret = tmp_path / "private" / "secret.ts"
    secret.parent.mkdir()
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(sample("landscape")),
         "-c", "copy", "-f", "mpegts", str(secret)],
        check=True, timeout=60,
    )  # fmt: skip
    return secret


@pytest.mark.slow
def test_an_ipfs_playlist_pointing_at_a_local_file_is_refused(
    make_node: Callable[..., NodeProcess], sample: Callable[[str], Path], tmp_path: Path
) -> None:
    playlist = disguised_playlist(local_secret(tmp_path, sample))
    cid = str(import_bytes(playlist).cid)
    with FaultServer() as ipfs:
        api = ipfs.add_kubo(cid, BytesPayload(playlist))
        node = make_node(IPFS_API_ADDR=api, HARDWARE_ACCELERATION="false")
        job_id = node.submit(f"ipfs://{cid}")
        node.start()
        job = node.wait_for(job_id, lambda j: j.state is JobState.FAILED, what="refusal")
    assert job.error_kind == "MediaError" and job.attempts == 1
    assert "the source is an HLS playlist, not a single video file" in (job.error or "")
    assert node.store_entries() == [], "nothing may be stored, let alone published"


@pytest.mark.parametrize("kind", ["ffconcat", "png"])
def test_lists_and_images_are_refused_by_encode(
    kind: str, tmp_path: Path, sample: Callable[[str], Path]
) -> None:
    source = tmp_path / "source.mp4"  # the name says video: the content decides
    if kind == "ffconcat":
        source.write_text(f"ffconcat version 1.0\nfile '{sample('landscape')}'\n")
        expected = "a concat list"
    else:
        source.write_bytes(black_png(64))
        expected = "an image"
    done = run_cli(["encode", str(source), "--out", str(tmp_path / "o"), "--json"],
                   cli_env(tmp_path))  # fmt: skip
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["kind"] == "MediaError" and f"the source is {expected}" in error["error"]


def test_the_encode_reads_the_source_only_as_the_probed_container(
    sample: Callable[[str], Path],
) -> None:
    source = sample("lying_extension")  # Matroska named .mp4
    info = asyncio.run(probe(source))
    plan = plan_encode(info, EncodeOptions(), load_ladder())
    args = build_command(plan, source, Path("/out"), EncoderTuning())
    before_input = args[: args.index(f"file:{source}")]
    assert before_input[-1] == "-i"
    assert _option(before_input, "-protocol_whitelist") == ["-protocol_whitelist", "file"]
    assert _option(before_input, "-format_whitelist")[1] == ",".join(ALLOWED_DEMUXERS)
    assert _option(before_input, "-f") == ["-f", "matroska"]
    assert _option(before_input, "-max_pixels")[1] == str(EncoderTuning().max_pixels)


def _option(args: list[str], name: str) -> list[str]:
    at = len(args) - 1 - args[::-1].index(name)
    return args[at : at + 2]
