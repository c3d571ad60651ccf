"""Checks 1–5 of an encoded HLS folder (docs/encoding.md §6), and what every check reports into.

Each check looks at one playlist or rung and adds :class:`Violation` s to a :class:`Collector`
(at most :data:`MAX_VIOLATIONS_PER_GROUP` messages per check and rung, so a 2000-segment failure
stays readable); a broken file is a violation, never an exception. Check 6 (the folder's
contents) is :mod:`speak_encoder.pipeline.verify_contents`; running them all on a folder is
:func:`speak_encoder.pipeline.verify.validate_folder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speak_encoder.pipeline import bitstream
from speak_encoder.pipeline.hls import (
    MASTER_PLAYLIST_NAME,
    RenditionStats,
    format_frame_rate,
    join_uri,
    measure_iframes,
    video_codec,
)
from speak_encoder.pipeline.iframes import check_range
from speak_encoder.pipeline.m3u8 import MediaPlaylist, Variant, check_relative_uri
from speak_encoder.pipeline.overlap import LadderFacts

#: Names of the checks, by number (docs/encoding.md §6).
CHECK_NAMES = {
    1: "playlist tags",
    2: "keyframes",
    3: "durations",
    4: "bitrates",
    5: "codecs, resolution, frame rate",
    6: "folder contents",
}
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


@dataclass(slots=True)
class Collector:
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
class Rung:
    """A variant whose media playlist could be read."""

    variant: Variant
    name: str
    playlist: MediaPlaylist
    complete: bool  # every segment file exists


# --- check 1 -------------------------------------------------------------------------------


def check_media_playlist(uri: str, playlist: MediaPlaylist, out: Collector) -> None:
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
    out = Collector()
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
    out = Collector()
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


def check_durations(rungs: Sequence[Rung], expected: float | None, out: Collector) -> None:
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
    rung: str, attributes: dict[str, str], stats: RenditionStats, out: Collector
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
    rung: str, attributes: dict[str, str], stats: RenditionStats, out: Collector
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


# --- I-frame playlists (checks 1, 2, 4, 5) -------------------------------------------------


def check_iframe_stream(
    uri: str,
    attributes: dict[str, str],
    playlist: MediaPlaylist,
    rendition: RenditionStats | None,
    out: Collector,
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


__all__ = [
    "CHECK_NAMES",
    "MAX_VIOLATIONS_PER_GROUP",
    "Collector",
    "Rung",
    "Violation",
    "check_bitrates",
    "check_durations",
    "check_iframe_ranges",
    "check_iframe_stream",
    "check_keyframes",
    "check_media_playlist",
    "check_stream_attributes",
]
