"""The probe stage: ffprobe JSON → a typed :class:`MediaInfo`, with readable failures.

Why this module is long: it is the one gate between a stranger's file and the encoder. The
ffprobe pass and the packet scan apply one set of bounds (:class:`ProbeLimits`), and
:func:`measured_info` joins them into the :class:`MediaInfo` a job trusts; split, the
hostile-input rules would live in two places.

A source comes from strangers, so the probe is also the gate that refuses hostile files before
anything is decoded (issue 11):

* **Only single-file media containers** (:data:`ALLOWED_DEMUXERS`): ffprobe runs with
  ``-format_whitelist`` and ``-protocol_whitelist file``, so an HLS playlist, a concat list, an
  image sequence or any demuxer that would open other files or URLs is refused with its name
  ("the source is an HLS playlist …"), never followed. The encode then reads the file with
  ``-f <that demuxer>`` and the same whitelists (:func:`source_input_options`).
* **Frame size** (``MAX_SOURCE_PIXELS``): ffprobe and ffmpeg get ``-max_pixels``, so no decoder
  allocates a frame above it (a 4.5 MB file of 16000×16000 PNG frames would take 4.7 GB), and a
  stream announcing a larger frame is refused.
* **Length from the streams** (``MAX_SOURCE_DURATION``): the length a container *announces* is
  checked against the limit first; one demux pass (no decoding, :func:`scan_packets`, started
  beside the ffprobe pass with the same whitelists and cancelled when that pass refuses the
  file) reads every packet's timestamps. The job's length is what the streams really hold — the last
  video timestamp, not a header that says 1000 hours — and a source whose streams end well
  before what it announces (``TRUNCATION_TOLERANCE_S`` / ``_FRACTION``, the rule the verify
  stage applies to the output) is refused as truncated: a partial upload and a forged header
  look the same, and neither must pass as the announced video.
* **Memory** (``FFMPEG_MEMORY_MAX_MB``): ffprobe's resident memory is watched like ffmpeg's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from speak_encoder.config import (
    DEFAULT_FFMPEG_MEMORY_MAX_MB,
    DEFAULT_MAX_SOURCE_DURATION_S,
    DEFAULT_MAX_SOURCE_PIXELS,
    Settings,
)
from speak_encoder.errors import MediaError, MemoryLimitExceeded
from speak_encoder.proc import MemoryLimitHit, read_bounded, run_capture, start, stop, watch_memory

#: Seconds ffprobe may take on one file (it reads headers, not the whole file).
PROBE_TIMEOUT_S = 120.0
#: The packet scan reads the whole file: it gets PROBE_TIMEOUT_S plus the file size at this rate.
SCAN_MIN_BYTES_PER_S = 20 * 1024 * 1024
#: Demuxers a source may be read with (ffprobe ``format_name``; the first name of each is what
#: ``-f`` takes). Single-file containers only: ``hls``, ``dash``, ``concat``, ``image2`` and the
#: other demuxers that open further files (or take a list of them) are not among them.
ALLOWED_DEMUXERS = ("mov", "matroska", "mpegts", "mpeg", "avi", "flv", "asf", "ogg", "mxf", "dv")
#: What some refused demuxers are, for the message.
_REFUSED_KINDS = {
    "hls": "an HLS playlist", "dash": "a DASH manifest", "concat": "a concat list",
    "ffconcat": "a concat list", "image2": "an image or image sequence", "tee": "a tee list",
    "webm_dash_manifest": "a DASH manifest", "lavfi": "a filter graph", "mpjpeg": "an MJPEG stream",
}  # fmt: skip
#: A source whose streams cover less than it announces by more than this (seconds, or this
#: fraction of its length if larger) is truncated — the rule the verify stage applies too.
TRUNCATION_TOLERANCE_S = 2.0
TRUNCATION_TOLERANCE_FRACTION = 0.02
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

    @property
    def demuxer(self) -> str | None:
        """The ``-f`` name of the container when it is an allowed one (``None`` otherwise)."""
        return allowed_demuxer(self.format_name)


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    """What the probe refuses (from ``MAX_SOURCE_DURATION``, ``MAX_SOURCE_PIXELS`` and
    ``FFMPEG_MEMORY_MAX_MB``; the defaults are config.py's)."""

    max_duration: float = DEFAULT_MAX_SOURCE_DURATION_S
    max_pixels: int = DEFAULT_MAX_SOURCE_PIXELS
    memory_max_mb: int = DEFAULT_FFMPEG_MEMORY_MAX_MB

    @classmethod
    def from_settings(cls, settings: Settings) -> ProbeLimits:
        return cls(
            max_duration=settings.max_source_duration,
            max_pixels=settings.max_source_pixels,
            memory_max_mb=settings.ffmpeg_memory_max_mb,
        )

    @property
    def memory_limit(self) -> int | None:
        return self.memory_max_mb * 1024 * 1024 if self.memory_max_mb else None


def allowed_demuxer(format_name: str) -> str | None:
    """The allowed demuxer ffprobe's ``format_name`` (``"matroska,webm"``) names, if any."""
    names = [n.strip() for n in format_name.split(",")]
    return next((n for n in ALLOWED_DEMUXERS if n in names), None)


def source_input_options(demuxer: str | None, max_pixels: int) -> list[str]:
    """Options placed before a source's ``-i file:…`` in every ffprobe and ffmpeg run.

    Only local files, only the allowed demuxers (``-f demuxer`` once it is known), no decoded
    frame above ``max_pixels``. Every value comes from this module or the settings, never from
    the source.
    """
    args = ["-protocol_whitelist", "file", "-format_whitelist", ",".join(ALLOWED_DEMUXERS)]
    args += ["-max_pixels", str(max_pixels)]
    if demuxer is not None:
        if demuxer not in ALLOWED_DEMUXERS:
            raise ValueError(f"demuxer {demuxer!r} is not allowed")
        args += ["-f", demuxer]
    return args


def _mpx(pixels: float) -> str:
    return f"{pixels / 1e6:.1f} Mpx"


def pixels_error(width: int, height: int, max_pixels: int, *, later: bool = False) -> MediaError:
    """The refusal of a frame above ``max_pixels`` (``later``: met by ffmpeg mid-stream)."""
    what = "a frame of the video is" if later else "the video's frames are"
    return MediaError(
        f"{what} {width}×{height} ({_mpx(width * height)}), more than MAX_SOURCE_PIXELS "
        f"({_mpx(max_pixels)}): refused, the frame was never decoded"
    )


_OVERSIZED = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")
_NOT_WHITELISTED = re.compile(r"\[([\w,.-]+) @ [^]]*\] Format not on whitelist")


def oversized_frame(stderr: str) -> tuple[int, int] | None:
    """The frame size a decoder refused for ``-max_pixels``, from ffmpeg's or ffprobe's stderr."""
    match = _OVERSIZED.search(stderr)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _format_refused(name: str) -> MediaError:
    first = name.split(",")[0]
    kind = _REFUSED_KINDS.get(first)
    if kind is None and first.endswith("_pipe"):
        kind = "an image"
    what = kind or f"read by ffmpeg's {first!r} demuxer"
    return MediaError(
        f"the source is {what}, not a single video file: refused (accepted containers: MP4/MOV, "
        "Matroska/WebM, MPEG-TS/PS, AVI, FLV, ASF/WMV, Ogg, MXF, DV)"
    )


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


def parse_probe(doc: dict[str, Any], size: int, *, require_duration: bool = True) -> MediaInfo:
    """Turn ffprobe's JSON into :class:`MediaInfo` (pure); raises :class:`MediaError`.

    Without ``require_duration`` a missing duration is 0 here (the packet scan measures it).
    """
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
        if require_duration:
            raise MediaError("the source has zero or unknown duration: nothing to encode")
        duration = 0.0
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


def _memory_error(what: str, limits: ProbeLimits) -> MemoryLimitExceeded:
    return MemoryLimitExceeded(
        f"{what} needed more than FFMPEG_MEMORY_MAX_MB ({limits.memory_max_mb} MB) of memory "
        "for this source: refused"
    )


async def probe(
    path: Path, *, ffprobe: str = "ffprobe", limits: ProbeLimits | None = None
) -> MediaInfo:
    """Run ffprobe on ``path`` (a local file) and return its :class:`MediaInfo`.

    Refuses what ``limits`` does not allow (module docstring); ``duration`` and the video's
    ``duration`` are the lengths the streams really have.
    """
    limits = limits or ProbeLimits()
    size = path.stat().st_size
    if size == 0:
        raise MediaError("the source is empty (0 bytes)")
    # The packet scan runs beside the ffprobe pass (each is mostly ffprobe's start-up on a
    # short file): the same whitelists apply to both, so both read the file with the same
    # demuxer; a refusal below cancels the scan.
    scan = asyncio.ensure_future(scan_packets(path, ffprobe=ffprobe, demuxer=None, limits=limits))
    try:
        info, announced = await _describe(path, size, ffprobe=ffprobe, limits=limits)
        span = await scan
    finally:
        if not scan.done():
            scan.cancel()
        await asyncio.wait({scan})  # the scan's ffprobe is stopped before the error goes up
    video = info.video
    indexes = {video.index} | ({info.audio.index} if info.audio is not None else set())
    return measured_info(info, span, indexes, announced, limits)


async def _describe(
    path: Path, size: int, *, ffprobe: str, limits: ProbeLimits
) -> tuple[MediaInfo, float | None]:
    """The ffprobe pass: streams and format, refused when ``limits`` say so; plus the
    announced duration."""
    argv = [
        ffprobe, "-v", "error", "-hide_banner", *source_input_options(None, limits.max_pixels),
        "-print_format", "json", "-show_format", "-show_streams", "-i", f"file:{path}",
    ]  # fmt: skip
    try:
        done = await run_capture(argv, timeout=PROBE_TIMEOUT_S, memory_limit=limits.memory_limit)
    except TimeoutError:
        raise MediaError(
            f"ffprobe did not finish within {PROBE_TIMEOUT_S:.0f} s: the file is not usable media"
        ) from None
    except MemoryLimitHit:
        raise _memory_error("ffprobe", limits) from None
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        refused = _NOT_WHITELISTED.search(stderr)
        if refused is not None:
            raise _format_refused(refused.group(1))
        with path.open("rb") as handle:
            head = handle.read(16)
        raise MediaError(_explain_failure(stderr, head))
    try:
        doc = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise MediaError("ffprobe returned unreadable output for this file") from None
    if not isinstance(doc, dict) or not doc.get("streams"):
        raise MediaError("this is not a media file: no audio or video streams found")
    fmt = doc.get("format") or {}
    demuxer = allowed_demuxer(str(fmt.get("format_name", "")))
    if demuxer is None:
        raise _format_refused(str(fmt.get("format_name", "?")))
    announced = _float(fmt.get("duration"))
    if announced is not None and announced > limits.max_duration:
        raise _duration_error("announces", announced, limits)
    try:
        info = parse_probe(doc, size, require_duration=False)
    except MediaError:
        big = oversized_frame(stderr)
        if big is not None:
            raise pixels_error(*big, limits.max_pixels) from None
        raise
    video = info.video
    if video.width * video.height > limits.max_pixels:
        raise pixels_error(video.width, video.height, limits.max_pixels)
    return info, announced


# --- the packet scan: how long the streams really are -----------------------------------------


@dataclass(slots=True)
class StreamSpan:
    """First and last timestamps (seconds) seen per stream, and over all of them."""

    starts: dict[int, float]
    ends: dict[int, float]
    packets: int = 0

    def add(self, index: int, start: float, end: float) -> None:
        self.packets += 1
        if start < self.starts.get(index, math.inf):
            self.starts[index] = start
        if end > self.ends.get(index, -math.inf):
            self.ends[index] = end

    @property
    def start(self) -> float | None:
        return min(self.starts.values(), default=None)

    @property
    def end(self) -> float | None:
        return max(self.ends.values(), default=None)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:  # "N/A"
        return None
    return value if math.isfinite(value) else None


def parse_packet_line(line: str) -> tuple[int, float, float] | None:
    """``stream_index,pts_time,dts_time,duration_time`` → (index, start, end), or None."""
    parts = line.strip().split(",")
    if len(parts) < 4 or not parts[0].isdigit():
        return None
    stamp = _number(parts[1])
    if stamp is None:
        stamp = _number(parts[2])
    if stamp is None:
        return None
    length = _number(parts[3]) or 0.0
    return int(parts[0]), stamp, stamp + max(0.0, length)


async def scan_packets(
    path: Path, *, ffprobe: str, demuxer: str | None, limits: ProbeLimits
) -> StreamSpan:
    """Demux ``path`` once (no decoding) and keep each stream's first and last timestamp.

    The output is read line by line (memory does not grow with the file); the pass gets
    :data:`PROBE_TIMEOUT_S` plus the file size at :data:`SCAN_MIN_BYTES_PER_S`.
    """
    argv = [
        ffprobe, "-v", "error", "-hide_banner", *source_input_options(demuxer, limits.max_pixels),
        "-show_entries", "packet=stream_index,pts_time,dts_time,duration_time",
        "-print_format", "csv=p=0", "-i", f"file:{path}",
    ]  # fmt: skip
    timeout = PROBE_TIMEOUT_S + path.stat().st_size / SCAN_MIN_BYTES_PER_S
    proc = await start(
        argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    span = StreamSpan({}, {})

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            parsed = parse_packet_line(raw.decode("ascii", "replace"))
            if parsed is not None:
                span.add(*parsed)

    watcher = asyncio.ensure_future(watch_memory(proc, limits.memory_limit))
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(read(), read_bounded(proc.stderr, 64 * 1024))
            await proc.wait()
    except TimeoutError:
        raise MediaError(
            f"reading the source's packets took longer than {timeout:.0f} s: not usable media"
        ) from None
    finally:
        await stop(proc, grace=0.5)
        hit = watcher.result() if watcher.done() and not watcher.cancelled() else None
        watcher.cancel()
        await asyncio.wait({watcher})  # finished before the process object goes
    if hit is not None:
        raise _memory_error("ffprobe", limits)
    return span


def _duration_error(verb: str, seconds: float, limits: ProbeLimits) -> MediaError:
    return MediaError(
        f"the source {verb} {_hours(seconds)}, more than MAX_SOURCE_DURATION "
        f"({_hours(limits.max_duration)}): refused"
    )


def _hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.1f} s"


def measured_info(
    info: MediaInfo,
    span: StreamSpan,
    indexes: set[int],
    announced: float | None,
    limits: ProbeLimits,
) -> MediaInfo:
    """``info`` with the lengths the packets show (pure); refuses what the limits refuse."""
    starts = [span.starts[i] for i in indexes if i in span.starts]
    start = min(starts) if starts else span.start
    end = span.end  # every stream: a subtitle track may run past the picture
    video_end = span.ends.get(info.video.index)
    if start is None or end is None or video_end is None:
        raise MediaError("the video stream has no timestamps: its length cannot be known")
    length = end - start
    video_length = video_end - start
    if length <= 0 or video_length <= 0:
        raise MediaError("the source has zero duration: nothing to encode")
    if length > limits.max_duration:
        raise _duration_error("runs for", length, limits)
    if announced is not None:
        allowed = max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRACTION * announced)
        if length < announced - allowed:
            raise MediaError(
                f"the source announces {_hours(announced)} but its streams end after "
                f"{_hours(length)}: the file is truncated or corrupt (or its header lies)"
            )
    duration = min(length, announced) if announced is not None else length
    video = dataclasses.replace(info.video, duration=min(video_length, duration))
    return dataclasses.replace(info, duration=duration, video=video)


__all__ = [
    "ALLOWED_DEMUXERS",
    "PROBE_TIMEOUT_S",
    "SCAN_MIN_BYTES_PER_S",
    "STANDARD_RATES",
    "TRUNCATION_TOLERANCE_FRACTION",
    "TRUNCATION_TOLERANCE_S",
    "AudioStream",
    "MediaInfo",
    "ProbeLimits",
    "StreamSpan",
    "VideoStream",
    "allowed_demuxer",
    "measured_info",
    "natural_fps",
    "oversized_frame",
    "parse_packet_line",
    "parse_probe",
    "pixels_error",
    "probe",
    "scan_packets",
    "source_input_options",
]
