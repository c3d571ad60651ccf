"""Measure an encoded HLS ladder and write its master playlist from the measurements.

Why this module is long: the master playlist is written from measurements, and the verify stage
checks it against the same definitions (peak and average bitrate, frame rate, codecs); reading,
measuring and writing stay in one module so the writer and its definitions cannot drift apart.

ffmpeg's HLS muxer writes ``manifest.m3u8`` with constant (often wrong) ``CODECS`` and no
``AVERAGE-BANDWIDTH``. :func:`write_master_playlist` replaces it with one measured from the
produced files::

    manifest.m3u8 ─► <rung>/index.m3u8 ─► segments
                                           ├── os.stat sizes + #EXTINF ─► BANDWIDTH (peak),
                                           │                             AVERAGE-BANDWIDTH
                                           └── first segment's bitstream ─► CODECS
                                                └── its H.264 SPS ─► RESOLUTION, FRAME-RATE
                                                    (ffprobe of the segment when the SPS
                                                     has no VUI timing info)

RESOLUTION is the SPS's cropped frame size and FRAME-RATE its ``time_scale / (2 ×
num_units_in_tick)``, what ffprobe reports for the same stream (libx264 always writes the
timing info); no process runs after the encode. ffprobe is asked only when the SPS cannot say:
no timing info (some hardware encoders), an SPS that does not parse, or a clock rate above
:data:`MAX_SPS_FRAME_RATE` (a time base rather than a frame rate).

Bitrates follow Apple's HLS authoring definitions, used identically by the validator
(:mod:`speak_encoder.pipeline.verify`):

- average = total bits of all segments / total ``#EXTINF`` duration;
- peak = the highest bitrate of any contiguous run of segments whose total duration lies between
  0.5× and 1.5× the target duration (a single segment longer than 1.5× counts on its own; a
  playlist shorter than 0.5× the target counts as a whole).

Both are rounded up to whole bits per second. Segment contents are never read, except for the
bounded bitstream scan of each rung's first segment.

A rung with an I-frame playlist (``<rung>/iframes.m3u8``, :mod:`.iframes`) also gets an
``#EXT-X-I-FRAME-STREAM-INF`` measured the same way from its byte ranges (BANDWIDTH = peak,
AVERAGE-BANDWIDTH) with the rung's video CODECS and RESOLUTION.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath

from speak_encoder.errors import EncodeError, OutputInvalid
from speak_encoder.pipeline import bitstream
from speak_encoder.pipeline.m3u8 import (
    MasterPlaylist,
    MediaPlaylist,
    PlaylistSyntaxError,
    Variant,
    check_relative_uri,
    format_master_playlist,
    parse_master_playlist,
    parse_media_playlist,
)
from speak_encoder.proc import run_capture

#: File name of the master playlist at the root of the output folder (front ends load it).
MASTER_PLAYLIST_NAME = "manifest.m3u8"
#: Lowest ``#EXT-X-VERSION`` written into the master playlist.
MIN_MASTER_VERSION = 6
#: Largest playlist file accepted (a 2000-segment media playlist is ~60 KiB).
MAX_PLAYLIST_BYTES = 4 * 1024 * 1024
#: Seconds ffprobe may take to describe one segment.
FFPROBE_TIMEOUT_S = 60.0
#: Bytes of ffprobe output accepted (its JSON for one stream is a few hundred bytes).
FFPROBE_MAX_OUTPUT = 256 * 1024
#: Name of a rung's I-frame playlist (pipeline.iframes.IFRAME_PLAYLIST_NAME).
IFRAME_PLAYLIST_NAME = "iframes.m3u8"
#: Video measurements (SPS or ffprobe) kept per (segment, size, mtime, inode): the writer and
#: the validator ask twice.
PROBE_CACHE_SIZE = 64
#: Highest frame rate taken from an SPS's timing info; above it the clock is more likely a time
#: base than a frame rate (the encoder writes at most 60 fps) and ffprobe is asked instead.
MAX_SPS_FRAME_RATE = 240
#: Bounds of the run of segments the peak bitrate is measured over, in target durations.
PEAK_WINDOW_MIN = 0.5
PEAK_WINDOW_MAX = 1.5


@dataclass(frozen=True, slots=True)
class RenditionStats:
    """One rung as measured from its files."""

    #: Rung folder name (``1080p``).
    name: str
    #: Media playlist URI relative to the root (``1080p/index.m3u8``).
    uri: str
    width: int
    height: int
    frame_rate: float
    #: ``avc1.PPCCLL[,mp4a.40.N]`` from the bitstream of the first segment.
    codecs: str
    #: Peak bitrate (bits/s), Apple's definition.
    bandwidth: int
    #: Average bitrate (bits/s).
    average_bandwidth: int
    segments: int
    #: Sum of the ``#EXTINF`` durations (s).
    duration: float

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the SPS (or ffprobe) says about the video stream of a segment."""

    width: int
    height: int
    frame_rate: float


# --- reading playlists ---------------------------------------------------------------------


def read_playlist_text(path: Path, *, where: str) -> str:
    """Read a playlist file (bounded); missing, huge or non-UTF-8 files are OutputInvalid."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PLAYLIST_BYTES + 1)
    except FileNotFoundError:
        raise OutputInvalid(f"{where} is missing") from None
    except OSError as exc:
        raise OutputInvalid(f"{where} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_PLAYLIST_BYTES:
        raise OutputInvalid(f"{where} is larger than {MAX_PLAYLIST_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OutputInvalid(f"{where} is not UTF-8 text") from None


def load_master_playlist(folder: Path) -> MasterPlaylist:
    """Parse ``<folder>/manifest.m3u8``."""
    text = read_playlist_text(folder / MASTER_PLAYLIST_NAME, where=MASTER_PLAYLIST_NAME)
    try:
        return parse_master_playlist(text)
    except PlaylistSyntaxError as exc:
        raise OutputInvalid(
            f"{MASTER_PLAYLIST_NAME} is not a valid master playlist: {exc}"
        ) from None


def load_media_playlist(folder: Path, uri: str) -> MediaPlaylist:
    """Parse the media playlist ``uri`` (relative to ``folder``)."""
    text = read_playlist_text(resolve_uri(folder, uri, where=MASTER_PLAYLIST_NAME), where=uri)
    try:
        return parse_media_playlist(text)
    except PlaylistSyntaxError as exc:
        raise OutputInvalid(f"{uri} is not a valid media playlist: {exc}") from None


def resolve_uri(base: Path, uri: str, *, where: str) -> Path:
    """The file a relative playlist URI names; URIs that leave the folder are OutputInvalid."""
    reason = check_relative_uri(uri)
    if reason is not None:
        raise OutputInvalid(f"{where} references {uri!r}: {reason}")
    return base.joinpath(*uri.split("/"))


def join_uri(playlist_uri: str, uri: str) -> str:
    """Root-relative path of ``uri`` found in the playlist at ``playlist_uri``."""
    return str(PurePosixPath(playlist_uri).parent / uri)


def rung_name(uri: str) -> str:
    """Rung name of a variant URI: its folder (``720p/index.m3u8`` → ``720p``)."""
    path = PurePosixPath(uri)
    return path.parent.name or path.stem


# --- bitrates ------------------------------------------------------------------------------


def average_bitrate(sizes: Sequence[int], durations: Sequence[float]) -> int:
    """Total bits / total duration, rounded up."""
    total = sum(durations)
    if total <= 0:
        raise ValueError("the segments have no duration")
    return math.ceil(sum(sizes) * 8 / total)


def peak_bitrate(sizes: Sequence[int], durations: Sequence[float], target_duration: float) -> int:
    """Apple's peak: highest bitrate of a run of segments lasting 0.5–1.5 × the target."""
    if len(sizes) != len(durations) or not sizes:
        raise ValueError("need one duration per segment and at least one segment")
    low, high = PEAK_WINDOW_MIN * target_duration, PEAK_WINDOW_MAX * target_duration
    if sum(durations) < low:
        return average_bitrate(sizes, durations)
    peak = 0.0
    for start in range(len(sizes)):
        bits, seconds = 0, 0.0
        for end in range(start, len(sizes)):
            bits += sizes[end] * 8
            seconds += durations[end]
            if seconds > high:
                if end == start:  # an over-long segment still counts on its own
                    peak = max(peak, bits / seconds)
                break
            if seconds >= low and seconds > 0:
                peak = max(peak, bits / seconds)
    return math.ceil(peak)


# --- frame size and rate: the SPS, else ffprobe -------------------------------------------


def parse_frame_rate(text: object) -> float | None:
    """``"30000/1001"`` → 29.97…; ``None`` for ``0/0``, garbage or non-positive rates."""
    if not isinstance(text, str):
        return None
    try:
        rate = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return float(rate) if rate > 0 else None


def ffprobe_argv(ffprobe: str, segment: Path) -> list[str]:
    """ffprobe arguments describing the first video stream of ``segment`` as JSON."""
    return [
        ffprobe, "-v", "error", "-select_streams", "v:0",
        "-show_entries", "stream=codec_name,width,height,avg_frame_rate,r_frame_rate",
        "-of", "json", f"file:{segment.resolve()}",
    ]  # fmt: skip


def parse_ffprobe_video(output: bytes, *, where: str) -> VideoInfo:
    """Width, height and frame rate from ffprobe's JSON (``avg_frame_rate``, else ``r_``)."""
    try:
        streams = json.loads(output.decode("utf-8", "replace")).get("streams") or []
    except (ValueError, AttributeError):
        raise OutputInvalid(f"ffprobe gave unreadable output for {where}") from None
    if not streams or not isinstance(streams[0], dict):
        raise OutputInvalid(f"ffprobe found no video stream in {where}")
    stream = streams[0]
    width, height = stream.get("width"), stream.get("height")
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        raise OutputInvalid(f"ffprobe reports no frame size for {where}")
    rate = parse_frame_rate(stream.get("avg_frame_rate")) or parse_frame_rate(
        stream.get("r_frame_rate")
    )
    if rate is None:
        raise OutputInvalid(f"ffprobe reports no frame rate for {where}")
    return VideoInfo(width, height, rate)


def video_from_sps(sps: bytes | None) -> VideoInfo | None:
    """Cropped frame size and frame rate from an H.264 SPS NAL unit.

    ``None`` when the SPS cannot tell: none given, one that does not parse, no VUI timing info,
    or a rate above :data:`MAX_SPS_FRAME_RATE`.
    """
    if sps is None:
        return None
    try:
        parsed = bitstream.parse_sps(sps)
    except bitstream.BitstreamError:
        return None
    rate = parsed.frame_rate
    if rate is None or rate > MAX_SPS_FRAME_RATE:
        return None
    return VideoInfo(parsed.width, parsed.height, float(rate))


_PROBED: dict[tuple[str, str, int, int, int], VideoInfo] = {}


async def probe_video(
    segment: Path, *, ffprobe: str, where: str, sps: bytes | None = None
) -> VideoInfo:
    """Width, height and frame rate of one segment: from ``sps`` (its first SPS NAL unit) when
    that tells, else from ffprobe, whose failures become OutputInvalid / EncodeError.

    A result is reused while the file is unchanged (same size, mtime and inode).
    """
    try:
        st = os.stat(segment)
    except OSError:
        key = None
    else:
        key = (ffprobe, str(segment.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        if key in _PROBED:
            return _PROBED[key]
    info = video_from_sps(sps) or await _run_probe(segment, ffprobe=ffprobe, where=where)
    if key is not None:
        while len(_PROBED) >= PROBE_CACHE_SIZE:
            _PROBED.pop(next(iter(_PROBED)))
        _PROBED[key] = info
    return info


async def _run_probe(segment: Path, *, ffprobe: str, where: str) -> VideoInfo:
    try:
        done = await run_capture(
            ffprobe_argv(ffprobe, segment), timeout=FFPROBE_TIMEOUT_S, max_output=FFPROBE_MAX_OUTPUT
        )
    except TimeoutError:
        raise EncodeError(
            f"ffprobe did not finish within {FFPROBE_TIMEOUT_S:.0f} s on {where}"
        ) from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = detail[-1] if detail else f"exit code {done.returncode}"
        raise OutputInvalid(f"ffprobe cannot read {where}: {reason}")
    return parse_ffprobe_video(done.stdout, where=where)


# --- measuring -----------------------------------------------------------------------------


def segment_sizes(folder: Path, uri: str, playlist: MediaPlaylist) -> list[int]:
    """``os.stat`` size of every segment of the playlist at ``uri`` (missing = OutputInvalid)."""
    base = resolve_uri(folder, uri, where=MASTER_PLAYLIST_NAME).parent
    sizes = []
    for segment in playlist.segments:
        path = resolve_uri(base, segment.uri, where=uri)
        try:
            sizes.append(os.stat(path).st_size)
        except FileNotFoundError:
            raise OutputInvalid(f"{join_uri(uri, segment.uri)} is missing") from None
    return sizes


def read_segment_start(segment: Path, *, where: str) -> bitstream.SegmentStart:
    """The start of one segment, with its ``CODECS`` value and SPS (H.264 video required)."""
    try:
        start = bitstream.scan_segment(segment, want_audio=True)
    except (bitstream.BitstreamError, OSError) as exc:
        raise OutputInvalid(f"{where} is not a readable MPEG-TS segment: {exc}") from None
    if start.video_stream_type != bitstream.STREAM_TYPE_H264 or start.video_codec is None:
        raise OutputInvalid(f"{where} has no H.264 video with a sequence parameter set")
    if start.audio_pid is not None and start.audio_codec is None:
        limit = bitstream.DEFAULT_MAX_BYTES // (1024 * 1024)
        raise OutputInvalid(
            f"{where} has an AAC track without an ADTS header in its first {limit} MiB"
        )
    return start


async def measure_rendition(
    folder: Path,
    uri: str,
    *,
    ffprobe: str = "ffprobe",
    playlist: MediaPlaylist | None = None,
) -> RenditionStats:
    """Measure the rung whose media playlist is ``uri`` (relative to ``folder``)."""
    if playlist is None:
        playlist = load_media_playlist(folder, uri)
    if not playlist.segments:
        raise OutputInvalid(f"{uri} lists no segments")
    sizes = segment_sizes(folder, uri, playlist)
    durations = [segment.duration for segment in playlist.segments]
    if sum(durations) <= 0:
        raise OutputInvalid(f"{uri}: the segments have no duration")
    target = playlist.target_duration or math.ceil(max(durations))
    first_uri = join_uri(uri, playlist.segments[0].uri)
    first = resolve_uri(folder, first_uri, where=uri)
    start = read_segment_start(first, where=first_uri)
    video = await probe_video(first, ffprobe=ffprobe, where=first_uri, sps=start.sps)
    return RenditionStats(
        name=rung_name(uri),
        uri=uri,
        width=video.width,
        height=video.height,
        frame_rate=video.frame_rate,
        codecs=start.codecs,
        bandwidth=peak_bitrate(sizes, durations, target),
        average_bandwidth=average_bitrate(sizes, durations),
        segments=len(sizes),
        duration=sum(durations),
    )


# --- writing -------------------------------------------------------------------------------


def format_frame_rate(rate: float) -> str:
    """``FRAME-RATE`` value: three decimals."""
    return f"{rate:.3f}"


def stream_inf_attributes(stats: RenditionStats) -> dict[str, str]:
    """``#EXT-X-STREAM-INF`` attributes of one measured rung."""
    return {
        "BANDWIDTH": str(stats.bandwidth),
        "AVERAGE-BANDWIDTH": str(stats.average_bandwidth),
        "CODECS": stats.codecs,
        "RESOLUTION": stats.resolution,
        "FRAME-RATE": format_frame_rate(stats.frame_rate),
    }


def sort_highest_first(stats: Sequence[RenditionStats]) -> list[RenditionStats]:
    """Highest resolution (pixel count) first; bandwidth breaks ties."""
    return sorted(stats, key=lambda s: (s.width * s.height, s.bandwidth), reverse=True)


def build_master_playlist(
    stats: Sequence[RenditionStats],
    *,
    version: int = MIN_MASTER_VERSION,
    iframes: Sequence[IframeStats] = (),
) -> MasterPlaylist:
    """The master playlist of measured rungs (and their I-frame playlists), highest first."""
    by_uri = {i.rendition.uri: i for i in iframes}
    ordered = sort_highest_first(stats)
    return MasterPlaylist(
        variants=tuple(Variant(s.uri, stream_inf_attributes(s)) for s in ordered),
        version=max(version, MIN_MASTER_VERSION),
        independent_segments=True,
        iframe_streams=tuple(by_uri[s.uri].attributes() for s in ordered if s.uri in by_uri),
    )


# --- I-frame playlists ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IframeStats:
    """One rung's I-frame playlist as measured from its byte ranges."""

    rendition: RenditionStats
    uri: str
    bandwidth: int
    average_bandwidth: int

    def attributes(self) -> dict[str, str]:
        """``#EXT-X-I-FRAME-STREAM-INF`` attributes."""
        return {
            "BANDWIDTH": str(self.bandwidth),
            "AVERAGE-BANDWIDTH": str(self.average_bandwidth),
            "CODECS": video_codec(self.rendition.codecs),
            "RESOLUTION": self.rendition.resolution,
            "URI": self.uri,
        }


def video_codec(codecs: str) -> str:
    """The video part of a CODECS value (an I-frame playlist carries no audio)."""
    return ",".join(c for c in codecs.split(",") if c.strip().startswith("avc"))


def iframe_uri(rendition_uri: str) -> str:
    return str(PurePosixPath(rendition_uri).parent / IFRAME_PLAYLIST_NAME)


def measure_iframes(
    playlist: MediaPlaylist, rendition: RenditionStats, uri: str
) -> IframeStats | None:
    """BANDWIDTH / AVERAGE-BANDWIDTH of an I-frame playlist (Apple's definitions)."""
    ranges = [s for s in playlist.segments if s.byterange is not None]
    if not ranges or len(ranges) != len(playlist.segments):
        return None
    sizes = [s.byterange[0] for s in ranges if s.byterange is not None]
    durations = [s.duration for s in ranges]
    if sum(durations) <= 0:
        return None
    target = playlist.target_duration or math.ceil(max(durations))
    return IframeStats(
        rendition,
        uri,
        peak_bitrate(sizes, durations, target),
        average_bitrate(sizes, durations),
    )


def measure_ladder_iframes(folder: Path, stats: Sequence[RenditionStats]) -> list[IframeStats]:
    """The I-frame playlists next to the measured rungs (rungs without one are skipped)."""
    found = []
    for rendition in stats:
        uri = iframe_uri(rendition.uri)
        if not folder.joinpath(*uri.split("/")).is_file():
            continue
        measured = measure_iframes(load_media_playlist(folder, uri), rendition, uri)
        if measured is None:
            raise OutputInvalid(f"{uri} is not an I-frame playlist of byte ranges")
        found.append(measured)
    return found


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, fsync, then ``os.replace``."""
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


async def measure_ladder(
    folder: Path, master: MasterPlaylist, *, ffprobe: str = "ffprobe"
) -> list[RenditionStats]:
    """Measure every variant of ``master`` (concurrently; ffprobe only for a rung whose SPS
    has no timing info)."""
    if not master.variants:
        raise OutputInvalid(f"{MASTER_PLAYLIST_NAME} lists no variant playlists")
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(measure_rendition(folder, variant.uri, ffprobe=ffprobe))
            for variant in master.variants
        ]
    return [task.result() for task in tasks]


async def write_master_playlist(folder: Path, *, ffprobe: str = "ffprobe") -> list[RenditionStats]:
    """Measure the ladder in ``folder`` and rewrite its ``manifest.m3u8`` from the measurements.

    Returns the rungs highest first, as written. Raises :class:`OutputInvalid` when the folder
    is not a readable ladder and :class:`EncodeError` when ffprobe, asked about a rung whose
    SPS has no timing info, hangs.
    """
    original = load_master_playlist(folder)
    try:
        stats = await measure_ladder(folder, original, ffprobe=ffprobe)
    except ExceptionGroup as group:
        raise group.exceptions[0] from None
    iframes = measure_ladder_iframes(folder, stats)
    master = build_master_playlist(
        stats, version=original.version or MIN_MASTER_VERSION, iframes=iframes
    )
    write_text_atomic(folder / MASTER_PLAYLIST_NAME, format_master_playlist(master))
    return sort_highest_first(stats)


__all__ = [
    "IFRAME_PLAYLIST_NAME",
    "MASTER_PLAYLIST_NAME",
    "MAX_SPS_FRAME_RATE",
    "IframeStats",
    "RenditionStats",
    "VideoInfo",
    "average_bitrate",
    "build_master_playlist",
    "format_frame_rate",
    "load_master_playlist",
    "load_media_playlist",
    "measure_ladder",
    "measure_rendition",
    "peak_bitrate",
    "resolve_uri",
    "stream_inf_attributes",
    "video_from_sps",
    "write_master_playlist",
]
