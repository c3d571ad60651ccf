"""Measured master playlist: bitrate definitions as data, and the writer on a real ladder."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
from pathlib import Path

import pytest

from speak_encoder.errors import OutputInvalid
from speak_encoder.pipeline.hls import (
    RenditionStats,
    average_bitrate,
    build_master_playlist,
    parse_ffprobe_video,
    parse_frame_rate,
    peak_bitrate,
    write_master_playlist,
)
from speak_encoder.pipeline.m3u8 import format_master_playlist, parse_master_playlist
from tests.support.hls_fixtures import LADDER_RUNGS, LADDER_SECONDS, expected_avc1

# --- bitrates as data ----------------------------------------------------------------------


def test_average_is_total_bits_over_total_duration() -> None:
    assert average_bitrate([750_000, 250_000], [6.0, 2.0]) == 1_000_000
    assert average_bitrate([1], [3.0]) == 3  # rounded up (8/3 = 2.67)


def test_peak_uses_runs_between_half_and_one_and_a_half_targets() -> None:
    sizes = [600_000, 100_000, 900_000]  # bytes
    durations = [6.0, 1.0, 6.0]
    # Runs allowed for target 6 (3..9 s): [0], [0,1], [1,2], [2]; a 1 s segment alone is too
    # short to count, 6+1+6 = 13 s too long.
    expected = max(600_000 * 8 / 6, 700_000 * 8 / 7, 1_000_000 * 8 / 7, 900_000 * 8 / 6)
    assert peak_bitrate(sizes, durations, 6) == math.ceil(expected)


def test_peak_ignores_a_short_tail_segment_on_its_own() -> None:
    # The 0.5 s tail has a high bitrate but only counts together with its neighbour.
    assert peak_bitrate([600_000, 200_000], [6.0, 0.5], 6) == math.ceil(800_000 * 8 / 6.5)


def test_peak_of_a_playlist_shorter_than_half_a_target_is_its_average() -> None:
    assert peak_bitrate([10_000, 30_000], [1.0, 1.0], 6) == average_bitrate(
        [10_000, 30_000], [1.0, 1.0]
    )


def test_an_overlong_segment_counts_on_its_own() -> None:
    assert peak_bitrate([100, 10_000_000], [6.0, 12.0], 6) == math.ceil(80_000_000 / 12)


def test_bitrate_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="duration"):
        average_bitrate([1], [0.0])
    with pytest.raises(ValueError, match="one duration per segment"):
        peak_bitrate([1, 2], [1.0], 6)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("30/1", 30.0), ("30000/1001", 30000 / 1001), ("0/0", None), ("", None), (None, None)],
)
def test_parse_frame_rate(text: object, rate: float | None) -> None:
    assert parse_frame_rate(text) == rate


def test_parse_ffprobe_video_prefers_avg_frame_rate() -> None:
    out = b'{"streams":[{"width":1280,"height":720,"avg_frame_rate":"25/1","r_frame_rate":"50/1"}]}'
    info = parse_ffprobe_video(out, where="x.ts")
    assert (info.width, info.height, info.frame_rate) == (1280, 720, 25.0)
    out = b'{"streams":[{"width":1280,"height":720,"avg_frame_rate":"0/0","r_frame_rate":"50/1"}]}'
    assert parse_ffprobe_video(out, where="x.ts").frame_rate == 50.0
    with pytest.raises(OutputInvalid, match=re.escape("no video stream in x.ts")):
        parse_ffprobe_video(b'{"streams":[]}', where="x.ts")
    with pytest.raises(OutputInvalid, match="unreadable"):
        parse_ffprobe_video(b"garbage", where="x.ts")


def _stats(name: str, width: int, height: int, bandwidth: int) -> RenditionStats:
    return RenditionStats(
        name=name,
        uri=f"{name}/index.m3u8",
        width=width,
        height=height,
        frame_rate=30000 / 1001,
        codecs="avc1.640028,mp4a.40.2",
        bandwidth=bandwidth,
        average_bandwidth=bandwidth - 1,
        segments=3,
        duration=6.0,
    )


def test_build_master_puts_the_highest_resolution_first() -> None:
    stats = [
        _stats("480p", 480, 854, 1_000),  # portrait: 480x854
        _stats("1080p", 1080, 1920, 5_000),
        _stats("720p", 720, 1280, 3_000),
    ]
    master = build_master_playlist(stats, version=3)
    assert master.version == 6
    assert [v.uri for v in master.variants] == [
        "1080p/index.m3u8",
        "720p/index.m3u8",
        "480p/index.m3u8",
    ]
    assert format_master_playlist(master).splitlines()[3] == (
        "#EXT-X-STREAM-INF:BANDWIDTH=5000,AVERAGE-BANDWIDTH=4999,"
        'CODECS="avc1.640028,mp4a.40.2",RESOLUTION=1080x1920,FRAME-RATE=29.970'
    )


# --- the writer on real ffmpeg output ------------------------------------------------------


def test_written_master_has_measured_attributes_highest_first(hls_ladder: Path) -> None:
    text = (hls_ladder / "manifest.m3u8").read_text()
    master = parse_master_playlist(text)
    assert text.startswith("#EXTM3U\n")
    assert master.version is not None
    assert master.version >= 6
    assert master.independent_segments
    assert [v.uri for v in master.variants] == [f"{r.name}/index.m3u8" for r in LADDER_RUNGS]
    for variant, rung in zip(master.variants, LADDER_RUNGS, strict=True):
        attrs = variant.attributes
        assert set(attrs) == {
            "BANDWIDTH",
            "AVERAGE-BANDWIDTH",
            "CODECS",
            "RESOLUTION",
            "FRAME-RATE",
        }
        assert attrs["CODECS"] == f"{expected_avc1(rung.profile, rung.level)},mp4a.40.2"
        assert attrs["RESOLUTION"] == f"{rung.width}x{rung.height}"
        assert attrs["FRAME-RATE"] == "29.970"
        assert int(attrs["BANDWIDTH"]) >= int(attrs["AVERAGE-BANDWIDTH"]) > 0
    assert not [p for p in hls_ladder.iterdir() if p.name.startswith(".")]  # no temp file left


def test_returned_stats_match_the_written_playlist(hls_ladder_copy: Path) -> None:
    stats = asyncio.run(write_master_playlist(hls_ladder_copy))
    master = parse_master_playlist((hls_ladder_copy / "manifest.m3u8").read_text())
    assert [s.name for s in stats] == [r.name for r in LADDER_RUNGS]
    for s, variant in zip(stats, master.variants, strict=True):
        assert variant.uri == s.uri
        assert variant.attributes["BANDWIDTH"] == str(s.bandwidth)
        assert variant.attributes["AVERAGE-BANDWIDTH"] == str(s.average_bandwidth)
        assert variant.attributes["CODECS"] == s.codecs
        assert s.segments == 4
        assert s.duration == pytest.approx(LADDER_SECONDS, abs=0.1)
        sizes = sum(p.stat().st_size for p in (hls_ladder_copy / s.name).glob("*.ts"))
        assert s.average_bandwidth == math.ceil(sizes * 8 / s.duration)


def test_rewriting_is_idempotent(hls_ladder_copy: Path) -> None:
    before = (hls_ladder_copy / "manifest.m3u8").read_text()
    asyncio.run(write_master_playlist(hls_ladder_copy))
    assert (hls_ladder_copy / "manifest.m3u8").read_text() == before


def test_missing_master_is_output_invalid(hls_ladder_copy: Path) -> None:
    (hls_ladder_copy / "manifest.m3u8").unlink()
    with pytest.raises(OutputInvalid, match=re.escape("manifest.m3u8 is missing")):
        asyncio.run(write_master_playlist(hls_ladder_copy))


def test_missing_segment_is_output_invalid(hls_ladder_copy: Path) -> None:
    (hls_ladder_copy / "240p" / "seg_2.ts").unlink()
    with pytest.raises(OutputInvalid, match=re.escape("240p/seg_2.ts is missing")):
        asyncio.run(write_master_playlist(hls_ladder_copy))


def test_escaping_variant_is_output_invalid(hls_ladder_copy: Path) -> None:
    manifest = hls_ladder_copy / "manifest.m3u8"
    manifest.write_text(manifest.read_text().replace("240p/index.m3u8", "../x/index.m3u8"))
    with pytest.raises(OutputInvalid, match=r"'\.\./x/index.m3u8'"):
        asyncio.run(write_master_playlist(hls_ladder_copy))


def test_garbage_segment_is_output_invalid(hls_ladder_copy: Path) -> None:
    (hls_ladder_copy / "180p" / "seg_0.ts").write_bytes(b"not a transport stream" * 20)
    with pytest.raises(OutputInvalid, match=re.escape("180p/seg_0.ts is not a readable MPEG-TS")):
        asyncio.run(write_master_playlist(hls_ladder_copy))


def test_a_libx264_ladder_needs_no_ffprobe(hls_ladder: Path, hls_ladder_copy: Path) -> None:
    # RESOLUTION and FRAME-RATE come from the SPS; ffprobe (and its failures: see
    # test_sps_measure.py) only for an SPS without timing info.
    asyncio.run(write_master_playlist(hls_ladder_copy, ffprobe="/nonexistent/ffprobe"))
    written = (hls_ladder_copy / "manifest.m3u8").read_text()
    assert written == (hls_ladder / "manifest.m3u8").read_text()


def test_raw_ffmpeg_master_is_replaced(hls_ladder_raw: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ladder"
    shutil.copytree(hls_ladder_raw, folder)
    raw = parse_master_playlist((folder / "manifest.m3u8").read_text())
    assert all("AVERAGE-BANDWIDTH" not in v.attributes for v in raw.variants)
    asyncio.run(write_master_playlist(folder))
    written = parse_master_playlist((folder / "manifest.m3u8").read_text())
    assert all("AVERAGE-BANDWIDTH" in v.attributes for v in written.variants)
