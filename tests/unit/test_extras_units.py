"""The pure parts of the extras: planning, WebVTT, byte ranges, I-frame timing, poster choice."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from speak_encoder.pipeline.extras import fit_long_side, plan_extras, poster_frames
from speak_encoder.pipeline.iframes import IdrFrame, entries_for, iframe_playlist
from speak_encoder.pipeline.jpeg import JpegError, jpeg_size
from speak_encoder.pipeline.m3u8 import (
    PlaylistSyntaxError,
    Segment,
    format_media_playlist,
    parse_media_playlist,
)
from speak_encoder.pipeline.poster import Candidate, choose, parse_analysis, parse_frames
from speak_encoder.pipeline.storyboard import (
    StoryboardError,
    check_coverage,
    check_cues,
    format_storyboard,
    parse_storyboard,
    storyboard_cues,
)

F30 = Fraction(30)


@pytest.mark.parametrize(
    ("display", "longest", "size"),
    [
        ((Fraction(1920), Fraction(1080)), 1280, (1280, 720)),
        ((Fraction(1080), Fraction(1920)), 1280, (720, 1280)),
        ((Fraction(640), Fraction(360)), 1280, (640, 360)),  # never upscaled
        ((Fraction(2560, 3), Fraction(480)), 160, (160, 90)),
        ((Fraction(2), Fraction(2)), 160, (2, 2)),
    ],
)
def test_fit_long_side_keeps_the_display_aspect(
    display: tuple[Fraction, Fraction], longest: int, size: tuple[int, int]
) -> None:
    assert fit_long_side(display, longest) == size


def test_poster_candidates_lie_in_the_first_tenth() -> None:
    frames = poster_frames(600.0, F30)
    assert frames[0] == 0 and len(frames) == 6 and max(frames) <= 60 * 30
    assert poster_frames(0.2, F30) == (0, 1, 2, 3, 4, 5)[: len(poster_frames(0.2, F30))]
    assert all(f < 6 for f in poster_frames(0.2, F30))  # a 6-frame clip: within its frames


@pytest.mark.parametrize(
    ("duration", "interval", "count", "grid"),
    [(8.0, 2.0, 4, (4, 1)), (600.0, 6.0, 100, (10, 10)), (3600.0, 36.0, 100, (10, 10)),
     (25.0, 2.0, 13, (10, 2)), (0.5, 2.0, 1, (1, 1))],
)  # fmt: skip
def test_storyboard_stays_small(
    duration: float, interval: float, count: int, grid: tuple[int, int]
) -> None:
    board = plan_extras(duration, F30, (Fraction(1920), Fraction(1080))).storyboard
    assert board.interval == interval and board.count == count
    assert (board.columns, board.rows) == grid
    assert board.sprite_size == (grid[0] * 160, grid[1] * 90)


def test_storyboard_cues_round_trip_and_cover_the_duration() -> None:
    board = plan_extras(25.0, F30, (Fraction(1920), Fraction(1080))).storyboard
    cues = storyboard_cues(board, 25.0)
    assert len(cues) == 13 and cues[-1].end == 25.0 and (cues[-1].x, cues[-1].y) == (320, 90)
    parsed = parse_storyboard(format_storyboard(cues))
    assert [(c.start, c.end, c.x, c.y) for c in parsed] == [
        (c.start, c.end, c.x, c.y) for c in cues
    ]
    assert check_coverage(parsed, 25.0) == [] and check_cues(parsed, board.sprite_size) == []
    assert check_cues(parsed, (480, 180))  # a smaller sprite: cues point outside it
    assert check_coverage(parsed, 40.0)
    fewer = storyboard_cues(board, 25.0, available=10)  # the sprite holds 10: last one runs on
    assert len(fewer) == 10 and fewer[-1].end == 25.0 and check_coverage(fewer, 25.0) == []


@pytest.mark.parametrize(
    "text",
    ["", "WEBVTT\n\nnot a timing\n", "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nx.jpg\n",
     "WEBVTT\n"],
)  # fmt: skip
def test_bad_storyboards(text: str) -> None:
    with pytest.raises(StoryboardError):
        parse_storyboard(text)


def test_byteranges_parse_resolve_and_write_back() -> None:
    text = (
        "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-TARGETDURATION:6\n#EXT-X-I-FRAMES-ONLY\n"
        "#EXTINF:2.0,\n#EXT-X-BYTERANGE:376@0\nseg_0.ts\n"
        "#EXTINF:4.0,\n#EXT-X-BYTERANGE:564\nseg_0.ts\n#EXT-X-ENDLIST\n"
    )
    playlist = parse_media_playlist(text)
    assert playlist.iframes_only
    assert [s.byterange for s in playlist.segments] == [(376, 0), (564, 376)]
    again = parse_media_playlist(format_media_playlist(playlist))
    assert again == playlist
    with pytest.raises(PlaylistSyntaxError, match="BYTERANGE"):
        parse_media_playlist(text.replace("376@0", "x@0"))
    with pytest.raises(PlaylistSyntaxError, match="offset"):
        parse_media_playlist(text.replace("376@0", "376"))


def test_iframe_entries_take_their_time_from_the_pts() -> None:
    segments = [Segment("seg_0.ts", 6.0), Segment("seg_1.ts", 4.5)]
    base = 126_000  # a TS segment starts at 1.4 s
    frames = [
        [IdrFrame(0, 3760, base), IdrFrame(90_000, 1880, base + 3 * 90_000)],  # a scene cut at 3 s
        [IdrFrame(0, 3008, base + 6 * 90_000)],
    ]
    entries = entries_for(segments, frames)
    assert [(e.uri, e.seconds) for e in entries] == [
        ("seg_0.ts", 0.0), ("seg_0.ts", 3.0), ("seg_1.ts", 6.0)
    ]  # fmt: skip
    playlist = iframe_playlist(entries, 10.5)
    assert [s.duration for s in playlist.segments] == [3.0, 3.0, 4.5]
    assert [s.byterange for s in playlist.segments] == [(3760, 0), (1880, 90_000), (3008, 0)]
    assert playlist.target_duration == 5 and playlist.iframes_only and playlist.endlist


def test_jpeg_size_from_the_frame_header(tmp_path: Path) -> None:
    sof = b"\xff\xc0\x00\x11\x08\x00\x5a\x00\xa0\x03" + b"\x00" * 9
    app0 = b"\xff\xe0\x00\x10" + b"JFIF\x00" + b"\x00" * 9
    assert jpeg_size(b"\xff\xd8" + app0 + sof) == (160, 90)
    for bad in (b"GIF89a", b"\xff\xd8\xff\xda\x00\x02"):
        with pytest.raises(JpegError):
            jpeg_size(bad)


def candidate(name: str, luma: float, low: float, high: float, blur: float) -> Candidate:
    return Candidate(Path(f".poster-{name}.jpg"), luma, low, high, blur)


def test_poster_choice() -> None:
    black = candidate("0", 16.0, 16.0, 16.0, 0.5)
    fade = candidate("1", 30.0, 20.0, 45.0, 2.0)
    soft = candidate("2", 120.0, 40.0, 200.0, 9.0)
    sharp = candidate("3", 110.0, 30.0, 210.0, 4.0)
    white = candidate("4", 240.0, 230.0, 250.0, 1.0)
    assert choose([black, fade, soft, sharp, white]) == sharp
    assert choose([black, fade]) == fade  # nothing usable: the most contrast
    assert choose([]) is None
    parsed = parse_analysis(
        "frame:0 pts:0\nlavfi.signalstats.YLOW=31\nlavfi.signalstats.YAVG=128.5\n"
        "lavfi.signalstats.YHIGH=224\nlavfi.blur=4.73\n",
        Path(".poster-0.jpg"),
    )
    assert parsed == Candidate(Path(".poster-0.jpg"), 128.5, 31.0, 224.0, 4.73)
    assert parse_analysis("lavfi.blur=1\n", Path("x")) is None
    text = "".join(
        f"frame:{i} pts:{i}\nlavfi.signalstats.YLOW=20\nlavfi.signalstats.YAVG={y}\n"
        f"lavfi.signalstats.YHIGH=200\nlavfi.blur={b}\n"
        for i, (y, b) in enumerate([(16, 1.0), (120, 3.0)])
    )
    paths = [Path(".poster-0.jpg"), Path(".poster-1.jpg")]
    assert [(c.path, c.luma, c.blur) for c in parse_frames(text, paths)] == [
        (paths[0], 16.0, 1.0), (paths[1], 120.0, 3.0)
    ]  # fmt: skip


def test_each_jpeg_encoder_of_the_extras_runs_on_one_thread() -> None:
    """mjpeg's automatic slice threads cost ~11 MB of RSS for a dozen small pictures."""
    from speak_encoder.pipeline.ffmpeg import extras_outputs

    extras = plan_extras(60.0, F30, (Fraction(1920), Fraction(1080)))
    args = extras_outputs(extras, Path("/w/out"), 1024)
    encoders = [i for i, arg in enumerate(args) if arg == "mjpeg"]
    outputs = [i for i, arg in enumerate(args) if arg == "image2"]
    assert len(encoders) == len(outputs) == 2
    for start, end in zip(encoders, outputs, strict=True):
        options = args[start:end]
        assert options[options.index("-threads") + 1] == "1"
