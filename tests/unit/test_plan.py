"""The planner as data: docs/encoding.md §2–3."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest

from speak_encoder.errors import ConfigError
from speak_encoder.pipeline.ladder import load_ladder
from speak_encoder.pipeline.plan import (
    EncodeOptions,
    even,
    gop_frames,
    output_fps,
    plan_encode,
    segment_seconds,
)
from speak_encoder.pipeline.probe import AudioStream, MediaInfo, VideoStream

LADDER = load_ladder()


def media(
    width: int,
    height: int,
    *,
    sar: Fraction = Fraction(1),
    rotation: int = 0,
    fps: Fraction = Fraction(30),
    duration: float = 10.0,
    audio: bool = True,
    transfer: str = "bt709",
) -> MediaInfo:
    return MediaInfo(
        format_name="mov,mp4",
        duration=duration,
        size=1000,
        video=VideoStream(0, "h264", width, height, sar, rotation, fps, "yuv420p", 8, transfer, ""),
        audio=AudioStream(1, "aac", 2, 48000) if audio else None,
        audio_streams=1 if audio else 0,
        other_streams=0,
    )


def sizes(info: MediaInfo, **options: object) -> list[tuple[str, int, int]]:
    plan = plan_encode(info, EncodeOptions(**options), LADDER)  # type: ignore[arg-type]
    return [(r.name, r.width, r.height) for r in plan.renditions]


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        # landscape 16:9: the usual ladder
        (media(1920, 1080), [("1080p", 1920, 1080), ("720p", 1280, 720), ("480p", 854, 480)]),
        # portrait phone video: the short side is the rung (not 608x1080)
        (media(1080, 1920), [("1080p", 1080, 1920), ("720p", 720, 1280), ("480p", 480, 854)]),
        # coded landscape + rotation metadata = portrait on screen
        (media(1920, 1080, rotation=90), [("1080p", 1080, 1920), ("720p", 720, 1280),
                                          ("480p", 480, 854)]),
        (media(1920, 1080, rotation=180), [("1080p", 1920, 1080), ("720p", 1280, 720),
                                           ("480p", 854, 480)]),
        # never upscale: a 720p source has no 1080p rung
        (media(1280, 720), [("720p", 1280, 720), ("480p", 854, 480)]),
        # 4K gets the ladder, not a 2160p rung
        (media(3840, 2160), [("1080p", 1920, 1080), ("720p", 1280, 720), ("480p", 854, 480)]),
        # non-square pixels: 720x480 SAR 32:27 is 853.3x480 on screen
        (media(720, 480, sar=Fraction(32, 27)), [("480p", 854, 480)]),
        # anamorphic 1440x1080 with SAR 4:3 is 1920x1080 on screen
        (media(1440, 1080, sar=Fraction(4, 3)), [("1080p", 1920, 1080), ("720p", 1280, 720),
                                                 ("480p", 854, 480)]),
        # 4:3 and ultra-wide
        (media(1440, 1080), [("1080p", 1440, 1080), ("720p", 960, 720), ("480p", 640, 480)]),
        (media(2560, 1080), [("1080p", 2560, 1080), ("720p", 1706, 720), ("480p", 1138, 480)]),
        # below 480p: one rung at its own even size, never upscaled
        (media(853, 479), [("478p", 852, 478)]),
        (media(640, 360), [("360p", 640, 360)]),
        (media(1, 1), [("2p", 2, 2)]),
        (media(360, 640), [("360p", 360, 640)]),
        # 1 px short of a rung: that rung is skipped
        (media(1920, 1078), [("720p", 1282, 720), ("480p", 854, 480)]),
    ],
)  # fmt: skip
def test_rung_sizes(info: MediaInfo, expected: list[tuple[str, int, int]]) -> None:
    assert sizes(info) == expected


def test_every_size_is_even() -> None:
    for width in range(2, 2000, 37):
        for height in range(2, 1200, 41):
            for _, w, h in sizes(media(width, height)):
                assert w % 2 == 0 and h % 2 == 0 and w >= 2 and h >= 2


def test_short_is_480p_and_60_seconds() -> None:
    plan = plan_encode(media(1920, 1080, duration=300), EncodeOptions(short=True), LADDER)
    assert [(r.name, r.width, r.height) for r in plan.renditions] == [("480p", 854, 480)]
    assert plan.duration == 60 and plan.limit_seconds == 60
    short_clip = plan_encode(media(1080, 1920, duration=12), EncodeOptions(short=True), LADDER)
    assert short_clip.duration == 12 and short_clip.renditions[0].width == 480


def test_explicit_rungs_keep_ladder_order_and_refuse_unknown() -> None:
    assert sizes(media(1920, 1080), rungs=("480p", "1080p")) == [
        ("1080p", 1920, 1080),
        ("480p", 854, 480),
    ]
    with pytest.raises(ConfigError, match="unknown rung"):
        sizes(media(1920, 1080), rungs=("4k",))


@pytest.mark.parametrize(
    ("fps", "out", "gop"),
    [
        (Fraction(30), Fraction(30), 60),
        (Fraction(30000, 1001), Fraction(30000, 1001), 60),
        (Fraction(25), Fraction(25), 50),
        (Fraction(24000, 1001), Fraction(24000, 1001), 48),
        (Fraction(60), Fraction(60), 120),
        (Fraction(120), Fraction(60), 120),
        (Fraction(240), Fraction(60), 120),
        (Fraction(100), Fraction(50), 100),
        (Fraction(90), Fraction(45), 90),
        (Fraction(1), Fraction(1), 2),
    ],
)
def test_frame_rate_and_gop(fps: Fraction, out: Fraction, gop: int) -> None:
    assert output_fps(fps) == out
    assert gop_frames(out) == gop
    plan = plan_encode(media(1280, 720, fps=fps), EncodeOptions(), LADDER)
    # The built-in ladder forces an IDR at every segment boundary (6 s): the GOP is a segment.
    assert plan.fps == out and plan.keyframe_seconds == 6 and plan.gop_frames == gop_frames(out, 6)
    fixed = dataclasses.replace(LADDER, x264=dataclasses.replace(LADDER.x264, keyframes=2))
    two = plan_encode(media(1280, 720, fps=fps), EncodeOptions(), fixed)
    assert two.keyframe_seconds == 2 and two.gop_frames == gop


@pytest.mark.parametrize(
    ("interval", "duration", "expected"), [(4, 600, 2), (3, 600, 3), (5, 5000, 1), (12, 5000, 12)]
)
def test_a_fixed_keyframe_interval_divides_the_segment(
    interval: int, duration: float, expected: int
) -> None:
    ladder = dataclasses.replace(LADDER, x264=dataclasses.replace(LADDER.x264, keyframes=interval))
    plan = plan_encode(media(1280, 720, duration=duration), EncodeOptions(), ladder)
    assert plan.keyframe_seconds == expected and plan.segment_seconds % expected == 0


def test_keyframes_follow_a_changed_segment_length() -> None:
    plan = plan_encode(media(1280, 720), EncodeOptions(), LADDER)
    assert dataclasses.replace(plan, segment_seconds=2).keyframe_seconds == 2


def test_extras_are_planned_unless_turned_off() -> None:
    plan = plan_encode(media(1920, 1080, duration=600), EncodeOptions(), LADDER)
    assert plan.extras is not None
    assert plan.extras.poster.frames[0] == 0 and len(plan.extras.poster.frames) == 6
    assert max(plan.extras.poster.frames) <= 60 * 30  # the first 10 % of 600 s
    board = plan.extras.storyboard
    assert board.count * board.interval >= 600 and board.count <= 100
    assert plan_encode(media(1920, 1080), EncodeOptions(extras=False), LADDER).extras is None


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [(0.4, 6), (600, 6), (3600, 6), (3601, 12), (4 * 3600, 12), (4 * 3600 + 1, 12),
     (8 * 3600, 16), (20 * 3600, 36)],
)  # fmt: skip
def test_segment_length_keeps_playlists_under_2000(duration: float, seconds: int) -> None:
    assert segment_seconds(duration) == seconds
    assert seconds % 2 == 0 and duration / seconds <= 2000


def test_audio_and_hdr_decisions() -> None:
    silent = plan_encode(media(640, 360, audio=False), EncodeOptions(), LADDER)
    assert silent.audio_index is None
    hdr = plan_encode(media(1920, 1080, transfer="smpte2084"), EncodeOptions(), LADDER)
    assert hdr.tonemap and hdr.audio_index == 1


def test_even_rounding() -> None:
    assert [even(x) for x in (0, 1, 2, 3, 853.3, 1706.66)] == [2, 2, 2, 4, 854, 1706]
