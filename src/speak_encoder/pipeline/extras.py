"""What front ends show besides the ladder: a poster and scrubbing previews (pure planning).

Both come out of the ladder's own decode (docs/encoding.md §4: the source is decoded once). The one
ffmpeg process gets two more branches after its ``split``, each cheap because it *selects* a
handful of frames before it scales anything::

    [0:v] … fps ─ split ─┬─ rungs …
                         ├─ select(candidate frames) ─ scale ─ signalstats ─ blurdetect ─
                         │      metadata=print ─► .poster-stats.txt (one block per frame)
                         │                     └► .poster-N.jpg                    (≤ 6)
                         └─ select(every K-th frame) ─ scale ─► .storyboard-N.jpg  (≤ 100)

The thumbnails are tiled into the sprite afterwards by a tiny ffmpeg run on those small JPEGs
(:mod:`speak_encoder.pipeline.storyboard`), not inside the encode: ffmpeg 5.1 writes no
``-progress`` report until every output has written its header, and a ``tile`` filter emits
its one frame only when the sprite is full — at the end of the video.

* **Poster** (``thumbnail.jpg``): a few candidate frames from the first 10 % of the video, at
  most :data:`POSTER_MAX_SIDE` px on the long side, the display aspect ratio (rotation is
  applied by ffmpeg before the graph). Each candidate's luma and blur are measured in the same
  branch, on the scaled frame just before its JPEG encoder, and printed to
  :data:`POSTER_STATS_NAME`; the sharpest one that is neither black nor a fade is kept
  (:mod:`speak_encoder.pipeline.poster`, no ffmpeg run of its own unless that file is missing
  or incomplete); frame 0 is always a candidate so a poster exists even when the source is
  shorter than announced.
* **Storyboard** (``storyboard.jpg`` + ``storyboard.vtt``): one thumbnail every
  :attr:`StoryboardPlan.interval` seconds, tiled :data:`STORYBOARD_COLUMNS` wide; the interval
  grows with the duration so the sprite never holds more than :data:`STORYBOARD_MAX_TILES`
  thumbnails (:mod:`speak_encoder.pipeline.storyboard` writes the WebVTT).

Memory: neither branch holds a frame (each selected frame is measured and encoded as it passes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

#: File names at the root of the output folder.
POSTER_NAME = "thumbnail.jpg"
STORYBOARD_IMAGE = "storyboard.jpg"
STORYBOARD_VTT = "storyboard.vtt"
#: Candidate poster frames written by ffmpeg, then replaced by the chosen one (``%d`` = 0, 1 …).
POSTER_CANDIDATE_PATTERN = ".poster-%d.jpg"
POSTER_CANDIDATE_GLOB = ".poster-*.jpg"
#: ``signalstats`` and ``blurdetect`` of every candidate, printed by the poster branch of the same
#: ffmpeg run (``metadata=mode=print``: one ``frame:N`` block per candidate N), read to choose the
#: poster, then deleted with the candidates.
POSTER_STATS_NAME = ".poster-stats.txt"
#: Storyboard thumbnails written by ffmpeg, tiled into STORYBOARD_IMAGE, then deleted.
STORYBOARD_THUMB_PATTERN = ".storyboard-%d.jpg"
STORYBOARD_THUMB_GLOB = ".storyboard-*.jpg"
#: Longest side of the poster, in pixels (never more than the source's own).
POSTER_MAX_SIDE = 1280
#: Candidates spread over the first POSTER_WINDOW of the video (plus frame 0).
POSTER_CANDIDATES = 5
POSTER_WINDOW = 0.10
#: …but never a window shorter than this (seconds, or the whole video if shorter): a short clip
#: that opens on a black second or a fade still gets candidates past it.
POSTER_MIN_WINDOW_S = 3.0
#: Longest side of one storyboard thumbnail (pixels).
STORYBOARD_TILE_SIDE = 160
#: Thumbnails per sprite row, and at most this many thumbnails (10 × 10 = 1600 × 900 px).
STORYBOARD_COLUMNS = 10
STORYBOARD_MAX_TILES = 100
#: Shortest interval between two storyboard thumbnails (seconds).
STORYBOARD_MIN_INTERVAL_S = 2.0


@dataclass(frozen=True, slots=True)
class PosterPlan:
    """Candidate frame numbers (after the ``fps`` filter, ascending) and the poster size."""

    frames: tuple[int, ...]
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class StoryboardPlan:
    """One thumbnail every ``every_frames`` frames, ``count`` of them, tiled in a grid."""

    every_frames: int
    fps: Fraction
    count: int
    columns: int
    rows: int
    tile_width: int
    tile_height: int

    @property
    def interval(self) -> float:
        """Seconds between two thumbnails (exact: a whole number of frames)."""
        return float(self.every_frames / self.fps)

    @property
    def sprite_size(self) -> tuple[int, int]:
        return self.columns * self.tile_width, self.rows * self.tile_height


@dataclass(frozen=True, slots=True)
class ExtrasPlan:
    poster: PosterPlan
    storyboard: StoryboardPlan


def _even(value: Fraction) -> int:
    return max(2, 2 * round(value / 2))


def fit_long_side(display: tuple[Fraction, Fraction], longest: int) -> tuple[int, int]:
    """Even size with the display aspect ratio and a long side of at most ``longest`` pixels
    (never larger than the display size itself)."""
    width, height = display
    scale = min(Fraction(1), Fraction(longest) / max(width, height))
    return _even(width * scale), _even(height * scale)


def poster_frames(duration: float, fps: Fraction) -> tuple[int, ...]:
    """Frame 0 and :data:`POSTER_CANDIDATES` frames spread over the first 10 % of the video."""
    last = max(0, math.floor(duration * fps) - 1)
    window = min(duration, max(POSTER_WINDOW * duration, POSTER_MIN_WINDOW_S))
    frames = {0}
    for k in range(1, POSTER_CANDIDATES + 1):
        seconds = window * k / (POSTER_CANDIDATES + 1)
        frames.add(min(last, round(seconds * fps)))
    return tuple(sorted(frames))


def plan_storyboard(
    duration: float, fps: Fraction, display: tuple[Fraction, Fraction]
) -> StoryboardPlan:
    interval = max(STORYBOARD_MIN_INTERVAL_S, duration / STORYBOARD_MAX_TILES)
    every = max(1, math.ceil(interval * fps))
    seconds = float(every / fps)
    count = max(1, min(STORYBOARD_MAX_TILES, math.ceil(duration / seconds)))
    columns = min(count, STORYBOARD_COLUMNS)
    width, height = fit_long_side(display, STORYBOARD_TILE_SIDE)
    return StoryboardPlan(
        every_frames=every,
        fps=fps,
        count=count,
        columns=columns,
        rows=math.ceil(count / columns),
        tile_width=width,
        tile_height=height,
    )


def plan_extras(duration: float, fps: Fraction, display: tuple[Fraction, Fraction]) -> ExtrasPlan:
    """Poster candidates and storyboard grid of a video of ``duration`` s at ``fps``."""
    width, height = fit_long_side(display, POSTER_MAX_SIDE)
    return ExtrasPlan(
        poster=PosterPlan(poster_frames(duration, fps), width, height),
        storyboard=plan_storyboard(duration, fps, display),
    )


__all__ = [
    "POSTER_NAME",
    "STORYBOARD_IMAGE",
    "STORYBOARD_VTT",
    "ExtrasPlan",
    "PosterPlan",
    "StoryboardPlan",
    "fit_long_side",
    "plan_extras",
]
