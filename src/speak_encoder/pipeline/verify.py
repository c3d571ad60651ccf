"""The six validity checks an encoded HLS folder must pass before it is published.

From the encoding spec, docs/encoding.md §6 (Apple HLS authoring rules)::

    1  playlists   every media playlist: #EXT-X-PLAYLIST-TYPE:VOD, #EXT-X-TARGETDURATION,
                   #EXT-X-ENDLIST, each #EXTINF ≤ target + 0.5 s
    2  keyframes   every segment's first coded slice is an IDR (bounded bitstream read)
    3  durations   all rungs cover the expected duration (± one target duration) and each other
    4  bitrates    measured peak ≤ 1.1 × BANDWIDTH, measured average within 10 % of
                   AVERAGE-BANDWIDTH (same definitions as the writer in ``hls``)
    5  codecs      CODECS, RESOLUTION, FRAME-RATE match the rung's bitstream (its SPS; ffprobe
                   when the SPS has no timing info), measured like the writer in ``hls``
    6  contents    the folder holds exactly the files the playlists reference — plus, at the
                   root, the poster thumbnail.jpg (a JPEG) and storyboard.vtt with the sprite
                   its cues point into (storyboard.jpg; every cue inside it)

I-frame playlists (``#EXT-X-I-FRAME-STREAM-INF``) are checked like media playlists: their tags
(1), every byte range starts on a TS packet boundary and holds an IDR frame (2), BANDWIDTH /
AVERAGE-BANDWIDTH against the measured ranges (4), CODECS / RESOLUTION against the rung (5).
Storyboard cues must cover the video (3).

The checks themselves are :mod:`speak_encoder.pipeline.verify_checks` (1–5) and
:mod:`speak_encoder.pipeline.verify_contents` (6); this module runs them on a folder and reports.

A broken folder gives violations, never exceptions (a missing ffprobe binary, when a rung's SPS
has no timing info and ffprobe is needed, still raises
:class:`~speak_encoder.errors.ConfigError`). Memory stays bounded: segment sizes come from
``os.stat``, segments are read only up to their first coded slice, and at most
:data:`~speak_encoder.pipeline.verify_checks.MAX_VIOLATIONS_PER_GROUP`
messages are kept per check and rung.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from speak_encoder.errors import EncodeError, OutputInvalid
from speak_encoder.pipeline.hls import (
    MASTER_PLAYLIST_NAME,
    RenditionStats,
    format_frame_rate,
    join_uri,
    load_master_playlist,
    load_media_playlist,
    measure_rendition,
    rung_name,
)
from speak_encoder.pipeline.m3u8 import MasterPlaylist, MediaPlaylist, check_relative_uri
from speak_encoder.pipeline.overlap import LadderFacts
from speak_encoder.pipeline.verify_checks import (
    Collector,
    Rung,
    Violation,
    check_bitrates,
    check_durations,
    check_iframe_ranges,
    check_iframe_stream,
    check_keyframes,
    check_media_playlist,
    check_stream_attributes,
)
from speak_encoder.pipeline.verify_contents import check_folder_contents, check_root_extras


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """The outcome of :func:`validate_folder`; ``ok`` when there is no violation."""

    violations: list[Violation]
    renditions: list[RenditionStats]

    @property
    def ok(self) -> bool:
        return not self.violations


# --- the whole folder ----------------------------------------------------------------------


def _load_master(folder: Path, out: Collector) -> MasterPlaylist | None:
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
    folder: Path, uri: str, referenced: set[str], out: Collector
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


async def _measure(folder: Path, rung: Rung, ffprobe: str, out: Collector) -> RenditionStats | None:
    if not rung.complete or not rung.playlist.segments:
        return None  # missing files are check 6; nothing to measure
    uri = rung.variant.uri
    try:
        return await measure_rendition(folder, uri, ffprobe=ffprobe, playlist=rung.playlist)
    except (OutputInvalid, EncodeError) as exc:
        out.add(5, rung.name, f"rung {rung.name} cannot be measured: {exc.message}")
        return None


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
    out = Collector()
    master = _load_master(folder, out)
    if master is None:
        return ValidationReport(out.result(), [])
    referenced = {MASTER_PLAYLIST_NAME}
    rungs: list[Rung] = []
    variant_uris = {variant.uri for variant in master.variants}
    for variant in master.variants:
        loaded = _load_playlist(folder, variant.uri, referenced, out)
        if loaded is not None:
            rungs.append(Rung(variant, rung_name(variant.uri), *loaded))
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
    "ValidationReport",
    "format_report",
    "validate_folder",
]
