"""Choose the poster among the candidate frames the ladder's ffmpeg wrote (see :mod:`.extras`).

The candidates (``.poster-N.jpg``, ≤ 1280 px, a few hundred KB each) were measured by that same
ffmpeg run, in the poster branch, on each frame just before its JPEG encoder: ``signalstats``
(mean luma ``YAVG``, the 10th/90th percentiles ``YLOW``/``YHIGH``) and ``blurdetect``
(``lavfi.blur``: higher = blurrier), printed to ``.poster-stats.txt`` — one ``frame:N`` block
per candidate N. Choosing the poster reads that file and runs nothing. Only when the file is
missing, unreadable or does not describe every candidate present (a folder encoded by an older
version, a run cut short) are the JPEGs measured by one small ffmpeg run of the same filters
over them — never over the source.

A frame is *usable* when it is neither black nor washed out and has some contrast (a fade is
dark or flat); the sharpest usable one wins. When none is usable (a video that is black
throughout), the one with the most contrast is kept: a poster always exists.

The winner is renamed to ``thumbnail.jpg``, the other candidates and the stats file are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from speak_encoder.pipeline.extras import (
    POSTER_CANDIDATE_GLOB,
    POSTER_CANDIDATE_PATTERN,
    POSTER_NAME,
    POSTER_STATS_NAME,
)
from speak_encoder.proc import run_capture

#: Usable poster: mean luma (0–255) within these bounds (16 is video black) …
POSTER_MIN_LUMA = 40.0
POSTER_MAX_LUMA = 225.0
#: … and at least this spread between the 10th and 90th luma percentiles.
POSTER_MIN_CONTRAST = 40.0
#: Seconds one candidate analysis may take, and bytes of its output kept (also the most of
#: the stats file read: ≤ 6 blocks of ~1 KB).
ANALYSIS_TIMEOUT_S = 30.0
ANALYSIS_MAX_OUTPUT = 64 * 1024

_NUMBER = re.compile(r"^lavfi\.(signalstats\.YAVG|signalstats\.YLOW|signalstats\.YHIGH|blur)=(.+)$")


@dataclass(frozen=True, slots=True)
class Candidate:
    path: Path
    luma: float
    low: float
    high: float
    blur: float

    @property
    def contrast(self) -> float:
        return self.high - self.low

    @property
    def usable(self) -> bool:
        return (
            POSTER_MIN_LUMA <= self.luma <= POSTER_MAX_LUMA and self.contrast >= POSTER_MIN_CONTRAST
        )


def candidate_index(path: Path) -> int:
    """N of ``.poster-N.jpg`` (order of the frames in the video)."""
    digits = path.name.removeprefix(".poster-").removesuffix(".jpg")
    return int(digits) if digits.isdigit() else 1 << 30


def candidate_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob(POSTER_CANDIDATE_GLOB), key=candidate_index)


def parse_analysis(text: str, path: Path) -> Candidate | None:
    """The candidate described by ffmpeg's ``metadata=print`` lines (None if incomplete)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _NUMBER.match(line.strip())
        if match is not None:
            with contextlib.suppress(ValueError):
                values[match.group(1)] = float(match.group(2))
    try:
        return Candidate(
            path,
            values["signalstats.YAVG"],
            values["signalstats.YLOW"],
            values["signalstats.YHIGH"],
            values["blur"],
        )
    except KeyError:
        return None


def parse_frames(text: str, paths: list[Path]) -> list[Candidate]:
    """Candidates from ffmpeg's ``metadata=print`` output over the numbered sequence."""
    blocks = re.split(r"(?m)^frame:", text)[1:]
    found = [parse_analysis(block, path) for block, path in zip(blocks, paths, strict=False)]
    return [c for c in found if c is not None]


def read_stats(folder: Path) -> list[Candidate] | None:
    """Every candidate in ``folder`` as the encode's poster branch measured it (blocking).

    None when the stats file is missing, unreadable, too large, or does not describe each
    candidate present — numbered 0, 1 … without a gap, block N (``frame:N``) complete for
    ``.poster-N.jpg`` (more blocks than files: a run stopped between measuring a frame and
    writing its JPEG; the files present are still described).
    """
    paths = candidate_paths(folder)
    if not paths:
        return []
    expected = [folder / (POSTER_CANDIDATE_PATTERN % n) for n in range(len(paths))]
    if paths != expected:
        return None
    try:
        with (folder / POSTER_STATS_NAME).open("rb") as handle:
            data = handle.read(ANALYSIS_MAX_OUTPUT + 1)
    except OSError:
        return None
    if len(data) > ANALYSIS_MAX_OUTPUT:
        return None
    text = data.decode("utf-8", "replace")
    numbers = [int(n) for n in re.findall(r"(?m)^frame:\s*(\d+)", text)]
    if numbers[: len(paths)] != list(range(len(paths))):
        return None
    found = parse_frames(text, paths)
    return found if len(found) == len(paths) else None


async def analyze_all(folder: Path, ffmpeg: str) -> list[Candidate]:
    """Luma and blur of every candidate: ONE small ffmpeg run over the numbered JPEGs.

    Run after the encode (never beside it: each ffmpeg process costs tens of MB of RSS, and
    memory is the point). A candidate ffmpeg cannot read is left out.
    """
    paths = candidate_paths(folder)
    if not paths:
        return []
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "image2"]
    argv += ["-start_number", "0", "-i", str(folder / POSTER_CANDIDATE_PATTERN)]
    argv += ["-vf", "signalstats,blurdetect,metadata=mode=print:file=-", "-f", "null", "-"]
    try:
        done = await run_capture(argv, timeout=ANALYSIS_TIMEOUT_S, max_output=ANALYSIS_MAX_OUTPUT)
    except TimeoutError:
        return []
    return parse_frames(done.stdout.decode("utf-8", "replace"), paths)


def choose(candidates: list[Candidate]) -> Candidate | None:
    """The sharpest usable candidate, else the one with the most contrast."""
    usable = [c for c in candidates if c.usable]
    if usable:
        return min(usable, key=lambda c: (c.blur, candidate_index(c.path)))
    return max(candidates, key=lambda c: (c.contrast, c.luma), default=None)


def keep(folder: Path, chosen: Path | None) -> Path | None:
    """Rename ``chosen`` to thumbnail.jpg and delete every other candidate, any partial one and
    the stats file (blocking): none of them may reach the published folder."""
    target = folder / POSTER_NAME
    for path in candidate_paths(folder):
        if chosen is not None and path == chosen:
            path.replace(target)
        else:
            path.unlink(missing_ok=True)
    for partial in folder.glob(POSTER_CANDIDATE_GLOB + ".tmp"):
        partial.unlink(missing_ok=True)
    (folder / POSTER_STATS_NAME).unlink(missing_ok=True)
    return target if target.exists() else None


async def make_poster(folder: Path, ffmpeg: str) -> Path | None:
    """Pick the poster among the candidates in ``folder``; the others are deleted.

    From the encode's own measurements (:func:`read_stats`); ``ffmpeg`` runs only when those do
    not describe every candidate (:func:`analyze_all`).
    """
    candidates = await asyncio.to_thread(read_stats, folder)
    if candidates is None:
        candidates = await analyze_all(folder, ffmpeg)
    chosen = choose(candidates)
    return await asyncio.to_thread(keep, folder, chosen.path if chosen else None)


__all__ = [
    "Candidate",
    "analyze_all",
    "choose",
    "make_poster",
    "parse_analysis",
    "parse_frames",
    "read_stats",
]
