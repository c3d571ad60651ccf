"""Poster, I-frame playlists and storyboard: made by real encodes, checked with ffprobe.

Each property is checked independently of the code that made it: sizes and luma come from
ffprobe/ffmpeg on the produced JPEGs, I-frame byte ranges are cut out of the segments and
decoded by ffprobe on their own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from speak_encoder.config import Settings
from speak_encoder.pipeline import poster as poster_module
from speak_encoder.pipeline.encode_job import EncodeResult, encode
from speak_encoder.pipeline.hls import load_master_playlist, load_media_playlist
from speak_encoder.pipeline.iframes import index_file
from speak_encoder.pipeline.m3u8 import parse_media_playlist
from speak_encoder.pipeline.overlap import read_segment
from speak_encoder.pipeline.plan import EncodeOptions
from speak_encoder.pipeline.poster import Candidate
from speak_encoder.pipeline.storyboard import parse_storyboard
from speak_encoder.pipeline.verify import ValidationReport, format_report, validate_folder
from speak_encoder.storage.unixfs import import_file, import_folder

pytestmark = pytest.mark.slow


def run_encode(source: Path, settings: Settings, out: Path, **options: object) -> EncodeResult:
    return asyncio.run(
        encode(str(source), settings, options=EncodeOptions(**options), out=out)  # type: ignore[arg-type]
    )


def probe(path: Path, *extra: str) -> dict[str, object]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *extra, str(path)],
        check=True,
        capture_output=True,
    )
    return dict(json.loads(done.stdout))


def image_size(path: Path) -> tuple[int, int]:
    stream = probe(path, "-show_entries", "stream=width,height")["streams"][0]  # type: ignore[index]
    return int(stream["width"]), int(stream["height"])


def mean_luma(path: Path) -> float:
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
         "-vf", "signalstats,metadata=mode=print:file=-", "-f", "null", "-"],
        check=True, capture_output=True,
    )  # fmt: skip
    match = re.search(rb"lavfi\.signalstats\.YAVG=([0-9.]+)", done.stdout)
    assert match is not None
    return float(match.group(1))


def validate(folder: Path, duration: float | None) -> ValidationReport:
    return asyncio.run(validate_folder(folder, expected_duration=duration))


@pytest.fixture(scope="module")
def fade_ladder(
    sample: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, EncodeResult]:
    """The fade/scene-cut clip through the whole `encode` job."""
    base = tmp_path_factory.mktemp("extras")
    from speak_encoder.config import load_settings

    settings = load_settings(
        temp_dir=base / "work", data_dir=base / "data", encoder_preset="veryfast",
        ipfs_api_addr="", ipfs_gateways="", disk_reserve_mb=0,
    )  # fmt: skip
    out = base / "out"
    return out, run_encode(sample("fade_scene"), settings, out)


# --- poster --------------------------------------------------------------------------------


def test_poster_skips_the_black_opening_and_the_fade(
    fade_ladder: tuple[Path, EncodeResult],
) -> None:
    out, result = fade_ladder
    poster = out / "thumbnail.jpg"
    assert poster.is_file()
    assert result.to_json()["thumbnail"] == f"ipfs://{result.cid}/thumbnail.jpg"
    assert image_size(poster) == (640, 360)
    assert mean_luma(poster) > 60  # the clip is black (16) for its first second
    assert not list(out.glob(".poster-*"))  # the other candidates are gone


def test_the_ladders_own_run_measures_the_candidates(
    sample: Callable[[str], Path],
    encode_settings: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No second ffmpeg for the poster: the encode printed every candidate's luma and blur next
    to them — here from a work folder whose path needs escaping inside the filter graph."""
    calls: list[Path] = []

    async def second_ffmpeg(folder: Path, ffmpeg: str) -> list[Candidate]:
        calls.append(folder)
        raise AssertionError("the poster needed its own ffmpeg run: the encode wrote no stats")

    monkeypatch.setattr(poster_module, "analyze_all", second_ffmpeg)
    work = tmp_path / "wo:rk, it's [odd]; \\ really"
    out = tmp_path / "out"
    result = run_encode(sample("fade_scene"), encode_settings(temp_dir=work), out)
    assert not calls
    assert result.to_json()["thumbnail"] == f"ipfs://{result.cid}/thumbnail.jpg"
    assert mean_luma(out / "thumbnail.jpg") > 60  # chosen past the black opening and the fade
    assert not list(out.glob(".poster-*"))  # neither the candidates nor their stats published


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("fullhd", (1280, 720)),  # at most 1280 px on the long side
        ("portrait_rotated", (720, 1280)),  # rotation applied once: displayed portrait
        ("non_square", (854, 480)),  # 720x480 with SAR 32:27: the display aspect ratio
    ],
)
def test_poster_size_aspect_and_rotation(
    name: str,
    size: tuple[int, int],
    sample: Callable[[str], Path],
    encode_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    run_encode(sample(name), encode_settings(), out, rungs=("480p",))
    poster = out / "thumbnail.jpg"
    assert image_size(poster) == size
    assert mean_luma(poster) > 40  # not black
    # the same orientation as the video itself
    (width, height), rung = (
        size,
        probe(next((out / "480p").glob("seg_0.ts")), "-show_entries", "stream=width,height"),
    )
    video = next(s for s in rung["streams"] if "width" in s)  # type: ignore[attr-defined]
    assert (width > height) == (video["width"] > video["height"])


# --- I-frame playlists ---------------------------------------------------------------------


def test_iframe_playlists_are_listed_measured_and_land_on_idr_frames(
    fade_ladder: tuple[Path, EncodeResult], tmp_path: Path
) -> None:
    out, _ = fade_ladder
    master = load_master_playlist(out)
    assert [a["URI"] for a in master.iframe_streams] == ["360p/iframes.m3u8"]
    attrs = master.iframe_streams[0]
    assert attrs["CODECS"].startswith("avc1.") and "mp4a" not in attrs["CODECS"]
    assert attrs["RESOLUTION"] == "640x360" and int(attrs["BANDWIDTH"]) > 0
    text = (out / "360p" / "iframes.m3u8").read_text()
    assert "#EXT-X-I-FRAMES-ONLY" in text
    playlist = parse_media_playlist(text)
    media = load_media_playlist(out, "360p/index.m3u8")
    assert {s.uri for s in playlist.segments} <= {s.uri for s in media.segments}
    # the scene cut at 3 s is a keyframe inside the first segment: more I-frames than segments
    assert len(playlist.segments) > len(media.segments)
    assert abs(playlist.duration - media.duration) < 0.01
    for number, entry in enumerate(playlist.segments):
        assert entry.byterange is not None
        length, offset = entry.byterange
        assert offset % 188 == 0 and length % 188 == 0
        with (out / "360p" / entry.uri).open("rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        assert data[0] == 0x47
        piece = tmp_path / f"range-{number}.ts"
        piece.write_bytes(data)
        frames = probe(
            piece, "-select_streams", "v:0", "-show_entries", "frame=key_frame,pict_type"
        )["frames"]
        assert frames, f"range {number} decodes to no frame"
        first = frames[0]  # type: ignore[index]
        assert (first["key_frame"], first["pict_type"]) == (1, "I")
    report = validate(out, 8.0)
    assert report.ok, format_report(report)


def test_validator_rejects_a_byte_range_off_the_idr(
    fade_ladder: tuple[Path, EncodeResult], tmp_path: Path
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(fade_ladder[0], folder)
    playlist = folder / "360p" / "iframes.m3u8"
    text = playlist.read_text()
    length, offset = (int(v) for v in re.search(r"BYTERANGE:(\d+)@(\d+)", text).groups())  # type: ignore[union-attr]
    playlist.write_text(text.replace(f"{length}@{offset}", f"{length}@{offset + 188 * 40}", 1))
    report = validate(folder, 8.0)
    assert {v.check for v in report.violations} == {2}, format_report(report)
    assert "IDR" in report.violations[0].message or "video frame" in report.violations[0].message
    playlist.write_text(text.replace(f"{length}@{offset}", f"{length}@{offset + 5}", 1))
    report = validate(folder, 8.0)
    assert any("TS packets" in v.message for v in report.violations), format_report(report)


# --- storyboard ----------------------------------------------------------------------------


def test_storyboard_cues_cover_the_video_and_point_inside_the_sprite(
    fade_ladder: tuple[Path, EncodeResult],
) -> None:
    out, result = fade_ladder
    assert result.to_json()["storyboard"] == f"ipfs://{result.cid}/storyboard.vtt"
    cues = parse_storyboard((out / "storyboard.vtt").read_text())
    width, height = image_size(out / "storyboard.jpg")
    assert cues[0].start == 0
    for before, after in itertools.pairwise(cues):
        assert after.start == pytest.approx(before.end, abs=0.001)
    assert cues[-1].end == pytest.approx(result.duration, abs=0.1)
    for cue in cues:
        assert cue.image == "storyboard.jpg"
        assert cue.x >= 0 and cue.x + cue.width <= width
        assert cue.y >= 0 and cue.y + cue.height <= height
        assert (cue.width, cue.height) == (160, 90)
    assert len(cues) == 4  # one every 2 s


def test_validator_checks_the_storyboard(
    fade_ladder: tuple[Path, EncodeResult], tmp_path: Path
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(fade_ladder[0], folder)
    vtt = folder / "storyboard.vtt"
    good = vtt.read_text()
    vtt.write_text(good.replace("#xywh=480,0,160,90", "#xywh=600,0,160,90"))
    report = validate(folder, 8.0)
    assert [v.check for v in report.violations] == [6], format_report(report)
    assert "outside" in report.violations[0].message
    vtt.write_text(good.replace("00:00:08.000", "00:00:05.000"))
    assert {v.check for v in validate(folder, 8.0).violations} == {3}
    vtt.unlink()  # a sprite nobody references is an extra file
    report = validate(folder, 8.0)
    assert [(v.check, v.where) for v in report.violations] == [(6, "storyboard.jpg")]


def test_poster_must_be_a_jpeg(fade_ladder: tuple[Path, EncodeResult], tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(fade_ladder[0], folder)
    (folder / "thumbnail.jpg").write_bytes(b"not a picture")
    report = validate(folder, 8.0)
    assert [(v.check, v.where) for v in report.violations] == [(6, "thumbnail.jpg")]


# --- work done while ffmpeg ran ------------------------------------------------------------


def test_hashing_and_indexing_during_the_encode_give_what_a_fresh_read_gives(
    fade_ladder: tuple[Path, EncodeResult],
) -> None:
    out, result = fade_ladder
    assert str(import_folder(out)) == result.cid  # the CID from the early hashes is the real one
    for segment in sorted((out / "360p").glob("seg_*.ts")):
        facts = read_segment(segment)
        assert facts is not None
        assert facts.entry == import_file(segment)
        assert list(facts.idr_frames) == index_file(segment)
        assert facts.first_nal == 5  # every segment starts with an IDR


# --- turned off ----------------------------------------------------------------------------


def test_no_extras(
    sample: Callable[[str], Path], encode_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_encode(sample("landscape"), encode_settings(), out, extras=False)
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["360p/index.m3u8", "360p/seg_0.ts", "manifest.m3u8"]
    assert result.to_json()["thumbnail"] is None and result.to_json()["storyboard"] is None
    assert "I-FRAME" not in (out / "manifest.m3u8").read_text()
