"""The probe stage: ffprobe JSON → a typed :class:`MediaInfo`, with readable failures."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from speak_encoder.errors import MediaError
from speak_encoder.proc import run_capture

#: Seconds ffprobe may take on one file (it reads headers, not the whole file).
PROBE_TIMEOUT_S = 120.0
#: Frame rates a measured rate is snapped to when within 1 % (VFR and rounding noise).
STANDARD_RATES = tuple(
    Fraction(n, d)
    for n, d in [
        (24000, 1001), (24, 1), (25, 1), (30000, 1001), (30, 1), (48, 1),
        (50, 1), (60000, 1001), (60, 1), (100, 1), (120000, 1001), (120, 1),
    ]
)  # fmt: skip
_HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})


@dataclass(frozen=True, slots=True)
class VideoStream:
    index: int
    codec: str
    width: int
    height: int
    sar: Fraction
    rotation: int  # 0, 90, 180 or 270 (clockwise display rotation, from the display matrix)
    fps: Fraction
    pix_fmt: str
    bit_depth: int
    color_transfer: str
    color_primaries: str
    duration: float | None = None  # the video stream's own length, when the container says

    @property
    def is_hdr(self) -> bool:
        return self.color_transfer in _HDR_TRANSFERS

    @property
    def display_size(self) -> tuple[Fraction, Fraction]:
        """Width and height of the frame as displayed: SAR applied, then rotation."""
        width = Fraction(self.width) * self.sar
        height = Fraction(self.height)
        if self.rotation in (90, 270):
            return height, width
        return width, height


@dataclass(frozen=True, slots=True)
class AudioStream:
    index: int
    codec: str
    channels: int
    sample_rate: int


@dataclass(frozen=True, slots=True)
class MediaInfo:
    format_name: str
    duration: float
    size: int
    video: VideoStream
    audio: AudioStream | None
    audio_streams: int
    other_streams: int


def _fraction(text: object) -> Fraction | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = Fraction(text.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def natural_fps(stream: dict[str, Any]) -> Fraction | None:
    """The stream's frame rate: the average rate, snapped to a standard rate within 1 %."""
    avg = _fraction(stream.get("avg_frame_rate"))
    base = _fraction(stream.get("r_frame_rate"))
    rate = avg if avg is not None and avg <= 1000 else base
    if rate is None or rate > 1000:
        return None
    nearest = min(STANDARD_RATES, key=lambda standard: abs(rate - standard))
    if abs(rate - nearest) / nearest < Fraction(1, 100):
        return nearest
    return rate.limit_denominator(1001)


def _rotation(stream: dict[str, Any]) -> int:
    degrees: object = None
    for side in stream.get("side_data_list") or []:
        if isinstance(side, dict) and "rotation" in side:
            degrees = side["rotation"]
    if degrees is None:
        degrees = (stream.get("tags") or {}).get("rotate")
    try:
        value = round(float(degrees)) if degrees is not None else 0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = 0
    return (round(value / 90) * 90) % 360


def _bit_depth(stream: dict[str, Any]) -> int:
    raw = stream.get("bits_per_raw_sample")
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    pix = str(stream.get("pix_fmt", ""))
    for depth in (16, 14, 12, 10, 9):
        if f"p{depth}" in pix:
            return depth
    return 8


def _is_cover_art(stream: dict[str, Any]) -> bool:
    disposition = stream.get("disposition") or {}
    return bool(disposition.get("attached_pic")) or bool(disposition.get("still_image"))


def _pick(streams: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The default stream of ``kind``, else the first; cover art is never a video."""
    found = [s for s in streams if s.get("codec_type") == kind]
    if kind == "video":
        found = [s for s in found if not _is_cover_art(s)]
    for stream in found:
        if (stream.get("disposition") or {}).get("default"):
            return stream
    return found[0] if found else None


def parse_probe(doc: dict[str, Any], size: int) -> MediaInfo:
    """Turn ffprobe's JSON into :class:`MediaInfo` (pure); raises :class:`MediaError`."""
    streams = [s for s in doc.get("streams") or [] if isinstance(s, dict)]
    fmt = doc.get("format") or {}
    video = _pick(streams, "video")
    if video is None:
        kinds = sorted({str(s.get("codec_type")) for s in streams}) or ["none"]
        raise MediaError(
            f"the source has no video stream (found: {', '.join(kinds)}): nothing to encode"
        )
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise MediaError("the video stream has no frame size: the file is corrupt or truncated")
    fps = natural_fps(video)
    if fps is None:
        raise MediaError("the video stream has no usable frame rate: the file is corrupt")
    duration = _float(fmt.get("duration")) or _float(video.get("duration"))
    if duration is None:
        raise MediaError("the source has zero or unknown duration: nothing to encode")
    audio = _pick(streams, "audio")
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    return MediaInfo(
        format_name=str(fmt.get("format_name", "?")),
        duration=duration,
        size=size,
        video=VideoStream(
            index=int(video["index"]),
            codec=str(video.get("codec_name", "?")),
            width=width,
            height=height,
            sar=_fraction(video.get("sample_aspect_ratio")) or Fraction(1),
            rotation=_rotation(video),
            fps=fps,
            pix_fmt=str(video.get("pix_fmt", "?")),
            bit_depth=_bit_depth(video),
            color_transfer=str(video.get("color_transfer", "")),
            color_primaries=str(video.get("color_primaries", "")),
            duration=_float(video.get("duration")),
        ),
        audio=None
        if audio is None
        else AudioStream(
            index=int(audio["index"]),
            codec=str(audio.get("codec_name", "?")),
            channels=int(audio.get("channels") or 0),
            sample_rate=int(audio.get("sample_rate") or 0),
        ),
        audio_streams=len(audios),
        other_streams=len(streams) - len(audios) - 1,
    )


#: ISO-BMFF box types one of which starts every MP4/MOV file.
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")


def _looks_like_mp4(head: bytes) -> bool:
    return head[4:8] in _MP4_BOXES


def _explain_failure(stderr: str, head: bytes) -> str:
    text = stderr.lower()
    if "moov atom not found" in text:
        if not _looks_like_mp4(head):
            return "this is not a media file (no MP4 structure; the extension says otherwise)"
        return "the file is truncated or corrupt (its index, the MP4 'moov' box, is missing)"
    if "invalid data found" in text:
        return "this is not a media file ffmpeg can read (invalid data)"
    if "end of file" in text:
        return "the file ends before any media could be read: truncated or corrupt"
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"ffprobe could not read the file ({last[-1][:200] if last else 'no details'})"


async def probe(path: Path, *, ffprobe: str = "ffprobe") -> MediaInfo:
    """Run ffprobe on ``path`` (a local file) and return its :class:`MediaInfo`."""
    size = path.stat().st_size
    if size == 0:
        raise MediaError("the source is empty (0 bytes)")
    argv = [
        ffprobe, "-v", "error", "-hide_banner", "-print_format", "json",
        "-show_format", "-show_streams", "-i", f"file:{path}",
    ]  # fmt: skip
    try:
        done = await run_capture(argv, timeout=PROBE_TIMEOUT_S)
    except TimeoutError:
        raise MediaError(
            f"ffprobe did not finish within {PROBE_TIMEOUT_S:.0f} s: the file is not usable media"
        ) from None
    if done.returncode != 0:
        with path.open("rb") as handle:
            head = handle.read(16)
        raise MediaError(_explain_failure(done.stderr.decode("utf-8", "replace"), head))
    try:
        doc = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise MediaError("ffprobe returned unreadable output for this file") from None
    if not isinstance(doc, dict) or not doc.get("streams"):
        raise MediaError("this is not a media file: no audio or video streams found")
    return parse_probe(doc, size)
