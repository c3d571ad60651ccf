"""I-frame playlists for trick play: byte ranges of the IDR frames inside the existing segments.

Apple's authoring spec asks for an I-frame playlist per variant. No extra video bytes are made:
``<rung>/iframes.m3u8`` lists, with ``#EXT-X-I-FRAMES-ONLY`` and ``#EXT-X-BYTERANGE``, where
each IDR frame lies in the rung's own ``.ts`` segments::

    seg_N.ts  ─ 188-byte packets ─►  PAT PMT [video PES of an IDR … interleaved audio …] …
                                     └──────────── one byte range ────────────┘

A range starts at the PAT/PMT packets ffmpeg's TS muxer writes right before every keyframe (so
each range is self-contained: a player needs nothing else to decode it) or, without them, at
the first packet of the frame's PES; it ends with the frame's last video packet. Its
``#EXTINF`` is the time to the next IDR (PES presentation time stamps; the first IDR of a
segment is at the segment's start, from the media playlist).

:class:`IdrIndexer` is pure and fed with bytes (any chunking), remembers only IDR frames and
the few bytes of each frame's start it needs, so indexing a segment costs one streaming read
and bounded memory. The same indexer checks a byte range in the validator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speak_encoder.pipeline import bitstream
from speak_encoder.pipeline.bitstream import (
    NAL_IDR,
    STREAM_TYPE_H264,
    TS_PACKET_SIZE,
    TS_SYNC_BYTE,
    VCL_NAL_TYPES,
    BitstreamError,
)
from speak_encoder.pipeline.m3u8 import MediaPlaylist, Segment, format_media_playlist

#: Name of each rung's I-frame playlist (next to its index.m3u8).
IFRAME_PLAYLIST_NAME = "iframes.m3u8"
#: ``#EXT-X-VERSION`` of an I-frame playlist (I-FRAMES-ONLY and BYTERANGE need 4).
IFRAME_PLAYLIST_VERSION = 4
#: Bytes of a frame's PES payload kept to find its first coded slice (SPS, PPS, SEI first).
FRAME_HEAD_BYTES = 64 * 1024
#: Bytes per read when indexing a file.
READ_CHUNK = 256 * TS_PACKET_SIZE
#: PIDs of the tables that may precede a frame (PAT, SDT) besides the PMT.
_PSI_PIDS = frozenset({0x0000, 0x0011})
#: The 33-bit PTS wraps here (90 kHz clock).
_PTS_WRAP = 1 << 33


@dataclass(frozen=True, slots=True)
class IdrFrame:
    """One IDR frame in a TS file: its byte range and presentation time stamp (90 kHz)."""

    offset: int
    length: int
    pts: int | None


@dataclass(slots=True)
class _Frame:
    start: int  # first byte of the range (PSI packets before the PES included)
    end: int  # after the frame's last video packet
    pts: int | None
    head: bytearray
    nal: int | None = None  # first VCL NAL type, once known


@dataclass(slots=True)
class IdrIndexer:
    """Streaming index of the IDR frames of one MPEG-TS file (or of one byte range of it).

    ``video_pid`` may be given (a byte range without PAT/PMT); else it comes from the PMT.
    """

    video_pid: int | None = None
    frames: list[IdrFrame] = field(default_factory=list)
    #: Video frames seen (IDR or not), and the first VCL NAL type of the first one.
    frame_count: int = 0
    first_nal: int | None = None
    _offset: int = 0
    _pending: bytes = b""
    _pmt_pid: int | None = None
    _pat: bitstream._Section = field(default_factory=bitstream._Section)
    _pmt: bitstream._Section = field(default_factory=bitstream._Section)
    _psi_run: int | None = None  # offset of a run of PSI packets right before this packet
    _current: _Frame | None = None
    _first_vcl_offset: dict[int, int] = field(default_factory=dict)

    def feed(self, data: bytes) -> None:
        buffer = self._pending + data
        usable = len(buffer) - len(buffer) % TS_PACKET_SIZE
        for start in range(0, usable, TS_PACKET_SIZE):
            self._packet(buffer[start : start + TS_PACKET_SIZE])
            self._offset += TS_PACKET_SIZE
        self._pending = buffer[usable:]

    def finish(self) -> list[IdrFrame]:
        """Close the last frame; the IDR frames in file order."""
        if self._pending:
            raise BitstreamError(f"{len(self._pending)} bytes after the last whole TS packet")
        self.close_frame()
        return self.frames

    def _packet(self, packet: bytes) -> None:
        if packet[0] != TS_SYNC_BYTE:
            raise BitstreamError(f"lost MPEG-TS sync at byte {self._offset}")
        unit_start = bool(packet[1] & 0x40)
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        control = (packet[3] >> 4) & 0x03
        payload = b""
        if control & 0x01:
            begin = 4 + (1 + packet[4] if control & 0x02 else 0)
            payload = packet[begin:] if begin < TS_PACKET_SIZE else b""
        if pid in _PSI_PIDS or pid == self._pmt_pid:
            if self._psi_run is None:
                self._psi_run = self._offset
            self._table(pid, payload, unit_start)
            return
        psi_run, self._psi_run = self._psi_run, None
        if self.video_pid is None or pid != self.video_pid:
            return
        if unit_start:
            self.close_frame()
            self.frame_count += 1
            start = psi_run if psi_run is not None else self._offset
            self._current = _Frame(start, self._offset + TS_PACKET_SIZE, None, bytearray())
            self._current.pts = _pes_pts(payload)
        frame = self._current
        if frame is None:
            return  # the tail of a frame that began before this file or range
        frame.end = self._offset + TS_PACKET_SIZE
        if frame.nal is None and len(frame.head) < FRAME_HEAD_BYTES:
            frame.head += payload
            frame.nal = _first_vcl(frame.head)

    def _table(self, pid: int, payload: bytes, unit_start: bool) -> None:
        if not payload:
            return
        if pid == 0:
            section = self._pat.feed(payload, unit_start)
            if section is not None and self._pmt_pid is None:
                self._pmt_pid = bitstream._parse_pat(section)
        elif pid == self._pmt_pid:
            section = self._pmt.feed(payload, unit_start)
            if section is not None and self.video_pid is None:
                video_pid, video_type, _ = bitstream._parse_pmt(section)
                if video_pid is not None and video_type == STREAM_TYPE_H264:
                    self.video_pid = video_pid

    def close_frame(self) -> None:
        """End the frame in progress (at the end of the input)."""
        frame, self._current = self._current, None
        if frame is None:
            return
        if frame.nal is None:
            frame.nal = _first_vcl(frame.head, final=True)
        if self.first_nal is None:
            self.first_nal = frame.nal
        if frame.nal == NAL_IDR:
            self.frames.append(IdrFrame(frame.start, frame.end - frame.start, frame.pts))


def _pes_pts(payload: bytes) -> int | None:
    """PTS of a PES packet header (``None`` if absent or the header is cut)."""
    if len(payload) < 14 or payload[:3] != b"\x00\x00\x01" or not payload[7] & 0x80:
        return None
    p = payload[9:14]
    return ((p[0] >> 1) & 0x07) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1


def _first_vcl(pes: bytearray, *, final: bool = False) -> int | None:
    """Type of the first coded-slice NAL unit in a (partial) video PES, once its header arrived.

    Returns 0 when the PES is complete (``final``) and holds no coded slice.
    """
    if len(pes) < 9:
        return 0 if final else None
    begin = 9 + pes[8]
    while (index := pes.find(b"\x00\x00\x01", begin)) >= 0:
        if index + 3 >= len(pes):
            break
        header = pes[index + 3]
        if header < 0x80 and header & 0x1F in VCL_NAL_TYPES:
            return header & 0x1F
        begin = index + 3
    return 0 if final else None


def index_file(path: Path) -> list[IdrFrame]:
    """IDR frames of the TS file at ``path`` (one streaming read, bounded memory)."""
    indexer = IdrIndexer()
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            indexer.feed(chunk)
    return indexer.finish()


def check_range(path: Path, offset: int, length: int, *, max_bytes: int) -> str | None:
    """Why the byte range is not a whole IDR frame on a TS packet boundary (None = it is).

    The video PID comes from the file's own PAT/PMT (its first packets); the range is read up to
    ``max_bytes``.
    """
    if offset % TS_PACKET_SIZE or length % TS_PACKET_SIZE or length <= 0:
        return f"byte range {length}@{offset} does not fall on {TS_PACKET_SIZE}-byte TS packets"
    size = path.stat().st_size
    if offset + length > size:
        return f"byte range {length}@{offset} runs past the end of the file ({size} bytes)"
    head = bitstream.scan_segment(path, want_audio=False)
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(min(length, max_bytes))
    if not data or data[0] != TS_SYNC_BYTE:
        return f"byte range {length}@{offset} does not start with a TS sync byte"
    indexer = IdrIndexer(video_pid=head.video_pid)
    indexer.feed(data[: len(data) - len(data) % TS_PACKET_SIZE])
    indexer.close_frame()
    if indexer.first_nal is None:
        return f"byte range {length}@{offset} holds no video frame"
    if indexer.first_nal != NAL_IDR:
        return (
            f"byte range {length}@{offset} starts with a non-IDR frame "
            f"(NAL type {indexer.first_nal})"
        )
    return None


# --- the playlist --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IframeEntry:
    uri: str  # segment URI, relative to the rung folder
    offset: int
    length: int
    seconds: float  # presentation time from the start of the rung


def entries_for(
    segments: Sequence[Segment], frames: Sequence[Sequence[IdrFrame]]
) -> list[IframeEntry]:
    """I-frame entries of a rung from its segments and each segment's IDR frames."""
    entries: list[IframeEntry] = []
    start = 0.0
    for segment, found in zip(segments, frames, strict=True):
        base = found[0].pts if found and found[0].pts is not None else None
        for frame in found:
            seconds = start
            if base is not None and frame.pts is not None:
                seconds += ((frame.pts - base) % _PTS_WRAP) / 90_000
            if entries and seconds <= entries[-1].seconds:
                continue  # never two I-frames at one instant
            entries.append(IframeEntry(segment.uri, frame.offset, frame.length, seconds))
        start += segment.duration
    return entries


def iframe_playlist(entries: Sequence[IframeEntry], total: float) -> MediaPlaylist:
    """The ``#EXT-X-I-FRAMES-ONLY`` playlist of ``entries`` (rung duration ``total`` s)."""
    segments = []
    for index, entry in enumerate(entries):
        following = entries[index + 1].seconds if index + 1 < len(entries) else total
        duration = max(following - entry.seconds, 0.001)
        segments.append(Segment(entry.uri, round(duration, 6), (entry.length, entry.offset)))
    longest = max((s.duration for s in segments), default=1.0)
    return MediaPlaylist(
        segments=tuple(segments),
        version=IFRAME_PLAYLIST_VERSION,
        target_duration=max(1, math.ceil(longest - 1e-6)),
        playlist_type="VOD",
        independent_segments=True,
        endlist=True,
        iframes_only=True,
    )


def format_iframe_playlist(entries: Sequence[IframeEntry], total: float) -> str:
    return format_media_playlist(iframe_playlist(entries, total))


__all__ = [
    "IFRAME_PLAYLIST_NAME",
    "IdrFrame",
    "IdrIndexer",
    "IframeEntry",
    "check_range",
    "entries_for",
    "format_iframe_playlist",
    "iframe_playlist",
    "index_file",
]
