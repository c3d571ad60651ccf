"""The six validity checks of docs/encoding.md §6, each caught on a deliberately broken ladder."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from speak_encoder.pipeline.hls import write_master_playlist
from speak_encoder.pipeline.verify import ValidationReport, format_report, validate_folder
from speak_encoder.pipeline.verify_checks import MAX_VIOLATIONS_PER_GROUP, Violation
from speak_encoder.testing.long_rung import link_rung
from tests.support.hls_fixtures import LADDER_RUNGS, LADDER_SECONDS


def validate(folder: Path, expected: float | None = LADDER_SECONDS) -> ValidationReport:
    return asyncio.run(validate_folder(folder, expected_duration=expected))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def only(report: ValidationReport, check: int) -> list[Violation]:
    """The violations of ``report``, asserting they all belong to ``check``."""
    assert not report.ok
    assert {v.check for v in report.violations} == {check}, format_report(report)
    return report.violations


def remeasure(folder: Path) -> None:
    """Rewrite the master after breaking a rung, so only the intended check fails."""
    asyncio.run(write_master_playlist(folder))


def stream_inf_line(folder: Path, rung: str) -> str:
    lines = (folder / "manifest.m3u8").read_text().splitlines()
    return lines[lines.index(f"{rung}/index.m3u8") - 1]


# --- a good folder -------------------------------------------------------------------------


def test_good_ladder_has_no_violation(hls_ladder: Path) -> None:
    report = validate(hls_ladder)
    assert report.ok, format_report(report)
    assert report.violations == []
    assert [r.name for r in report.renditions] == [r.name for r in LADDER_RUNGS]
    text = format_report(report)
    assert "valid" in text
    assert "360p: 640x360 @ 29.970 fps" in text


def test_good_ladder_without_expected_duration(hls_ladder: Path) -> None:
    assert validate(hls_ladder, expected=None).ok


def test_thumbnail_at_the_root_is_allowed(hls_ladder_copy: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=64x36", "-frames:v", "1", str(hls_ladder_copy / "thumbnail.jpg")],
        check=True,
    )  # fmt: skip
    assert validate(hls_ladder_copy).ok
    (hls_ladder_copy / "thumbnail.jpg").write_bytes(b"\xff\xd8\xff")  # a JPEG in name only
    [violation] = only(validate(hls_ladder_copy), 6)
    assert violation.where == "thumbnail.jpg" and "JPEG" in violation.message


# --- check 1: playlist tags ----------------------------------------------------------------


def test_missing_endlist(hls_ladder_copy: Path) -> None:
    edit(hls_ladder_copy / "240p" / "index.m3u8", "#EXT-X-ENDLIST", "")
    [violation] = only(validate(hls_ladder_copy), 1)
    assert violation.where == "240p/index.m3u8"
    assert "#EXT-X-ENDLIST" in violation.message


def test_missing_playlist_type(hls_ladder_copy: Path) -> None:
    edit(hls_ladder_copy / "360p" / "index.m3u8", "#EXT-X-PLAYLIST-TYPE:VOD", "")
    [violation] = only(validate(hls_ladder_copy), 1)
    assert violation.where == "360p/index.m3u8"
    assert "PLAYLIST-TYPE:VOD" in violation.message


def test_event_playlist_type(hls_ladder_copy: Path) -> None:
    edit(hls_ladder_copy / "360p" / "index.m3u8", "TYPE:VOD", "TYPE:EVENT")
    [violation] = only(validate(hls_ladder_copy), 1)
    assert "found EVENT" in violation.message


def test_missing_target_duration(hls_ladder_copy: Path) -> None:
    edit(hls_ladder_copy / "180p" / "index.m3u8", "#EXT-X-TARGETDURATION:2", "")
    report = validate(hls_ladder_copy)
    assert any(
        v.check == 1 and v.where == "180p/index.m3u8" and "TARGETDURATION" in v.message
        for v in report.violations
    ), format_report(report)


def test_extinf_above_target_plus_half_a_second(hls_ladder_copy: Path) -> None:
    playlist = hls_ladder_copy / "240p" / "index.m3u8"
    text = playlist.read_text()
    first = text.index("#EXTINF:")
    second = text.index("#EXTINF:", first + 1)
    playlist.write_text(text[:second] + text[second:].replace("#EXTINF:2.002000", "#EXTINF:2.6", 1))
    remeasure(hls_ladder_copy)
    [violation] = only(validate(hls_ladder_copy), 1)
    assert violation.where == "240p/seg_1.ts"
    assert "2.600 s" in violation.message
    assert "TARGETDURATION 2" in violation.message


def test_garbage_media_playlist(hls_ladder_copy: Path) -> None:
    (hls_ladder_copy / "180p" / "index.m3u8").write_text("<html>502 Bad Gateway</html>")
    report = validate(hls_ladder_copy)
    assert any(
        v.check == 1 and v.where == "180p/index.m3u8" and "not a valid media playlist" in v.message
        for v in report.violations
    ), format_report(report)


def test_garbage_master_playlist(hls_ladder_copy: Path) -> None:
    (hls_ladder_copy / "manifest.m3u8").write_bytes(b"\x00\x01\x02garbage")
    [violation] = only(validate(hls_ladder_copy), 1)
    assert violation.where == "manifest.m3u8"


def test_master_without_variants(hls_ladder_copy: Path) -> None:
    (hls_ladder_copy / "manifest.m3u8").write_text("#EXTM3U\n#EXT-X-VERSION:6\n")
    report = validate(hls_ladder_copy)
    assert any(v.check == 1 and "no variant" in v.message for v in report.violations)


# --- check 2: keyframes --------------------------------------------------------------------


def test_segments_starting_with_a_non_idr_frame(hls_non_idr_ladder: Path) -> None:
    violations = only(validate(hls_non_idr_ladder, expected=6.0), 2)
    assert [v.where for v in violations] == ["180p/seg_1.ts", "180p/seg_2.ts"]
    assert all("non-IDR" in v.message for v in violations)


def test_unreadable_segment(hls_ladder_copy: Path) -> None:
    segment = hls_ladder_copy / "240p" / "seg_3.ts"
    segment.write_bytes(b"\x00" * segment.stat().st_size)
    report = validate(hls_ladder_copy)
    [violation] = [v for v in report.violations if v.check == 2]
    assert violation.where == "240p/seg_3.ts"
    assert "not a readable MPEG-TS" in violation.message


# --- check 3: durations --------------------------------------------------------------------


def _drop_last_segments(folder: Path, rung: str, count: int) -> None:
    playlist = folder / rung / "index.m3u8"
    lines = playlist.read_text().splitlines()
    for _ in range(count):
        segment = lines.pop(-2)  # the URI before #EXT-X-ENDLIST
        lines.pop(-2)  # its #EXTINF
        (folder / rung / segment).unlink()
    playlist.write_text("\n".join(lines) + "\n")


def test_one_rung_shorter_than_the_others(hls_ladder_copy: Path) -> None:
    _drop_last_segments(hls_ladder_copy, "240p", 2)
    remeasure(hls_ladder_copy)
    violations = only(validate(hls_ladder_copy, expected=None), 3)
    assert [v.where for v in violations] == ["240p"]
    assert "but rung 360p covers" in violations[0].message


def test_one_rung_shorter_than_expected(hls_ladder_copy: Path) -> None:
    _drop_last_segments(hls_ladder_copy, "180p", 2)
    remeasure(hls_ladder_copy)
    violations = only(validate(hls_ladder_copy), 3)
    assert {v.where for v in violations} == {"180p"}
    assert any(f"expected {LADDER_SECONDS:.3f} s" in v.message for v in violations)


def test_all_rungs_shorter_than_the_source(hls_ladder: Path) -> None:
    violations = only(validate(hls_ladder, expected=20.0), 3)
    assert sorted(v.where for v in violations) == sorted(r.name for r in LADDER_RUNGS)
    assert all("expected 20.000 s" in v.message for v in violations)


def test_one_segment_of_slack_is_allowed(hls_ladder: Path) -> None:
    assert validate(hls_ladder, expected=LADDER_SECONDS + 1.9).ok


# --- check 4: bitrates ---------------------------------------------------------------------


def _set_attribute(folder: Path, rung: str, name: str, value: str | None) -> None:
    line = stream_inf_line(folder, rung)
    attrs = line.removeprefix("#EXT-X-STREAM-INF:").split(",")
    start = next(i for i, part in enumerate(attrs) if part.startswith(f"{name}="))
    end = start + 2 if name == "CODECS" else start + 1  # CODECS="a,b" spans two pieces
    replacement = [] if value is None else [f"{name}={value}"]
    new = "#EXT-X-STREAM-INF:" + ",".join(attrs[:start] + replacement + attrs[end:])
    edit(folder / "manifest.m3u8", line + "\n", new + "\n")


def test_bandwidth_declared_far_too_low(hls_ladder_copy: Path) -> None:
    _set_attribute(hls_ladder_copy, "240p", "BANDWIDTH", "100000")
    [violation] = only(validate(hls_ladder_copy), 4)
    assert violation.where == "240p"
    assert "exceeds 1.1 × declared BANDWIDTH 100000" in violation.message


def test_average_bandwidth_off_by_thirty_percent(hls_ladder_copy: Path) -> None:
    declared = int(
        stream_inf_line(hls_ladder_copy, "360p").split("AVERAGE-BANDWIDTH=")[1].split(",")[0]
    )
    _set_attribute(hls_ladder_copy, "360p", "AVERAGE-BANDWIDTH", str(round(declared * 1.3)))
    [violation] = only(validate(hls_ladder_copy), 4)
    assert violation.where == "360p"
    assert "AVERAGE-BANDWIDTH" in violation.message


@pytest.mark.parametrize("attribute", ["BANDWIDTH", "AVERAGE-BANDWIDTH"])
def test_missing_bandwidth_attribute(hls_ladder_copy: Path, attribute: str) -> None:
    _set_attribute(hls_ladder_copy, "180p", attribute, None)
    [violation] = only(validate(hls_ladder_copy), 4)
    assert violation.where == "180p"
    assert f"no valid {attribute}" in violation.message


# --- check 5: codecs, resolution, frame rate -----------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "value", "expected"),
    [
        ("CODECS", '"avc1.42e01e,mp4a.40.2"', "declares CODECS"),
        ("CODECS", '"avc1.640028"', "declares CODECS"),
        ("RESOLUTION", "1280x720", "declares RESOLUTION 1280x720 but the stream is 640x360"),
        ("FRAME-RATE", "25.000", "declares FRAME-RATE 25.000 but the stream has 29.970"),
        ("FRAME-RATE", "30.000", "declares FRAME-RATE 30.000"),
        ("FRAME-RATE", None, "no valid FRAME-RATE"),
        ("CODECS", None, "no CODECS"),
        ("RESOLUTION", "big", "no valid RESOLUTION"),
    ],
)
def test_wrong_stream_attributes(
    hls_ladder_copy: Path, attribute: str, value: str | None, expected: str
) -> None:
    _set_attribute(hls_ladder_copy, "360p", attribute, value)
    [violation] = only(validate(hls_ladder_copy), 5)
    assert violation.where == "360p"
    assert expected in violation.message


def test_frame_rate_within_a_hundredth_is_accepted(hls_ladder_copy: Path) -> None:
    _set_attribute(hls_ladder_copy, "360p", "FRAME-RATE", "29.97")
    assert validate(hls_ladder_copy).ok


# --- check 6: folder contents --------------------------------------------------------------


def test_missing_segment(hls_ladder_copy: Path) -> None:
    (hls_ladder_copy / "240p" / "seg_2.ts").unlink()
    [violation] = only(validate(hls_ladder_copy), 6)
    assert violation.where == "240p/seg_2.ts"
    assert "missing" in violation.message


def test_missing_media_playlist(hls_ladder_copy: Path) -> None:
    (hls_ladder_copy / "180p" / "index.m3u8").unlink()
    report = validate(hls_ladder_copy)
    assert (
        Violation(6, "180p/index.m3u8", "is referenced by a playlist but missing from the folder")
        in report.violations
    )


def test_missing_master(hls_ladder_copy: Path) -> None:
    (hls_ladder_copy / "manifest.m3u8").unlink()
    [violation] = only(validate(hls_ladder_copy), 6)
    assert violation.where == "manifest.m3u8"
    assert "missing" in violation.message


@pytest.mark.parametrize(
    "stray", ["source.mp4", "ffmpeg.log", "240p/ffmpeg.log", "360p/seg_9.ts", "240p/thumbnail.jpg"]
)
def test_extra_stray_file(hls_ladder_copy: Path, stray: str) -> None:
    (hls_ladder_copy / stray).write_bytes(b"stray")
    [violation] = only(validate(hls_ladder_copy), 6)
    assert violation.where == stray
    assert "not referenced" in violation.message


def test_extra_folder(hls_ladder_copy: Path) -> None:
    (hls_ladder_copy / "tmp" / "deep").mkdir(parents=True)
    (hls_ladder_copy / "tmp" / "deep" / "x.ts").write_bytes(b"x")
    [violation] = only(validate(hls_ladder_copy), 6)
    assert violation.where == "tmp/"


def test_symlink_is_not_allowed(hls_ladder_copy: Path) -> None:
    (hls_ladder_copy / "240p" / "seg_1.ts").unlink()
    (hls_ladder_copy / "240p" / "seg_1.ts").symlink_to(hls_ladder_copy / "360p" / "seg_1.ts")
    report = validate(hls_ladder_copy)
    assert (
        Violation(6, "240p/seg_1.ts", "is a symbolic link (not allowed in a published folder)")
        in report.violations
    )


@pytest.mark.parametrize(
    "uri", ["../x/index.m3u8", "/etc/index.m3u8", "https://example.com/x/index.m3u8"]
)
def test_variant_uri_escaping_the_folder(hls_ladder_copy: Path, uri: str) -> None:
    edit(hls_ladder_copy / "manifest.m3u8", "240p/index.m3u8", uri)
    report = validate(hls_ladder_copy)
    escaping = [v for v in report.violations if v.where == uri]
    assert [v.check for v in escaping] == [6], format_report(report)
    # The rung folder nobody references any more is extra, too.
    assert any(v.check == 6 and v.where == "240p/" for v in report.violations)


def test_segment_uri_escaping_the_folder(hls_ladder_copy: Path) -> None:
    edit(hls_ladder_copy / "180p" / "index.m3u8", "seg_0.ts", "../360p/seg_0.ts")
    report = validate(hls_ladder_copy)
    assert any(
        v.check == 6 and v.where == "180p/index.m3u8" and "../360p/seg_0.ts" in v.message
        for v in report.violations
    ), format_report(report)


# --- scale ---------------------------------------------------------------------------------


def test_two_thousand_segments_validate(hls_ladder: Path, tmp_path: Path) -> None:
    # how long this takes per segment is measured by bench/verify_bench.py, not asserted here
    folder = tmp_path / "long"
    link_rung(folder, hls_ladder / "180p" / "seg_1.ts", 2000, 2.002)
    asyncio.run(write_master_playlist(folder))
    report = validate(folder, expected=4004.0)
    assert report.ok, format_report(report)
    assert report.renditions[0].segments == 2000


def test_violations_are_capped_per_rung(hls_non_idr_ladder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "long"
    link_rung(folder, hls_non_idr_ladder / "180p" / "seg_1.ts", 300, 2.0)
    report = validate(folder, expected=None)
    keyframes = [v for v in report.violations if v.check == 2]
    assert len(keyframes) == MAX_VIOLATIONS_PER_GROUP + 1
    assert keyframes[-1].message == f"… and {300 - MAX_VIOLATIONS_PER_GROUP} more like these"
    assert keyframes[-1].where == "r/index.m3u8"
