"""The scrubbing-preview WebVTT: one cue per storyboard thumbnail, ``#xywh=`` into the sprite.

The format hls.js / video.js / Vidstack thumbnail plugins read::

    WEBVTT

    00:00:00.000 --> 00:00:02.000
    storyboard.jpg#xywh=0,0,160,90

    00:00:02.000 --> 00:00:04.000
    storyboard.jpg#xywh=160,0,160,90

Cues follow each other without gaps from 0 to the encoded duration (the last one ends there).
:func:`parse_storyboard` reads such a file back (the validator and tests use it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from speak_encoder.errors import EncodeError
from speak_encoder.pipeline.extras import (
    STORYBOARD_IMAGE,
    STORYBOARD_THUMB_GLOB,
    STORYBOARD_THUMB_PATTERN,
    StoryboardPlan,
)
from speak_encoder.proc import run_capture

#: JPEG quality of the sprite (mjpeg ``-q:v``) and the time its tiling may take (seconds).
SPRITE_JPEG_QUALITY = 4
SPRITE_TIMEOUT_S = 60.0
#: Largest storyboard.vtt accepted when reading one (100 cues are ~6 KB).
MAX_VTT_BYTES = 1024 * 1024

_TIME = r"(\d{2,}):(\d{2}):(\d{2})\.(\d{3})"
_CUE_TIMES = re.compile(rf"^{_TIME} --> {_TIME}$")
_TARGET = re.compile(r"^([A-Za-z0-9._-]+)#xywh=(\d+),(\d+),(\d+),(\d+)$")


@dataclass(frozen=True, slots=True)
class Cue:
    start: float
    end: float
    image: str
    x: int
    y: int
    width: int
    height: int


def _timestamp(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def storyboard_cues(
    plan: StoryboardPlan, duration: float, available: int | None = None
) -> list[Cue]:
    """Cues of the thumbnails that fall within ``duration`` s (at least one); ``available`` =
    how many thumbnails the sprite really holds (the last cue then runs to the end)."""
    cues = []
    for index in range(max(1, min(plan.count, available or plan.count))):
        start = index * plan.interval
        if index and start >= duration:
            break
        row, column = divmod(index, plan.columns)
        cues.append(
            Cue(start, start + plan.interval, STORYBOARD_IMAGE, column * plan.tile_width,
                row * plan.tile_height, plan.tile_width, plan.tile_height)
        )  # fmt: skip
    last = cues[-1]
    cues[-1] = Cue(last.start, max(duration, last.start + 0.001), last.image, last.x, last.y,
                   last.width, last.height)  # fmt: skip
    return cues


def thumbnail_paths(folder: Path) -> list[Path]:
    def index(path: Path) -> int:
        digits = path.name.removeprefix(".storyboard-").removesuffix(".jpg")
        return int(digits) if digits.isdigit() else 1 << 30

    return sorted(folder.glob(STORYBOARD_THUMB_GLOB), key=index)


async def make_sprite(folder: Path, plan: StoryboardPlan, ffmpeg: str) -> int:
    """Tile the thumbnails ffmpeg wrote into ``storyboard.jpg``; returns how many it holds.

    One small ffmpeg run over ≤ 100 JPEGs of ≤ 160 px (the source is not read again); the
    thumbnails are deleted afterwards. 0 = no thumbnail, no sprite.
    """
    thumbs = thumbnail_paths(folder)
    if not thumbs:
        return 0
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    argv += ["-f", "image2", "-start_number", "0", "-i", str(folder / STORYBOARD_THUMB_PATTERN)]
    argv += ["-vf", f"tile={plan.columns}x{plan.rows}"]
    argv += ["-q:v", str(SPRITE_JPEG_QUALITY), "-frames:v", "1", "-update", "1"]
    argv += ["-f", "image2", str(folder / STORYBOARD_IMAGE)]
    try:
        done = await run_capture(argv, timeout=SPRITE_TIMEOUT_S)
    except TimeoutError:
        raise EncodeError(
            f"tiling the storyboard took longer than {SPRITE_TIMEOUT_S:g} s"
        ) from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise EncodeError(f"tiling the storyboard failed: {' '.join(tail) or 'no output'}")
    for thumb in thumbs:
        thumb.unlink(missing_ok=True)
    return min(len(thumbs), plan.count)


def format_storyboard(cues: list[Cue]) -> str:
    lines = ["WEBVTT", ""]
    for cue in cues:
        lines.append(f"{_timestamp(cue.start)} --> {_timestamp(cue.end)}")
        lines.append(f"{cue.image}#xywh={cue.x},{cue.y},{cue.width},{cue.height}")
        lines.append("")
    return "\n".join(lines)


class StoryboardError(ValueError):
    """The text is not a storyboard WebVTT this encoder would write."""


def _seconds(match: tuple[str, ...]) -> float:
    hours, minutes, seconds, millis = (int(part) for part in match)
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def parse_storyboard(text: str) -> list[Cue]:
    """Cues of a storyboard WebVTT; :class:`StoryboardError` on anything else."""
    lines = [line.strip() for line in text.removeprefix("\ufeff").splitlines()]
    if not lines or not lines[0].startswith("WEBVTT"):
        raise StoryboardError("does not start with WEBVTT")
    cues: list[Cue] = []
    index = 1
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        times = _CUE_TIMES.match(line)
        if times is None:
            raise StoryboardError(f"line {index}: expected a cue timing, found {line[:60]!r}")
        target = _TARGET.match(lines[index]) if index < len(lines) else None
        if target is None:
            raise StoryboardError(f"line {index + 1}: expected IMAGE#xywh=x,y,w,h")
        index += 1
        groups = times.groups()
        x, y, width, height = (int(v) for v in target.groups()[1:])
        cues.append(Cue(_seconds(groups[:4]), _seconds(groups[4:]), target.group(1), x, y,
                        width, height))  # fmt: skip
    if not cues:
        raise StoryboardError("has no cues")
    return cues


def check_coverage(cues: list[Cue], duration: float) -> list[str]:
    """Problems of the cue timing: gaps, overlaps, not covering 0 … ``duration``."""
    problems = []
    position = 0.0
    for number, cue in enumerate(cues, 1):
        if abs(cue.start - position) > 0.002:
            problems.append(f"cue {number} starts at {cue.start:.3f} s, expected {position:.3f} s")
        if cue.end <= cue.start:
            problems.append(f"cue {number} ends before it starts")
        position = cue.end
    if abs(position - duration) > max(0.5, 0.01 * duration):
        problems.append(f"the cues cover {position:.3f} s of the {duration:.3f} s video")
    return problems


def check_cues(cues: list[Cue], sprite: tuple[int, int]) -> list[str]:
    """Problems of ``cues`` against the sprite they point into (empty = none)."""
    problems = []
    width, height = sprite
    for number, cue in enumerate(cues, 1):
        if (
            cue.width <= 0
            or cue.height <= 0
            or cue.x + cue.width > width
            or (cue.y + cue.height > height)
        ):
            problems.append(
                f"cue {number} points at {cue.x},{cue.y},{cue.width},{cue.height} outside the "
                f"{width}x{height} sprite"
            )
    return problems


__all__ = [
    "Cue",
    "StoryboardError",
    "check_coverage",
    "check_cues",
    "format_storyboard",
    "make_sprite",
    "parse_storyboard",
    "storyboard_cues",
]
