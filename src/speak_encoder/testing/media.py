"""Sample media made with ffmpeg's lavfi sources: the inputs of docs/encoding.md §7, tiny and fast.

Why this module is long: it is a catalogue: one table of small, independent sample recipes (most
of its length), each a few lines of lavfi arguments. One table reads better than several.

Used by the tests (generated once and cached), by ``make demo`` and by the benchmarks.
Every sample is a few seconds of small frames unless its point is to be long or large.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Args = list[str]

#: Quiet, non-interactive prefix of every generator command.
_BASE = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]


def _video(size: str = "640x360", rate: str = "30", seconds: float = 3.0) -> Args:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds:g}"]


def _tone(seconds: float = 3.0, rate: int = 44100, freq: int = 440) -> Args:
    return ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={rate}:duration={seconds:g}"]


_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
_AAC = ["-c:a", "aac", "-b:a", "96k"]


@dataclass(frozen=True)
class Sample:
    """A recipe: ``steps`` are ffmpeg argument lists; ``{out}``/``{tmp}`` are substituted."""

    name: str
    ext: str
    steps: tuple[Args, ...]
    post: Callable[[Path], None] | None = None
    note: str = ""


def _truncate_half(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2)


def _corrupt_middle(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.seek(size // 3)
        handle.write(bytes((i * 73 + 41) % 256 for i in range(min(64 * 1024, size // 4))))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _text(path: Path) -> None:
    path.write_text("This is not a video.\n" * 200, encoding="utf-8")


SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in [
        Sample("landscape", "mp4", ([*_video(), *_tone(), *_X264, *_AAC, "{out}"],)),
        Sample(
            "hd720",
            "mp4",
            ([*_video("1280x720", "30", 4), *_tone(4), *_X264, *_AAC, "{out}"],),
        ),
        Sample(
            "fullhd",
            "mp4",
            ([*_video("1920x1080", "30", 4), *_tone(4), *_X264, *_AAC, "{out}"],),
            note="1080p30 with audio",
        ),
        Sample(
            "demo",
            "mp4",
            ([*_video("1920x1080", "30", 12), *_tone(12), *_X264, *_AAC, "{out}"],),
            note="12 s of 1080p30 with audio: two segments on every rung",
        ),
        Sample(
            "portrait_rotated",
            "mp4",
            (
                [*_video("1280x720", "30", 3), *_tone(), *_X264, *_AAC, "{tmp}.mp4"],
                ["-i", "{tmp}.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=90", "{out}"],
            ),
            note="coded 1280x720 + rotation 90° → displayed 720x1280 (a phone video)",
        ),
        Sample(
            "fade_scene",
            "mp4",
            (
                [
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=640x360:rate=30:duration=3,fade=in:st=1:d=1[a];"
                    "smptehdbars=size=640x360:rate=30:duration=5[b];[a][b]concat=n=2:v=1:a=0",
                    *_tone(8),
                    *_X264,
                    *_AAC,
                    "{out}",
                ],
            ),
            note="8 s: black for 1 s, a fade-in, a scene cut at 3 s (mid-segment) to colour bars",
        ),
        Sample("no_audio", "mp4", ([*_video(), *_X264, "{out}"],)),
        Sample(
            "h264_10bit",
            "mp4",
            (
                [
                    *_video(),
                    *_tone(),
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-pix_fmt",
                    "yuv420p10le",
                    *_AAC,
                    "{out}",
                ],
            ),
        ),
        Sample(
            "hevc_hdr10",
            "mp4",
            (
                [
                    *_video("640x360", "25", 2),
                    *_tone(2),
                    "-c:v",
                    "libx265",
                    "-preset",
                    "ultrafast",
                    "-pix_fmt",
                    "yuv420p10le",
                    "-x265-params",
                    "log-level=error",
                    "-color_primaries",
                    "bt2020",
                    "-color_trc",
                    "smpte2084",
                    "-colorspace",
                    "bt2020nc",
                    "-tag:v",
                    "hvc1",
                    *_AAC,
                    "{out}",
                ],
            ),
            note="10-bit HEVC with PQ (HDR10) signalling",
        ),
        Sample(
            "odd_size",
            "mkv",
            (
                [
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc=size=853x479:rate=30:duration=3",
                    *_tone(),
                    "-c:v",
                    "ffv1",
                    "-pix_fmt",
                    "yuv444p",
                    *_AAC,
                    "{out}",
                ],
            ),
        ),
        Sample(
            "one_pixel",
            "mkv",
            (
                [
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc=size=16x16:rate=25:duration=2",
                    *_tone(2),
                    "-vf",
                    "scale=1:1",
                    "-c:v",
                    "ffv1",
                    "-pix_fmt",
                    "yuv444p",
                    *_AAC,
                    "{out}",
                ],
            ),
        ),
        Sample(
            "non_square",
            "mp4",
            (
                [
                    *_video("720x480", "30", 3),
                    *_tone(),
                    "-vf",
                    "setsar=32/27",
                    *_X264,
                    *_AAC,
                    "{out}",
                ],
            ),
            note="720x480 with SAR 32:27 → displayed 853x480",
        ),
        Sample(
            "vfr",
            "mkv",
            (
                [
                    *_video("640x360", "30", 4),
                    *_tone(4),
                    "-vf",
                    "select='not(between(n,30,59)*mod(n,3))',setpts=N/FRAME_RATE/TB",
                    "-fps_mode",
                    "vfr",
                    *_X264,
                    *_AAC,
                    "{out}",
                ],
            ),
            note="frames dropped irregularly: variable frame rate",
        ),
        Sample(
            "vp9",
            "webm",
            (
                [
                    *_video("480x270", "30", 2),
                    *_tone(2),
                    "-c:v",
                    "libvpx-vp9",
                    "-deadline",
                    "realtime",
                    "-cpu-used",
                    "8",
                    "-b:v",
                    "300k",
                    "-c:a",
                    "libopus",
                    "{out}",
                ],
            ),
        ),
        Sample(
            "av1",
            "mkv",
            (
                [
                    *_video("320x180", "24", 1),
                    *_tone(1),
                    "-c:v",
                    "libaom-av1",
                    "-cpu-used",
                    "8",
                    "-usage",
                    "realtime",
                    "-b:v",
                    "200k",
                    *_AAC,
                    "{out}",
                ],
            ),
        ),
        Sample(
            "prores",
            "mov",
            (
                [
                    *_video("320x180", "25", 1),
                    *_tone(1),
                    "-c:v",
                    "prores_ks",
                    "-profile:v",
                    "0",
                    "-c:a",
                    "pcm_s16le",
                    "{out}",
                ],
            ),
        ),
        Sample(
            "mpeg4_part2",
            "avi",
            (
                [
                    *_video("320x240", "25", 2),
                    *_tone(2),
                    "-c:v",
                    "mpeg4",
                    "-q:v",
                    "5",
                    "-c:a",
                    "mp3",
                    "{out}",
                ],
            ),
        ),
        Sample("audio_only", "m4a", ([*_tone(3), *_AAC, "{out}"],)),
        Sample(
            "multi_audio",
            "mkv",
            (
                [
                    *_video(),
                    *_tone(3, 44100, 440),
                    *_tone(3, 48000, 880),
                    "-map",
                    "0:v",
                    "-map",
                    "1:a",
                    "-map",
                    "2:a",
                    *_X264,
                    *_AAC,
                    "{out}",
                ],
            ),
        ),
        Sample(
            "extra_streams",
            "mkv",
            (
                [*_video("64x64", "1", 1), "-frames:v", "1", "{tmp}.png"],
                [
                    *_video(),
                    *_tone(),
                    "-i",
                    "{srt}",
                    "-attach",
                    "{tmp}.png",
                    "-metadata:s:t",
                    "mimetype=image/png",
                    "-map",
                    "0:v",
                    "-map",
                    "1:a",
                    "-map",
                    "2:s",
                    *_X264,
                    *_AAC,
                    "-c:s",
                    "srt",
                    "{out}",
                ],
            ),
            note="subtitles and an attachment besides audio and video",
        ),
        Sample(
            "cover_art",
            "mp4",
            (
                [*_video("64x64", "1", 1), "-frames:v", "1", "{tmp}.png"],
                [
                    *_video(),
                    *_tone(),
                    "-i",
                    "{tmp}.png",
                    "-map",
                    "0:v",
                    "-map",
                    "1:a",
                    "-map",
                    "2:v",
                    *_X264,
                    *_AAC,
                    "-c:v:1",
                    "png",
                    "-disposition:v:1",
                    "attached_pic",
                    "{out}",
                ],
            ),
            note="a cover picture stream before nothing else: must not be taken as the video",
        ),
        Sample(
            "high_fps", "mp4", ([*_video("320x180", "120", 2), *_tone(2), *_X264, *_AAC, "{out}"],)
        ),
        Sample(
            "very_short",
            "mp4",
            ([*_video("320x180", "30", 0.4), *_tone(0.4), *_X264, *_AAC, "{out}"],),
        ),
        Sample(
            "long",
            "mp4",
            (
                [
                    *_video("64x36", "1", 4300),
                    "-f",
                    "lavfi",
                    "-i",
                    "anullsrc=channel_layout=mono:sample_rate=8000",
                    "-t",
                    "4300",
                    *_X264,
                    "-c:a",
                    "aac",
                    "-b:a",
                    "16k",
                    "{out}",
                ],
            ),
            note="1 h 12 min at 1 fps: crosses the 1-hour segment-length rule",
        ),
        Sample(
            "truncated",
            "mp4",
            ([*_video(), *_tone(), *_X264, *_AAC, "{out}"],),
            post=_truncate_half,
            note="MP4 cut in half: its index (moov, at the end) is gone",
        ),
        Sample(
            "truncated_faststart",
            "mp4",
            (
                [
                    *_video("320x180", "30", 8),
                    *_tone(8),
                    *_X264,
                    *_AAC,
                    "-movflags",
                    "+faststart",
                    "{out}",
                ],
            ),
            post=_truncate_half,
            note="index at the front, half the media data missing",
        ),
        Sample(
            "corrupt",
            "mp4",
            (
                [
                    *_video("320x180", "30", 4),
                    *_tone(4),
                    *_X264,
                    *_AAC,
                    "-movflags",
                    "+faststart",
                    "{out}",
                ],
            ),
            post=_corrupt_middle,
            note="64 KiB of garbage written over the middle of the media data",
        ),
        Sample("zero_bytes", "mp4", (), post=_empty),
        Sample("not_media", "mp4", (), post=_text),
        Sample(
            "lying_extension",
            "mp4",
            ([*_video(), *_tone(), *_X264, *_AAC, "-f", "matroska", "{out}"],),
            note="Matroska content in a file named .mp4",
        ),
    ]
}


def _recipe_key(sample: Sample) -> str:
    text = repr((sample.steps, sample.post.__name__ if sample.post else None))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def generate(name: str, folder: Path, *, ffmpeg: str = "ffmpeg") -> Path:
    """Make sample ``name`` in ``folder`` (cached by recipe) and return its path."""
    sample = SAMPLES[name]
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}-{_recipe_key(sample)}.{sample.ext}"
    if out.exists():
        return out
    partial = folder / f".{out.name}.partial.{os.getpid()}"
    tmp = folder / f".{name}.tmp.{os.getpid()}"
    srt = folder / f".{name}.{os.getpid()}.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:02,000\n<b>hello</b>\n", encoding="utf-8")
    try:
        if not sample.steps:
            partial.touch()
        for step in sample.steps:
            argv = [ffmpeg, *_BASE]
            for arg in step:
                arg = arg.replace("{tmp}", str(tmp)).replace("{srt}", str(srt))
                argv.append(arg.replace("{out}", str(partial)))
            if str(partial) in argv:
                # ffmpeg picks the muxer from the extension; the partial name has none.
                fmt_given = "-f" in step[step.index("{out}") - 2 : step.index("{out}")]
                if not fmt_given:
                    argv[-1:-1] = ["-f", _MUXERS[sample.ext]]
            subprocess.run(argv, check=True, timeout=600)
        if sample.post is not None:
            sample.post(partial)
        partial.replace(out)
    finally:
        for leftover in (partial, srt, *folder.glob(f".{name}.tmp.{os.getpid()}*")):
            leftover.unlink(missing_ok=True)
    return out


_MUXERS = {
    "mp4": "mp4",
    "mkv": "matroska",
    "webm": "webm",
    "mov": "mov",
    "avi": "avi",
    "m4a": "ipod",
}


__all__ = ["SAMPLES", "Sample", "generate"]
