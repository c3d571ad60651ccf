"""The plan stage (pure): media info + options → the renditions to encode.

Rules (docs/encoding.md §2–3):

* a rung's number is the **short side** of the displayed frame (rotation and SAR applied);
  the other side follows the display aspect ratio, rounded to an even number;
* never upscale: only rungs whose short side ≤ the source's; a source smaller than every
  requested rung gets one rung at its own (even) size, named after that size ("360p");
* shorts: the lowest requested rung only (480p by default), first 60 seconds;
* keep the source frame rate, halving anything above 60;
* keyframes (the ladder's ``[x264]`` table, chosen by measured quality per bit): an IDR forced
  at every segment boundary, identical on every rung, plus x264's scene-cut IDRs in between
  (``keyframes = "segment"``); or a fixed interval of forced IDRs (``keyframes = 2``). The
  HLS muxer cuts at the first keyframe at or after each multiple of the segment length, which
  is always the forced one, so extra scene-cut IDRs never move a boundary: rungs stay aligned;
* segments of 6 s (≤ 1 h), 12 s (≤ 4 h), longer segments (a multiple of
  :data:`GOP_SECONDS`) beyond so no playlist exceeds 2000 segments;
* extras (poster, storyboard; :mod:`.extras`) unless the job turns them off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from speak_encoder.pipeline.extras import ExtrasPlan, plan_extras
from speak_encoder.pipeline.ladder import KEYFRAMES_AT_SEGMENTS, Ladder, RungSpec, X264Defaults
from speak_encoder.pipeline.probe import MediaInfo

#: The unit every segment length is a multiple of (seconds), and the forced-IDR interval of
#: hardware encoders (their scene-cut keyframes are off: see ``pipeline.ffmpeg``).
GOP_SECONDS = 2
#: Highest output frame rate; faster sources are halved until they fit.
MAX_FPS = 60
#: Length limit of shorts, in seconds.
SHORT_MAX_SECONDS = 60.0
#: Segment length per source duration (≤ seconds → segment seconds).
SEGMENT_RULES = ((3600.0, 6), (4 * 3600.0, 12))
#: Most segments a media playlist may have.
MAX_SEGMENTS = 2000


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    """What the job asks for. ``rungs`` None = the full ladder."""

    short: bool = False
    rungs: tuple[str, ...] | None = None
    #: Poster and storyboard (``encode --no-extras`` / ``OUTPUT_EXTRAS=false`` turn them off).
    extras: bool = True


@dataclass(frozen=True, slots=True)
class Rendition:
    name: str
    width: int
    height: int
    spec: RungSpec


@dataclass(frozen=True, slots=True)
class EncodePlan:
    renditions: tuple[Rendition, ...]  # highest first
    fps: Fraction
    segment_seconds: int
    duration: float  # seconds of output expected
    limit_seconds: float | None  # -t for the input (shorts), None = whole source
    video_index: int
    audio_index: int | None  # None = generate a silent track
    tonemap: bool  # HDR → SDR
    source_fps: Fraction
    #: Seconds between forced IDRs; None = at every segment boundary (and nowhere else).
    keyframe_interval: int | None = None
    #: x264 keyframe/tuning defaults of the ladder (scene-cut threshold, AQ, psy, tune).
    x264: X264Defaults = field(default_factory=X264Defaults)
    #: Poster + storyboard branches of the same decode; None = none.
    extras: ExtrasPlan | None = None
    input_format: str | None = None  # the source's demuxer (-f), checked by the probe

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.renditions]

    @property
    def keyframe_seconds(self) -> int:
        """Seconds between two forced IDRs (the longest GOP)."""
        return self.keyframe_interval or self.segment_seconds

    @property
    def gop_frames(self) -> int:
        """The longest GOP in frames (x264 ``keyint``)."""
        return gop_frames(self.fps, self.keyframe_seconds)


def even(value: Fraction | float) -> int:
    """Round to the nearest even integer, at least 2."""
    return max(2, 2 * round(Fraction(value) / 2))


def even_floor(value: Fraction | float) -> int:
    """Round down to an even integer, at least 2 (a source's own size: never upscale)."""
    return max(2, 2 * math.floor(Fraction(value) / 2))


def output_fps(source: Fraction) -> Fraction:
    fps = source
    while fps > MAX_FPS:
        fps /= 2
    return fps


def gop_frames(fps: Fraction, seconds: int = GOP_SECONDS) -> int:
    return max(1, round(fps * seconds))


def segment_seconds(duration: float) -> int:
    for limit, seconds in SEGMENT_RULES:
        if duration <= limit:
            return seconds
    needed = duration / MAX_SEGMENTS
    return max(SEGMENT_RULES[-1][1], GOP_SECONDS * math.ceil(needed / GOP_SECONDS))


def frame_size(display: tuple[Fraction, Fraction], short_side: int) -> tuple[int, int]:
    """Output size for a rung whose short side is ``short_side`` (aspect kept, even)."""
    width, height = display
    if width >= height:
        return even(short_side * width / height), short_side
    return short_side, even(short_side * height / width)


def choose_rungs(info: MediaInfo, requested: tuple[RungSpec, ...]) -> tuple[Rendition, ...]:
    display = info.video.display_size
    source_short = min(display)
    fitting = [r for r in requested if r.height <= source_short]
    if fitting:
        return tuple(Rendition(r.name, *frame_size(display, r.height), spec=r) for r in fitting)
    # Smaller than every requested rung: one rendition at the source's own (even) size,
    # with the bitrate caps of the lowest requested rung.
    lowest = requested[-1]
    width, height = even_floor(display[0]), even_floor(display[1])
    return (Rendition(f"{min(width, height)}p", width, height, spec=lowest),)


def plan_encode(info: MediaInfo, options: EncodeOptions, ladder: Ladder) -> EncodePlan:
    requested = ladder.select(list(options.rungs)) if options.rungs else ladder.rungs
    if options.short:
        requested = requested[-1:]
    # The video's own length when known: audio running past the picture is not video to make.
    length = min(info.video.duration or info.duration, info.duration)
    duration = min(length, SHORT_MAX_SECONDS) if options.short else length
    fps = output_fps(info.video.fps)
    segment = segment_seconds(duration)
    keyframes = ladder.x264.keyframes
    # A fixed interval must divide the segment length (every segment starts on a forced IDR).
    interval = None if keyframes == KEYFRAMES_AT_SEGMENTS else math.gcd(int(keyframes), segment)
    return EncodePlan(
        renditions=choose_rungs(info, requested),
        fps=fps,
        segment_seconds=segment,
        duration=duration,
        limit_seconds=SHORT_MAX_SECONDS if options.short else None,
        video_index=info.video.index,
        audio_index=info.audio.index if info.audio else None,
        tonemap=info.video.is_hdr,
        source_fps=info.video.fps,
        keyframe_interval=interval,
        x264=ladder.x264,
        extras=plan_extras(duration, fps, info.video.display_size) if options.extras else None,
        input_format=info.demuxer,
    )


__all__ = [
    "GOP_SECONDS",
    "MAX_FPS",
    "MAX_SEGMENTS",
    "SEGMENT_RULES",
    "SHORT_MAX_SECONDS",
    "EncodeOptions",
    "EncodePlan",
    "Rendition",
    "choose_rungs",
    "even",
    "even_floor",
    "frame_size",
    "gop_frames",
    "output_fps",
    "plan_encode",
    "segment_seconds",
]
