"""RESOLUTION and FRAME-RATE from the H.264 SPS, checked against ffprobe on real x264 output.

The master playlist writer (and the validator, which measures the same way) take a rung's
frame size and rate from the SPS of its first segment; ffprobe runs only when that SPS has no
VUI timing info. Here: for real libx264 encodes of several sizes, rates, chroma formats and
field coding, the SPS says what ffprobe says; a real ladder is written and validated with no
ffprobe at all; and a segment whose SPS lost its timing info is measured by ffprobe (once for
the writer and the validator together).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path

import pytest

from speak_encoder.errors import ConfigError, OutputInvalid
from speak_encoder.pipeline.bitstream import parse_sps, scan_segment
from speak_encoder.pipeline.hls import (
    VideoInfo,
    ffprobe_argv,
    format_frame_rate,
    parse_ffprobe_video,
    probe_video,
    video_from_sps,
    write_master_playlist,
)
from speak_encoder.pipeline.verify import format_report, validate_folder
from tests.support.hls_fixtures import LADDER_SECONDS
from tests.support.sps_writer import SpsSpec, Vui, sps_nal

FFMPEG_TIMEOUT_S = 120


@dataclass(frozen=True)
class Clip:
    name: str
    width: int
    height: int
    rate: str
    #: Extra filters after fps and scale (a pixel format).
    format: str | None = None
    encoder: str = "libx264"
    options: tuple[str, ...] = ()


CLIPS = (
    Clip("320x240-30", 320, 240, "30"),
    Clip("426x240-25", 426, 240, "25"),  # 27 MBs wide, cropped by 3 chroma units
    Clip("640x360-ntsc", 640, 360, "30000/1001"),  # 23 MB rows, crop_bottom 4
    Clip("854x480-film", 854, 480, "24000/1001"),
    Clip("1920x1080-30", 1920, 1080, "30"),  # 1088 coded
    Clip("425x239-444", 425, 239, "50", "yuv444p"),  # High 4:4:4: crop in whole pixels
    Clip("426x241-422", 426, 241, "15", "yuv422p"),  # High 4:2:2: odd height
    Clip("640x360-10bit", 640, 360, "60", "yuv420p10le"),  # High 10
    Clip("640x360-gray", 640, 360, "30", "gray"),  # monochrome (chroma_format_idc 0)
    Clip("640x360-interlaced", 640, 360, "25", options=("-flags", "+ildct+ilme")),  # MBAFF
    Clip("640x360-rgb", 640, 360, "48", encoder="libx264rgb"),
)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def clips_argv(out: Path) -> list[str]:
    """One ffmpeg process, one 0.2 s MPEG-TS file per clip."""
    argv = [
        _tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y",
        "-t", "0.2", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=60",
    ]  # fmt: skip
    for clip in CLIPS:
        chain = f"fps={clip.rate},scale={clip.width}:{clip.height}"
        chain += f",format={clip.format}" if clip.format else ""
        argv += ["-map", "0:v", "-vf", chain, "-c:v", clip.encoder, "-preset", "ultrafast"]
        argv += [*clip.options, "-f", "mpegts", str(out / f"{clip.name}.ts")]
    return argv


@pytest.fixture(scope="module")
def x264_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sps-clips")
    done = subprocess.run(clips_argv(out), capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return {clip.name: out / f"{clip.name}.ts" for clip in CLIPS}


def ffprobe_video(segment: Path) -> VideoInfo:
    """What ffprobe says (the same command and parsing as the fallback, no cache)."""
    argv = ffprobe_argv(_tool("ffprobe"), segment)
    done = subprocess.run(argv, capture_output=True, timeout=60, check=True)
    return parse_ffprobe_video(done.stdout, where=segment.name)


# --- the SPS says what ffprobe says --------------------------------------------------------


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: c.name)
def test_sps_size_and_rate_equal_ffprobe(x264_clips: dict[str, Path], clip: Clip) -> None:
    segment = x264_clips[clip.name]
    start = scan_segment(segment, want_audio=False)
    from_sps = video_from_sps(start.sps)
    assert from_sps is not None, "libx264 always writes the VUI timing info"
    probed = ffprobe_video(segment)
    assert (from_sps.width, from_sps.height) == (probed.width, probed.height)
    assert (from_sps.width, from_sps.height) == (clip.width, clip.height)
    assert from_sps.frame_rate == pytest.approx(probed.frame_rate, rel=1e-12)
    assert from_sps.frame_rate == pytest.approx(float(Fraction(clip.rate)), rel=1e-12)
    assert format_frame_rate(from_sps.frame_rate) == format_frame_rate(probed.frame_rate)


def test_real_sps_carry_emulation_prevention_past_their_first_bytes(
    x264_clips: dict[str, Path],
) -> None:
    """x264's num_units_in_tick = 1 is 31 zero bits: its SPS needs 03 bytes there."""
    escaped = []
    for name, segment in x264_clips.items():
        sps = scan_segment(segment, want_audio=False).sps
        assert sps is not None
        if b"\x00\x00\x03" in sps[4:]:
            escaped.append(name)
    assert "320x240-30" in escaped
    assert "640x360-interlaced" in escaped


def test_probe_video_with_the_sps_runs_no_process(x264_clips: dict[str, Path]) -> None:
    segment = x264_clips["854x480-film"]
    sps = scan_segment(segment, want_audio=False).sps
    info = asyncio.run(probe_video(segment, ffprobe="/nonexistent/ffprobe", where="x", sps=sps))
    assert (info.width, info.height) == (854, 480)
    assert format_frame_rate(info.frame_rate) == "23.976"


# --- a real ladder needs no ffprobe --------------------------------------------------------


def test_a_libx264_ladder_is_written_and_validated_without_ffprobe(
    hls_ladder: Path, hls_ladder_copy: Path
) -> None:
    stats = asyncio.run(write_master_playlist(hls_ladder_copy, ffprobe="/nonexistent/ffprobe"))
    written = (hls_ladder_copy / "manifest.m3u8").read_text()
    assert written == (hls_ladder / "manifest.m3u8").read_text()
    for rung in stats:
        probed = ffprobe_video(hls_ladder_copy / rung.name / "seg_0.ts")
        assert (rung.width, rung.height) == (probed.width, probed.height)
        assert format_frame_rate(rung.frame_rate) == format_frame_rate(probed.frame_rate)
    report = asyncio.run(
        validate_folder(
            hls_ladder_copy, expected_duration=LADDER_SECONDS, ffprobe="/nonexistent/ffprobe"
        )
    )
    assert report.ok, format_report(report)


# --- an SPS without timing info: ffprobe ---------------------------------------------------

UNTIMED_RUNG = "360p"


def strip_sps_timing(segment: Path) -> None:
    """Rewrite the segment's first SPS without its VUI (same file size: zero-byte padding,
    which Annex B allows after a NAL unit), as a hardware encoder might write it."""
    data = segment.read_bytes()
    old = scan_segment(segment, want_audio=False).sps
    assert old is not None
    parsed = parse_sps(old)
    assert not parsed.seq_scaling_matrix_present  # x264 puts its matrices in the PPS
    names = {f.name for f in fields(SpsSpec)} - {"scaling_lists", "vui"}
    values = {name: getattr(parsed, name) for name in names}
    spec = SpsSpec(**{name: value for name, value in values.items() if value is not None})
    spec.vui = Vui(aspect_ratio_idc=parsed.aspect_ratio_idc)
    new = sps_nal(spec)
    at = data.find(old)
    assert at > 0, "the SPS lies within one TS packet"
    assert len(new) < len(old)
    segment.write_bytes(data[:at] + new + bytes(len(old) - len(new)) + data[at + len(old) :])
    rewritten = parse_sps(scan_segment(segment, want_audio=False).sps or b"")
    assert (rewritten.width, rewritten.height) == (parsed.width, parsed.height)
    assert rewritten.frame_rate is None


@pytest.fixture
def untimed_ladder(hls_ladder_copy: Path) -> Path:
    strip_sps_timing(hls_ladder_copy / UNTIMED_RUNG / "seg_0.ts")
    return hls_ladder_copy


def test_an_sps_without_timing_info_is_measured_by_ffprobe(
    hls_ladder: Path, untimed_ladder: Path, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "ffprobe"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {_tool("ffprobe")} "$@"\n')
    wrapper.chmod(0o755)
    asyncio.run(write_master_playlist(untimed_ladder, ffprobe=str(wrapper)))
    calls = log.read_text().splitlines()
    assert len(calls) == 1
    assert f"/{UNTIMED_RUNG}/seg_0.ts" in calls[0]
    # ffprobe takes the rate from the timestamps: the same playlist as from the SPS.
    written = (untimed_ladder / "manifest.m3u8").read_text()
    assert written == (hls_ladder / "manifest.m3u8").read_text()
    report = asyncio.run(
        validate_folder(untimed_ladder, expected_duration=LADDER_SECONDS, ffprobe=str(wrapper))
    )
    assert report.ok, format_report(report)
    assert len(log.read_text().splitlines()) == 1  # the validator reused the writer's answer


def test_missing_ffprobe_is_a_config_error_when_it_is_needed(untimed_ladder: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        asyncio.run(write_master_playlist(untimed_ladder, ffprobe="/nonexistent/ffprobe"))


def test_ffprobe_failure_is_output_invalid(untimed_ladder: Path, tmp_path: Path) -> None:
    fake = tmp_path / "ffprobe"
    fake.write_text("#!/bin/sh\necho 'Invalid data found when processing input' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(OutputInvalid, match=re.escape("Invalid data found")):
        asyncio.run(write_master_playlist(untimed_ladder, ffprobe=str(fake)))
