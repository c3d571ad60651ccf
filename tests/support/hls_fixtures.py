"""Real HLS ladders made by ffmpeg (tiny, once per session) for the m3u8/bitstream/hls/verify tests.

Fixtures::

    hls_ladder_raw        ffmpeg's own output of a 3-rung ladder (one ffmpeg process, like the
                          production encoder): 360p high@4.0, 240p main@3.1, 180p baseline@3.0,
                          29.97 fps, 2 s GOP, hls_time 2, 8 s → 4 segments per rung
    hls_ladder            the same with the measured master playlist written (read-only!)
    hls_ladder_copy       a private, writable copy of ``hls_ladder`` for one test to break
    hls_non_idr_ladder    one rung cut with split_by_time and a 3 s GOP: seg_1/seg_2 start with
                          a non-IDR frame (measured master written)
    x264_profile_segments {(profile, level): .ts} from real x264 runs (non-ultrafast preset)
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from speak_encoder.pipeline.hls import write_master_playlist


@dataclass(frozen=True)
class LadderRung:
    name: str
    width: int
    height: int
    profile: str
    level: str
    maxrate_k: int


#: The rungs of ``hls_ladder``, highest first.
LADDER_RUNGS = (
    LadderRung("360p", 640, 360, "high", "4.0", 1500),
    LadderRung("240p", 426, 240, "main", "3.1", 700),
    LadderRung("180p", 320, 180, "baseline", "3.0", 400),
)
LADDER_FRAME_RATE = "30000/1001"
LADDER_SECONDS = 8.0
LADDER_SEGMENT_SECONDS = 2
#: (profile, level) pairs encoded by ``x264_profile_segments``.
X264_PROFILES = (
    ("high", "4.1"),
    ("high", "3.0"),
    ("main", "4.0"),
    ("main", "3.1"),
    ("baseline", "3.1"),
)
FFMPEG_TIMEOUT_S = 120
#: profile_idc and the constraint-flags byte x264 writes for each profile.
X264_PROFILE_BYTES = {"high": (0x64, 0x00), "main": (0x4D, 0x40), "baseline": (0x42, 0xC0)}


def expected_avc1(profile: str, level: str) -> str:
    """``avc1.PPCCLL`` for an x264 ``-profile``/``-level`` request (level 4.1 → 41 → 0x29)."""
    profile_idc, constraints = X264_PROFILE_BYTES[profile]
    level_idc = round(float(level) * 10)
    return f"avc1.{profile_idc:02x}{constraints:02x}{level_idc:02x}"


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("ffmpeg is not installed")
    return path


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr.decode(errors='replace')[-2000:]}")


def ladder_argv(out: Path) -> list[str]:
    """One ffmpeg process: decode once, split, scale per rung, HLS muxer with var_stream_map."""
    count = len(LADDER_RUNGS)
    video = "".join(f"[v{i}]" for i in range(count))
    audio = "".join(f"[a{i}]" for i in range(count))
    scales = ";".join(
        f"[v{i}]scale={r.width}:{r.height},setsar=1[o{i}]" for i, r in enumerate(LADDER_RUNGS)
    )
    graph = f"[0:v]split={count}{video};{scales};[1:a]asplit={count}{audio}"
    argv = [
        _ffmpeg(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate={LADDER_FRAME_RATE}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(LADDER_SECONDS), "-filter_complex", graph,
    ]  # fmt: skip
    for i in range(count):
        argv += ["-map", f"[o{i}]", "-map", f"[a{i}]"]
    argv += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23"]
    for i, rung in enumerate(LADDER_RUNGS):
        argv += [
            f"-maxrate:v:{i}", f"{rung.maxrate_k}k",
            f"-bufsize:v:{i}", f"{rung.maxrate_k * 4 // 3}k",
            f"-profile:v:{i}", rung.profile, f"-level:v:{i}", rung.level,
        ]  # fmt: skip
    stream_map = " ".join(f"v:{i},a:{i},name:{r.name}" for i, r in enumerate(LADDER_RUNGS))
    argv += [
        "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", "96k", "-ac", "2", "-ar", "48000",
        "-f", "hls", "-hls_time", str(LADDER_SEGMENT_SECONDS), "-hls_playlist_type", "vod",
        "-hls_list_size", "0", "-hls_flags", "independent_segments",
        "-hls_segment_filename", str(out / "%v" / "seg_%d.ts"),
        "-master_pl_name", "manifest.m3u8", "-var_stream_map", stream_map,
        str(out / "%v" / "index.m3u8"),
    ]  # fmt: skip
    return argv


def non_idr_argv(out: Path) -> list[str]:
    """A 3 s GOP cut every 2 s regardless of keyframes: later segments start mid-GOP."""
    return [
        _ffmpeg(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "6",
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast",
        "-x264-params", "keyint=90:min-keyint=90:scenecut=0",
        "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-ar", "48000",
        "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", "-hls_list_size", "0",
        "-hls_flags", "independent_segments+split_by_time",
        "-hls_segment_filename", str(out / "%v" / "seg_%d.ts"),
        "-master_pl_name", "manifest.m3u8", "-var_stream_map", "v:0,a:0,name:180p",
        str(out / "%v" / "index.m3u8"),
    ]  # fmt: skip


def profiles_argv(out: Path) -> list[str]:
    """One ffmpeg process, one short MPEG-TS file per (profile, level)."""
    argv = [
        _ffmpeg(), "-hide_banner", "-loglevel", "error", "-y",
        "-t", "0.5", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
        "-t", "0.5", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    ]  # fmt: skip
    for profile, level in X264_PROFILES:
        argv += [
            "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "fast",
            "-profile:v", profile, "-level:v", level, "-c:a", "aac", "-b:a", "64k",
            "-f", "mpegts", str(out / f"{profile}-{level}.ts"),
        ]  # fmt: skip
    return argv


@pytest.fixture(scope="session")
def hls_ladder_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hls-raw") / "ladder"
    _run(ladder_argv(out))
    return out


@pytest.fixture(scope="session")
def hls_ladder(hls_ladder_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hls") / "ladder"
    shutil.copytree(hls_ladder_raw, out)
    asyncio.run(write_master_playlist(out))
    return out


@pytest.fixture
def hls_ladder_copy(hls_ladder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ladder"
    shutil.copytree(hls_ladder, out, symlinks=True)
    return out


@pytest.fixture(scope="session")
def hls_non_idr_ladder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hls-non-idr") / "ladder"
    _run(non_idr_argv(out))
    asyncio.run(write_master_playlist(out))
    return out


@pytest.fixture(scope="session")
def x264_profile_segments(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    out = tmp_path_factory.mktemp("x264-profiles")
    _run(profiles_argv(out))
    return {(profile, level): out / f"{profile}-{level}.ts" for profile, level in X264_PROFILES}
