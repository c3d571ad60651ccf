"""Item 2: a few MB that decode to gigabytes are refused before decoding; ffmpeg's memory is
bounded by FFMPEG_MEMORY_MAX_MB with a readable, permanent failure.

Memory is measured on the whole process tree of a real `speak-encoder encode` (sampled every
50 ms): the unguarded decode of the 16000×16000 rgb48 file peaks near 4.6 GB.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from speak_encoder.config import DEFAULT_MAX_SOURCE_PIXELS, load_settings
from speak_encoder.pipeline.probe import ProbeLimits, probe
from speak_encoder.testing.hostile import growing_png_mkv, png_bomb_mkv
from tests.e2e.security.conftest import cli_env, run_cli

#: Far above what refusing costs (~60 MB: Python and ffprobe), far below one decoded frame.
MEMORY_BOUND_MB = 400


def test_the_png_bomb_is_refused_on_the_probe(tmp_path: Path, hostile_dir: Path) -> None:
    bomb = png_bomb_mkv(hostile_dir)
    assert bomb.stat().st_size < 6_000_000
    done = run_cli(["encode", str(bomb), "--out", str(tmp_path / "out"), "--json"],
                   cli_env(tmp_path))  # fmt: skip
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["kind"] == "MediaError" and error["retryable"] is False
    assert "16000×16000 (256.0 Mpx), more than MAX_SOURCE_PIXELS" in error["error"]
    assert done.peak_rss_mb < MEMORY_BOUND_MB, done.peak_rss_mb


def test_frames_that_grow_after_the_first_are_never_decoded(
    tmp_path: Path, hostile_dir: Path
) -> None:
    """The stream announces 64×64 (its first frame): ffmpeg's -max_pixels stops the rest."""
    growing = growing_png_mkv(hostile_dir)
    done = run_cli(["encode", str(growing), "--out", str(tmp_path / "out"), "--json"],
                   cli_env(tmp_path))  # fmt: skip
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["kind"] == "MediaError"
    assert "a frame of the video is 16000×16000" in error["error"]
    assert done.peak_rss_mb < MEMORY_BOUND_MB, done.peak_rss_mb


def test_ffmpeg_above_its_memory_limit_is_stopped_for_good(
    tmp_path: Path, sample: Callable[[str], Path]
) -> None:
    """An honest 1080p ladder needs a few hundred MB: with a 120 MB limit ffmpeg is killed."""
    env = cli_env(tmp_path, FFMPEG_MEMORY_MAX_MB="120")
    done = run_cli(["encode", str(sample("fullhd")), "--out", str(tmp_path / "o"), "--json"], env)
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["kind"] == "MemoryLimitExceeded" and error["retryable"] is False
    assert "more than FFMPEG_MEMORY_MAX_MB (120 MB)" in error["error"]
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftover.stdout == "", "ffmpeg outlived the refusal"


def test_the_default_still_takes_8k(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path).max_source_pixels == DEFAULT_MAX_SOURCE_PIXELS
    clip = tmp_path / "8k.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "color=c=gray:size=7680x4320:rate=10:duration=0.3", "-c:v", "libx264",
         "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip)],
        check=True, timeout=300,
    )  # fmt: skip
    info = asyncio.run(probe(clip, limits=ProbeLimits()))
    assert (info.video.width, info.video.height) == (7680, 4320)
