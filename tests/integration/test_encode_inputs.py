"""Every input of docs/encoding.md §7: a valid ladder with the right shape, or a clear failure.

Never a traceback, a hang, a half-written output folder or a leftover work folder.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from speak_encoder.config import Settings
from speak_encoder.errors import MediaError, OutputInvalid, SpeakEncoderError
from speak_encoder.pipeline.encode_job import EncodeResult, encode
from speak_encoder.pipeline.plan import EncodeOptions
from speak_encoder.pipeline.verify import validate_folder

# name → [(rung, width, height)], frame rate of the output
GOOD: dict[str, tuple[list[tuple[str, int, int]], float]] = {
    "landscape": ([("360p", 640, 360)], 30),
    "hd720": ([("720p", 1280, 720), ("480p", 854, 480)], 30),
    "portrait_rotated": ([("720p", 720, 1280), ("480p", 480, 854)], 30),
    "no_audio": ([("360p", 640, 360)], 30),
    "h264_10bit": ([("360p", 640, 360)], 30),
    "hevc_hdr10": ([("360p", 640, 360)], 25),
    "odd_size": ([("478p", 852, 478)], 30),
    "one_pixel": ([("2p", 2, 2)], 25),
    "non_square": ([("480p", 854, 480)], 30),
    "vfr": ([("360p", 640, 360)], 30),
    "vp9": ([("270p", 480, 270)], 30),
    "av1": ([("180p", 320, 180)], 24),
    "prores": ([("180p", 320, 180)], 25),
    "mpeg4_part2": ([("240p", 320, 240)], 25),
    "multi_audio": ([("360p", 640, 360)], 30),
    "extra_streams": ([("360p", 640, 360)], 30),
    "cover_art": ([("360p", 640, 360)], 30),
    "high_fps": ([("180p", 320, 180)], 60),
    "very_short": ([("180p", 320, 180)], 30),
    "lying_extension": ([("360p", 640, 360)], 30),
}

BAD: dict[str, tuple[type[SpeakEncoderError], str]] = {
    "audio_only": (MediaError, "no video stream"),
    "truncated": (MediaError, "truncated or corrupt"),
    "truncated_faststart": (MediaError, "truncated or corrupt"),
    "zero_bytes": (SpeakEncoderError, "empty"),
    "not_media": (MediaError, "not a media file"),
}


def ffprobe_streams(path: Path) -> list[dict[str, object]]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(path)],
        check=True,
        capture_output=True,
    )
    streams: list[dict[str, object]] = json.loads(out.stdout)["streams"]
    return streams


def run_encode(source: Path, settings: Settings, out: Path, **options: object) -> EncodeResult:
    return asyncio.run(
        encode(str(source), settings, options=EncodeOptions(**options), out=out)  # type: ignore[arg-type]
    )


def assert_no_leftovers(settings: Settings) -> None:
    work = settings.work_dir
    assert not work.exists() or list(work.iterdir()) == [], "work folder left behind"


@pytest.mark.parametrize("name", sorted(GOOD))
def test_input_encodes_to_a_valid_ladder(
    name: str,
    sample: Callable[[str], Path],
    encode_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings = encode_settings()
    out = tmp_path / "out"
    result = run_encode(sample(name), settings, out)
    expected_rungs, fps = GOOD[name]
    assert [(r.name, r.width, r.height) for r in result.renditions] == expected_rungs
    # an independent re-validation of the folder handed over
    report = asyncio.run(validate_folder(out, expected_duration=result.duration, ffprobe="ffprobe"))
    assert report.ok, report.violations
    for rendition in result.renditions:
        assert rendition.frame_rate == pytest.approx(fps, abs=0.01)
        assert rendition.codecs.endswith(",mp4a.40.2")  # always an AAC-LC track
        streams = ffprobe_streams(out / rendition.name / "seg_0.ts")
        kinds = sorted(str(s["codec_type"]) for s in streams)
        assert kinds == ["audio", "video"]  # extra streams dropped, one audio track
        video = next(s for s in streams if s["codec_type"] == "video")
        audio = next(s for s in streams if s["codec_type"] == "audio")
        assert video["pix_fmt"] == "yuv420p"  # 8-bit always
        assert (video["width"], video["height"]) == (rendition.width, rendition.height)
        assert video.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1")
        assert audio["sample_rate"] == "48000" and audio["channels"] == 2
        assert audio["profile"] == "LC"
    extras = ["storyboard.jpg", "storyboard.vtt", "thumbnail.jpg"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.m3u8", *extras, *[r.name for r in result.renditions]]
    )
    for rendition in result.renditions:  # trick play for every rung
        assert (out / rendition.name / "iframes.m3u8").is_file()
    assert_no_leftovers(settings)


def test_hdr_source_is_tone_mapped_to_bt709(
    sample: Callable[[str], Path], encode_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_encode(sample("hevc_hdr10"), encode_settings(), out)
    video = next(
        s for s in ffprobe_streams(out / "360p" / "seg_0.ts") if s["codec_type"] == "video"
    )
    assert video["codec_name"] == "h264"
    assert video.get("color_transfer") == "bt709"


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_fails_with_a_clear_reason(
    name: str,
    sample: Callable[[str], Path],
    encode_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings = encode_settings()
    out = tmp_path / "out"
    error_type, words = BAD[name]
    with pytest.raises(error_type, match=words) as info:
        run_encode(sample(name), settings, out)
    assert not info.value.retryable
    assert not out.exists(), "no half-written output folder"
    assert_no_leftovers(settings)


def test_corrupt_middle_is_encoded_or_refused_cleanly(
    sample: Callable[[str], Path], encode_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = encode_settings()
    out = tmp_path / "out"
    result: EncodeResult | None = None
    failure: SpeakEncoderError | None = None
    try:
        result = run_encode(sample("corrupt"), settings, out)
    except (MediaError, OutputInvalid) as exc:
        failure = exc
    if result is None:
        assert failure is not None and failure.message
        assert not out.exists()
    else:
        report = asyncio.run(validate_folder(out, expected_duration=result.duration))
        assert report.ok
    assert_no_leftovers(settings)


def test_short_keeps_480p_and_the_first_60_seconds(
    sample: Callable[[str], Path], encode_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    result = run_encode(sample("hd720"), encode_settings(), tmp_path / "out", short=True)
    assert [(r.name, r.width, r.height) for r in result.renditions] == [("480p", 854, 480)]


def test_explicit_rungs(
    sample: Callable[[str], Path], encode_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    result = run_encode(sample("fullhd"), encode_settings(), tmp_path / "out", rungs=("720p",))
    assert [r.name for r in result.renditions] == ["720p"]
    assert result.renditions[0].codecs.startswith("avc1.64")  # High profile as the ladder says


def test_full_ladder_profiles_and_levels(
    sample: Callable[[str], Path], encode_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    result = run_encode(sample("fullhd"), encode_settings(encoder_preset="fast"), tmp_path / "o")
    codecs = {r.name: r.codecs.split(",")[0] for r in result.renditions}
    # High@4.1, High@4.0, Main@3.1 (x264 sets constraint_set1 for Main)
    assert codecs == {"1080p": "avc1.640029", "720p": "avc1.640028", "480p": "avc1.4d401f"}
    master = (tmp_path / "o" / "manifest.m3u8").read_text()
    assert master.index("1080p/index.m3u8") < master.index("720p/index.m3u8")
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in master and "AVERAGE-BANDWIDTH=" in master


def test_existing_output_folder_is_never_overwritten(
    sample: Callable[[str], Path], encode_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SpeakEncoderError, match="not empty"):
        run_encode(sample("landscape"), encode_settings(), out)
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_long_source_uses_longer_segments(
    sample: Callable[[str], Path], encode_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A 1 h 12 min source: 12 s segments (docs/encoding.md §3), every playlist ≤ 2000 segments."""
    result = run_encode(sample("long"), encode_settings(encoder_preset="ultrafast"), tmp_path / "o")
    assert result.duration > 3600
    media = (tmp_path / "o" / result.renditions[0].name / "index.m3u8").read_text()
    assert "#EXT-X-TARGETDURATION:12" in media
    assert result.renditions[0].segments == pytest.approx(4300 / 12, abs=2)
