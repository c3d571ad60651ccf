"""The six validity checks an encoded HLS folder must pass before it is published.

From the encoding spec, docs/encoding.md §6 (Apple HLS authoring rules)::

    1  playlists   every media playlist: #EXT-X-PLAYLIST-TYPE:VOD, #EXT-X-TARGETDURATION,
                   #EXT-X-ENDLIST, each #EXTINF ≤ target + 0.5 s
    2  keyframes   every segment's first coded slice is an IDR (bounded bitstream read)
    3  durations   all rungs cover the expected duration (± one target duration) and each other
    4  bitrates    measured peak ≤ 1.1 × BANDWIDTH, measured average within 10 % of
                   AVERAGE-BANDWIDTH (same definitions as the writer in ``hls``)
    5  codecs      CODECS, RESOLUTION, FRAME-RATE match the bitstream / ffprobe of the rung
    6  contents    the folder holds exactly the files the playlists reference — plus, at the
                   root, the poster thumbnail.jpg (a JPEG) and storyboard.vtt with the sprite
                   its cues point into (storyboard.jpg; every cue inside it)

I-frame playlists (``#EXT-X-I-FRAME-STREAM-INF``) are checked like media playlists: their tags
(1), every byte range starts on a TS packet boundary and holds an IDR frame (2), BANDWIDTH /
AVERAGE-BANDWIDTH against the measured ranges (4), CODECS / RESOLUTION against the rung (5).
Storyboard cues must cover the video (3).

A broken folder gives violations, never exceptions (a missing ffprobe binary still raises
:class:`~speak_encoder.errors.ConfigError`). Memory stays bounded: segment sizes come from
``os.stat``, segments are read only up to their first coded slice, and at most
:data:`MAX_VIOLATIONS_PER_GROUP` messages are kept per check and rung.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from speak_encoder.errors import EncodeError, OutputInvalid
from speak_encoder.pipeline import bitstream
from speak_encoder.pipeline.extras import POSTER_NAME, STORYBOARD_VTT
from speak_encoder.pipeline.hls import (
    MASTER_PLAYLIST_NAME,
    RenditionStats,
    format_frame_rate,
    join_uri,
    load_master_playlist,
    load_media_playlist,
    measure_iframes,
    measure_rendition,
    read_playlist_text,
    rung_name,
    video_codec,
)
from speak_encoder.pipeline.iframes import check_range
from speak_encoder.pipeline.jpeg import JpegError, read_jpeg_size
from speak_encoder.pipeline.m3u8 import MasterPlaylist, MediaPlaylist, Variant, check_relative_uri
from speak_encoder.pipeline.overlap import LadderFacts
from speak_encoder.pipeline.storyboard import (
    StoryboardError,
    check_coverage,
    check_cues,
    parse_storyboard,
)

#: Names of the checks, by number (docs/encoding.md §6).
CHECK_NAMES = {
    1: "playlist tags",
    2: "keyframes",
    3: "durations",
    4: "bitrates",
    5: "codecs, resolution, frame rate",
    6: "folder contents",
}
#: Files allowed at the root besides the playlists and segments (and the storyboard's sprite,
#: which its WebVTT references).
ALLOWED_ROOT_EXTRAS = frozenset({POSTER_NAME, STORYBOARD_VTT})
#: Bytes of an I-frame byte range read to find its first frame (it starts within a few packets).
IFRAME_CHECK_BYTES = 32 * 1024
#: How far an #EXTINF may exceed the target duration (s).
EXTINF_TOLERANCE_S = 0.5
#: Measured peak may be at most this multiple of the declared BANDWIDTH.
PEAK_TOLERANCE = 1.1
#: Measured average may differ from AVERAGE-BANDWIDTH by at most this fraction of it.
AVERAGE_TOLERANCE = 0.10
#: Largest difference between declared and measured FRAME-RATE.
FRAME_RATE_TOLERANCE = 0.01
#: Messages kept per (check, rung); the rest are counted in one summary line.
MAX_VIOLATIONS_PER_GROUP = 10


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed check: its number (1–6), where (a file or rung) and what is wrong."""

    check: int
    where: str
    message: str

    def __str__(self) -> str:
        return f"[check {self.check}: {CHECK_NAMES[self.check]}] {self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """The outcome of :func:`validate_folder`; ``ok`` when there is no violation."""

    violations: list[Violation]
    renditions: list[RenditionStats]

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(slots=True)
class _Collector:
    """Violations with a cap per (check, group), so a 2000-segment failure stays readable."""

    kept: list[Violation] = field(default_factory=list)
    counts: dict[tuple[int, str], int] = field(default_factory=dict)

    def add(self, check: int, where: str, message: str, group: str | None = None) -> None:
        key = (check, group if group is not None else where)
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        if count <= MAX_VIOLATIONS_PER_GROUP:
            self.kept.append(Violation(check, where, message))

    def result(self) -> list[Violation]:
        extra = [
            Violation(check, group, f"… and {count - MAX_VIOLATIONS_PER_GROUP} more like these")
            for (check, group), count in self.counts.items()
            if count > MAX_VIOLATIONS_PER_GROUP
        ]
        return self.kept + extra


@dataclass(slots=True)
class _Rung:
    """A variant whose media playlist could be read."""

    variant: Variant
    name: str
    playlist: MediaPlaylist
    complete: bool  # every segment file exists


# --- check 1 -------------------------------------------------------------------------------


def check_media_playlist(uri: str, playlist: MediaPlaylist, out: _Collector) -> None:
    """Check 1: VOD type, target duration, end list, #EXTINF ≤ target + 0.5 s."""
    if playlist.playlist_type != "VOD":
        found = playlist.playlist_type or "none"
        out.add(1, uri, f"needs #EXT-X-PLAYLIST-TYPE:VOD (found {found})")
    if playlist.target_duration is None:
        out.add(1, uri, "has no #EXT-X-TARGETDURATION")
    if not playlist.endlist:
        out.add(1, uri, "has no #EXT-X-ENDLIST (players treat it as a live stream)")
    if not playlist.segments:
        out.add(1, uri, "lists no segments")
    if playlist.target_duration is None:
        return
    limit = playlist.target_duration + EXTINF_TOLERANCE_S
    for segment in playlist.segments:
        if segment.duration > limit:
            out.add(
                1,
                join_uri(uri, segment.uri),
                f"#EXTINF {segment.duration:.3f} s in {uri} exceeds #EXT-X-TARGETDURATION "
                f"{playlist.target_duration} s + {EXTINF_TOLERANCE_S} s",
                group=uri,
            )


# --- check 2 -------------------------------------------------------------------------------


def check_keyframes(
    folder: Path, uri: str, playlist: MediaPlaylist, known: LadderFacts | None = None
) -> list[Violation]:
    """Check 2 (blocking; run in a thread): each existing segment starts with an IDR slice.

    ``known`` holds what the encoder learned reading the finished segments while ffmpeg ran;
    a segment it read, unchanged since, is not read again.
    """
    out = _Collector()
    base = folder.joinpath(*uri.split("/")).parent
    for segment in playlist.segments:
        if check_relative_uri(segment.uri) is not None:
            continue  # reported by check 6
        where = join_uri(uri, segment.uri)
        facts = known.segment(where) if known is not None else None
        if facts is not None:
            first: int | None = facts.first_nal or None
        else:
            try:
                start = bitstream.scan_segment(
                    base.joinpath(*segment.uri.split("/")), want_audio=False
                )
            except FileNotFoundError:
                continue  # reported by check 6
            except (OSError, bitstream.BitstreamError) as exc:
                out.add(2, where, f"is not a readable MPEG-TS segment: {exc}", group=uri)
                continue
            first = start.first_vcl_nal_type
        if first is None:
            out.add(2, where, "has no H.264 frame at its start", group=uri)
        elif first != bitstream.NAL_IDR:
            out.add(
                2,
                where,
                f"starts with a non-IDR frame (NAL type {first}): players cannot start or switch "
                "rungs here",
                group=uri,
            )
    return out.result()


def check_iframe_ranges(folder: Path, uri: str, playlist: MediaPlaylist) -> list[Violation]:
    """Check 2 of an I-frame playlist (blocking): every byte range is a whole IDR frame's start,
    on a TS packet boundary."""
    out = _Collector()
    base = folder.joinpath(*uri.split("/")).parent
    for number, segment in enumerate(playlist.segments, 1):
        if check_relative_uri(segment.uri) is not None:
            continue  # reported by check 6
        where = f"{uri} entry {number} ({segment.uri})"
        if segment.byterange is None:
            out.add(2, where, "has no #EXT-X-BYTERANGE", group=uri)
            continue
        length, offset = segment.byterange
        try:
            problem = check_range(
                base.joinpath(*segment.uri.split("/")), offset, length, max_bytes=IFRAME_CHECK_BYTES
            )
        except FileNotFoundError:
            continue  # reported by check 6
        except (OSError, bitstream.BitstreamError) as exc:
            problem = f"cannot be read: {exc}"
        if problem is not None:
            out.add(2, where, problem, group=uri)
    return out.result()


# --- check 3 -------------------------------------------------------------------------------


def check_durations(rungs: Sequence[_Rung], expected: float | None, out: _Collector) -> None:
    """Check 3: every rung covers ``expected`` and the longest rung, ± its target duration."""
    if not rungs:
        return
    longest = max(rungs, key=lambda r: r.playlist.duration)
    for rung in rungs:
        covered = rung.playlist.duration
        tolerance = float(rung.playlist.target_duration or 0)
        if expected is not None and abs(covered - expected) > tolerance:
            out.add(
                3,
                rung.name,
                f"rung {rung.name} covers {covered:.3f} s, expected {expected:.3f} s "
                f"(± {tolerance:g} s)",
            )
        if longest.playlist.duration - covered > tolerance:
            out.add(
                3,
                rung.name,
                f"rung {rung.name} covers {covered:.3f} s but rung {longest.name} covers "
                f"{longest.playlist.duration:.3f} s",
            )


# --- checks 4 and 5 ------------------------------------------------------------------------


def _declared_int(attributes: dict[str, str], name: str) -> int | None:
    value = attributes.get(name, "")
    return int(value) if value.isdigit() else None


def check_bitrates(
    rung: str, attributes: dict[str, str], stats: RenditionStats, out: _Collector
) -> None:
    """Check 4: measured peak ≤ 1.1 × BANDWIDTH, average within 10 % of AVERAGE-BANDWIDTH."""
    bandwidth = _declared_int(attributes, "BANDWIDTH")
    if bandwidth is None:
        out.add(4, rung, f"rung {rung} has no valid BANDWIDTH in {MASTER_PLAYLIST_NAME}")
    elif stats.bandwidth > PEAK_TOLERANCE * bandwidth:
        out.add(
            4,
            rung,
            f"rung {rung}: measured peak {stats.bandwidth} b/s exceeds {PEAK_TOLERANCE} × "
            f"declared BANDWIDTH {bandwidth}",
        )
    average = _declared_int(attributes, "AVERAGE-BANDWIDTH")
    if average is None:
        out.add(4, rung, f"rung {rung} has no valid AVERAGE-BANDWIDTH in {MASTER_PLAYLIST_NAME}")
    elif abs(stats.average_bandwidth - average) > AVERAGE_TOLERANCE * average:
        out.add(
            4,
            rung,
            f"rung {rung}: measured average {stats.average_bandwidth} b/s is not within "
            f"{AVERAGE_TOLERANCE:.0%} of declared AVERAGE-BANDWIDTH {average}",
        )


def _codec_list(value: str) -> list[str]:
    return sorted(part.strip().lower() for part in value.split(",") if part.strip())


def _resolution(value: str) -> tuple[int, int] | None:
    width, sep, height = value.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        return None
    return int(width), int(height)


def _frame_rate(value: str) -> float | None:
    try:
        rate = float(value)
    except ValueError:
        return None
    return rate if rate > 0 else None


def check_stream_attributes(
    rung: str, attributes: dict[str, str], stats: RenditionStats, out: _Collector
) -> None:
    """Check 5: CODECS, RESOLUTION and FRAME-RATE match the measured rung."""
    codecs = attributes.get("CODECS")
    if codecs is None:
        out.add(5, rung, f"rung {rung} has no CODECS (the stream has {stats.codecs})")
    elif _codec_list(codecs) != _codec_list(stats.codecs):
        out.add(
            5, rung, f"rung {rung} declares CODECS {codecs!r} but the stream is {stats.codecs!r}"
        )
    declared = attributes.get("RESOLUTION")
    if declared is None or _resolution(declared) is None:
        out.add(5, rung, f"rung {rung} has no valid RESOLUTION (the stream is {stats.resolution})")
    elif _resolution(declared) != (stats.width, stats.height):
        out.add(
            5,
            rung,
            f"rung {rung} declares RESOLUTION {declared} but the stream is {stats.resolution}",
        )
    rate_text = attributes.get("FRAME-RATE")
    rate = _frame_rate(rate_text) if rate_text is not None else None
    measured = format_frame_rate(stats.frame_rate)
    if rate is None:
        out.add(5, rung, f"rung {rung} has no valid FRAME-RATE (the stream has {measured})")
    elif abs(rate - stats.frame_rate) > FRAME_RATE_TOLERANCE:
        out.add(
            5, rung, f"rung {rung} declares FRAME-RATE {rate_text} but the stream has {measured}"
        )


# --- check 6 -------------------------------------------------------------------------------


def _parents(paths: Iterable[str]) -> set[str]:
    folders: set[str] = set()
    for path in paths:
        folders.update(str(parent) for parent in PurePosixPath(path).parents if str(parent) != ".")
    return folders


def check_root_extras(
    folder: Path, referenced: set[str], duration: float | None, out: _Collector
) -> None:
    """The poster must be a JPEG; the storyboard's sprite is referenced by its WebVTT, whose
    cues point inside the sprite (6) and cover the ``duration`` of the video (3). Blocking."""
    poster = folder / POSTER_NAME
    if poster.is_file() and not poster.is_symlink():
        try:
            read_jpeg_size(poster)
        except (JpegError, OSError) as exc:
            out.add(6, POSTER_NAME, f"is not a JPEG image: {exc}")
    vtt = folder / STORYBOARD_VTT
    if not vtt.is_file() or vtt.is_symlink():
        return
    try:
        cues = parse_storyboard(read_playlist_text(vtt, where=STORYBOARD_VTT))
    except (OutputInvalid, StoryboardError) as exc:
        out.add(6, STORYBOARD_VTT, f"is not a storyboard WebVTT: {exc}")
        return
    for image in sorted({cue.image for cue in cues}):
        reason = check_relative_uri(image)
        if reason is not None:
            out.add(6, STORYBOARD_VTT, f"references {image!r}: {reason}")
            continue
        referenced.add(image)
        try:
            sprite = read_jpeg_size(folder / image)
        except FileNotFoundError:
            continue  # reported missing
        except (JpegError, OSError) as exc:
            out.add(6, image, f"is not a JPEG image: {exc}")
            continue
        for problem in check_cues([cue for cue in cues if cue.image == image], sprite):
            out.add(6, STORYBOARD_VTT, problem, group=STORYBOARD_VTT)
    if duration is not None:
        for problem in check_coverage(cues, duration):
            out.add(3, STORYBOARD_VTT, problem, group=STORYBOARD_VTT)


def check_folder_contents(folder: Path, referenced: set[str], out: _Collector) -> None:
    """Check 6 (blocking): no referenced file missing, nothing else in the folder."""
    expected_dirs = _parents(referenced)
    found: set[str] = set()
    stack = [""]
    while stack:
        relative = stack.pop()
        try:
            with os.scandir(folder / relative if relative else folder) as entries:
                for entry in entries:
                    _visit(entry, relative, referenced, expected_dirs, found, stack, out)
        except OSError as exc:
            out.add(6, relative or ".", f"cannot be listed: {exc.strerror or exc}", group="extra")
    for path in sorted(referenced - found):
        out.add(6, path, "is referenced by a playlist but missing from the folder", group="missing")


def _visit(
    entry: os.DirEntry[str],
    parent: str,
    referenced: set[str],
    expected_dirs: set[str],
    found: set[str],
    stack: list[str],
    out: _Collector,
) -> None:
    path = f"{parent}/{entry.name}" if parent else entry.name
    if entry.is_symlink():
        out.add(6, path, "is a symbolic link (not allowed in a published folder)", group="extra")
    elif entry.is_dir(follow_symlinks=False):
        if path in expected_dirs:
            stack.append(path)
        else:
            out.add(6, path + "/", "is a folder no playlist references", group="extra")
    elif not entry.is_file(follow_symlinks=False):
        out.add(6, path, "is not a regular file", group="extra")
    elif path in referenced:
        found.add(path)
    elif not (parent == "" and entry.name in ALLOWED_ROOT_EXTRAS):
        out.add(
            6,
            path,
            f"is not referenced by any playlist (only {', '.join(sorted(ALLOWED_ROOT_EXTRAS))} "
            "may be added at the root)",
            group="extra",
        )


# --- the whole folder ----------------------------------------------------------------------


def _load_master(folder: Path, out: _Collector) -> MasterPlaylist | None:
    try:
        master = load_master_playlist(folder)
    except OutputInvalid as exc:
        present = (folder / MASTER_PLAYLIST_NAME).is_file()
        out.add(1 if present else 6, MASTER_PLAYLIST_NAME, exc.message)
        return None
    if not master.variants:
        out.add(1, MASTER_PLAYLIST_NAME, "lists no variant playlists (#EXT-X-STREAM-INF)")
    return master


def _load_playlist(
    folder: Path, uri: str, referenced: set[str], out: _Collector
) -> tuple[MediaPlaylist, bool] | None:
    """Parse one playlist of the master; record the files it references. (playlist, complete)"""
    reason = check_relative_uri(uri)
    if reason is not None:
        out.add(6, uri, f"{MASTER_PLAYLIST_NAME} references {uri!r}: {reason}")
        return None
    referenced.add(uri)
    if not folder.joinpath(*uri.split("/")).is_file():
        return None  # reported missing by check 6
    try:
        playlist = load_media_playlist(folder, uri)
    except OutputInvalid as exc:
        out.add(1, uri, exc.message)
        return None
    complete = True
    inner = [s.uri for s in playlist.segments]
    inner += [playlist.map_uri] if playlist.map_uri else []
    for segment_uri in inner:
        reason = check_relative_uri(segment_uri)
        if reason is not None:
            out.add(6, uri, f"references {segment_uri!r}: {reason}", group=uri)
            complete = False
            continue
        path = join_uri(uri, segment_uri)
        referenced.add(path)
        complete = complete and folder.joinpath(*path.split("/")).is_file()
    return playlist, complete


async def _measure(
    folder: Path, rung: _Rung, ffprobe: str, out: _Collector
) -> RenditionStats | None:
    if not rung.complete or not rung.playlist.segments:
        return None  # missing files are check 6; nothing to measure
    uri = rung.variant.uri
    try:
        return await measure_rendition(folder, uri, ffprobe=ffprobe, playlist=rung.playlist)
    except (OutputInvalid, EncodeError) as exc:
        out.add(5, rung.name, f"rung {rung.name} cannot be measured: {exc.message}")
        return None


def check_iframe_stream(
    uri: str,
    attributes: dict[str, str],
    playlist: MediaPlaylist,
    rendition: RenditionStats | None,
    out: _Collector,
) -> None:
    """Checks 1, 4 and 5 of an I-frame playlist and its #EXT-X-I-FRAME-STREAM-INF."""
    if not playlist.iframes_only:
        out.add(1, uri, "is listed as an I-frame playlist but has no #EXT-X-I-FRAMES-ONLY")
    check_media_playlist(uri, playlist, out)
    if rendition is None:
        out.add(5, uri, "is not next to the media playlist of a rung of this ladder")
        return
    measured = measure_iframes(playlist, rendition, uri)
    if measured is None:
        out.add(4, uri, "cannot be measured (every entry needs a byte range and a duration)")
        return
    check_bitrates(uri, attributes, _as_stats(rendition, measured.bandwidth,
                                              measured.average_bandwidth), out)  # fmt: skip
    codecs, video = attributes.get("CODECS", ""), video_codec(rendition.codecs)
    if _codec_list(codecs) != _codec_list(video):
        out.add(5, uri, f"declares CODECS {codecs!r} but the rung's video is {video!r}")
    declared = attributes.get("RESOLUTION", "")
    if _resolution(declared) != (rendition.width, rendition.height):
        out.add(5, uri, f"declares RESOLUTION {declared!r} but the rung is {rendition.resolution}")


def _as_stats(rendition: RenditionStats, bandwidth: int, average: int) -> RenditionStats:
    return RenditionStats(
        rendition.name, rendition.uri, rendition.width, rendition.height, rendition.frame_rate,
        rendition.codecs, bandwidth, average, rendition.segments, rendition.duration,
    )  # fmt: skip


async def validate_folder(
    folder: Path,
    *,
    expected_duration: float | None,
    ffprobe: str = "ffprobe",
    known: LadderFacts | None = None,
) -> ValidationReport:
    """Run the six checks of docs/encoding.md §6 on ``folder``; violations are data, not errors.

    ``known``: facts the encoder gathered from the finished files (see :mod:`.overlap`).
    """
    out = _Collector()
    master = _load_master(folder, out)
    if master is None:
        return ValidationReport(out.result(), [])
    referenced = {MASTER_PLAYLIST_NAME}
    rungs: list[_Rung] = []
    variant_uris = {variant.uri for variant in master.variants}
    for variant in master.variants:
        loaded = _load_playlist(folder, variant.uri, referenced, out)
        if loaded is not None:
            rungs.append(_Rung(variant, rung_name(variant.uri), *loaded))
    iframe_uris = {attrs["URI"] for attrs in master.iframe_streams if "URI" in attrs}
    iframe_playlists: dict[str, MediaPlaylist] = {}
    for uri in master.referenced_uris():
        if uri not in variant_uris:  # I-frame / alternative playlists
            loaded = _load_playlist(folder, uri, referenced, out)
            if loaded is not None and uri in iframe_uris:
                iframe_playlists[uri] = loaded[0]

    renditions: list[RenditionStats] = []
    for rung in rungs:
        uri = rung.variant.uri
        check_media_playlist(uri, rung.playlist, out)
        out.kept += await asyncio.to_thread(check_keyframes, folder, uri, rung.playlist, known)
        stats = await _measure(folder, rung, ffprobe, out)
        if stats is not None:
            renditions.append(stats)
            check_bitrates(rung.name, rung.variant.attributes, stats, out)
            check_stream_attributes(rung.name, rung.variant.attributes, stats, out)
    by_folder = {str(PurePosixPath(r.uri).parent): r for r in renditions}
    rung_folders = {str(PurePosixPath(uri).parent) for uri in variant_uris}
    for attrs in master.iframe_streams:
        iframe_uri = attrs.get("URI")
        if iframe_uri is None:
            out.add(1, MASTER_PLAYLIST_NAME, "an #EXT-X-I-FRAME-STREAM-INF has no URI")
            continue
        playlist = iframe_playlists.get(iframe_uri)
        if playlist is None:
            continue  # missing (check 6) or unreadable (check 1)
        folder_of = str(PurePosixPath(iframe_uri).parent)
        rendition = by_folder.get(folder_of)
        if rendition is None and folder_of in rung_folders:
            continue  # its rung could not be measured (missing files: check 6)
        check_iframe_stream(iframe_uri, attrs, playlist, rendition, out)
        out.kept += await asyncio.to_thread(check_iframe_ranges, folder, iframe_uri, playlist)
    check_durations(rungs, expected_duration, out)
    # The storyboard covers the encoded video (the longest rung), like its writer.
    encoded = max((r.playlist.duration for r in rungs), default=None) or expected_duration
    await asyncio.to_thread(check_root_extras, folder, referenced, encoded, out)
    await asyncio.to_thread(check_folder_contents, folder, referenced, out)
    violations = sorted(out.result(), key=lambda v: v.check)
    return ValidationReport(violations, renditions)


def format_report(report: ValidationReport) -> str:
    """A human-readable summary: one line per rung, one line per violation."""
    lines = []
    if report.ok:
        lines.append(f"HLS folder valid: {len(report.renditions)} rendition(s), 6 checks passed")
    else:
        count = len(report.violations)
        lines.append(f"HLS folder INVALID: {count} violation{'s' if count != 1 else ''}")
        lines += [f"  {violation}" for violation in report.violations]
    for r in report.renditions:
        lines.append(
            f"  {r.name}: {r.resolution} @ {format_frame_rate(r.frame_rate)} fps, {r.codecs}, "
            f"peak {r.bandwidth / 1000:.0f} kb/s, average {r.average_bandwidth / 1000:.0f} kb/s, "
            f"{r.segments} segments, {r.duration:.2f} s"
        )
    return "\n".join(lines)


__all__ = [
    "CHECK_NAMES",
    "ValidationReport",
    "Violation",
    "format_report",
    "validate_folder",
]
