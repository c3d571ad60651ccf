"""Bounded MPEG-TS / H.264 / ADTS reading, on real x264 + ffmpeg output and on crafted bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from speak_encoder.pipeline.bitstream import (
    DEFAULT_MAX_BYTES,
    NAL_IDR,
    BitstreamError,
    adts_object_type,
    avc_codec_string,
    scan_bytes,
    scan_segment,
    split_annexb,
)
from tests.support.hls_fixtures import LADDER_RUNGS, X264_PROFILES, LadderRung, expected_avc1


def test_expected_avc1_examples() -> None:
    assert expected_avc1("high", "4.1") == "avc1.640029"
    assert expected_avc1("main", "3.1") == "avc1.4d401f"
    assert expected_avc1("high", "3.0") == "avc1.64001e"


@pytest.mark.parametrize(("profile", "level"), X264_PROFILES)
def test_codec_string_of_real_x264_output(
    x264_profile_segments: dict[tuple[str, str], Path], profile: str, level: str
) -> None:
    start = scan_segment(x264_profile_segments[profile, level])
    assert start.video_codec == expected_avc1(profile, level)
    assert start.audio_codec == "mp4a.40.2"
    assert start.codecs == f"{expected_avc1(profile, level)},mp4a.40.2"
    assert start.starts_with_idr


@pytest.mark.parametrize("rung", LADDER_RUNGS, ids=lambda r: r.name)
def test_every_ladder_segment_starts_with_an_idr(hls_ladder_raw: Path, rung: LadderRung) -> None:
    segments = sorted((hls_ladder_raw / rung.name).glob("seg_*.ts"))
    assert len(segments) == 4
    for segment in segments:
        start = scan_segment(segment, want_audio=False)
        assert start.starts_with_idr, segment.name
        assert start.nal_types[:3] == (9, 7, 8)  # AUD, SPS, PPS before the IDR slice
        assert start.nal_types[-1] == NAL_IDR
        assert start.video_codec == expected_avc1(rung.profile, rung.level)
        assert start.audio_codec is None  # not asked for
        assert start.bytes_read <= 64 * 1024  # stops right after the first slice header


def test_whole_access_unit_and_audio(hls_ladder_raw: Path) -> None:
    segment = hls_ladder_raw / "360p" / "seg_0.ts"
    start = scan_segment(segment, whole_access_unit=True)
    assert NAL_IDR in start.nal_types
    assert start.first_vcl_nal_type == NAL_IDR
    assert start.aac_object_type == 2
    assert start.video_pid is not None
    assert start.audio_pid is not None
    assert start.bytes_read <= DEFAULT_MAX_BYTES


def test_non_idr_segment_is_detected(hls_non_idr_ladder: Path) -> None:
    first = scan_segment(hls_non_idr_ladder / "180p" / "seg_0.ts")
    assert first.starts_with_idr
    later = scan_segment(hls_non_idr_ladder / "180p" / "seg_1.ts", want_audio=False)
    assert not later.starts_with_idr
    assert later.first_vcl_nal_type == 1
    assert later.sps is None
    assert later.video_codec is None


def test_reads_are_bounded(hls_ladder_raw: Path) -> None:
    segment = hls_ladder_raw / "360p" / "seg_0.ts"
    start = scan_segment(segment, whole_access_unit=True, max_bytes=188 * 10)
    assert start.bytes_read <= 188 * 10


def test_truncated_segment_does_not_crash(hls_ladder_raw: Path, tmp_path: Path) -> None:
    data = (hls_ladder_raw / "360p" / "seg_0.ts").read_bytes()[: 188 * 3 + 100]
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data)
    start = scan_segment(cut)
    assert start.first_vcl_nal_type is None
    assert not start.starts_with_idr


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no PAT"),
        (b"\x00" * 188 * 4, "sync"),
        (b"<html>" + b" " * 400, "sync"),
        (bytes([0x47, 0x1F, 0xFF, 0x10]) + b"\xff" * 184, "no PAT"),  # null packets only
    ],
)
def test_garbage_is_a_bitstream_error(data: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        scan_bytes(data)


def test_split_annexb_with_three_and_four_byte_start_codes() -> None:
    stream = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x67\x64\x00\x29\x00\x00\x00\x01\x65\x88"
    assert split_annexb(stream) == [b"\x09\xf0", b"\x67\x64\x00\x29", b"\x65\x88"]
    assert split_annexb(b"no start code") == []


def test_codec_string_from_crafted_sps() -> None:
    assert avc_codec_string(b"\x67\x64\x00\x29\xac") == "avc1.640029"
    assert avc_codec_string(b"\x67\x42\xc0\x1e") == "avc1.42c01e"
    # An emulation-prevention byte inside the first three RBSP bytes is removed.
    assert avc_codec_string(b"\x67\x4d\x00\x00\x03\x01") == "avc1.4d0000"
    with pytest.raises(BitstreamError, match="not an SPS"):
        avc_codec_string(b"\x68\x00")
    with pytest.raises(BitstreamError, match="truncated"):
        avc_codec_string(b"\x67\x64")


@pytest.mark.parametrize(("profile_bits", "aot"), [(0, 1), (1, 2), (2, 3)])
def test_adts_object_type(profile_bits: int, aot: int) -> None:
    header = bytes([0xFF, 0xF1, (profile_bits << 6) | 0x10, 0x80, 0x2E, 0x7F, 0xFC])
    assert adts_object_type(header) == aot


def test_not_adts_is_an_error() -> None:
    with pytest.raises(BitstreamError, match="ADTS"):
        adts_object_type(b"ID3\x04\x00\x00\x00\x00")
    with pytest.raises(BitstreamError, match="truncated"):
        adts_object_type(b"\xff\xf1")
