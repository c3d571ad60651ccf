"""Work on the files ffmpeg has finished while it still encodes the rest.

ffmpeg writes each segment as ``seg_N.ts.tmp`` and renames it when complete (``-hls_flags
temp_file``), and each JPEG the same way (``-atomic_writing``), so a file with its final name is
whole. While ffmpeg runs, :class:`LadderWatcher` polls the rung folders every
:data:`POLL_INTERVAL_S` and reads each finished segment **once**, feeding the same chunks to

* the UnixFS importer (the segment's CID: the root CID at the end only hashes the playlists,
  the pictures and the last segments), and
* the IDR indexer (byte ranges of the I-frame playlist, and whether the segment starts with an
  IDR — check 2 of the validator);

When ffmpeg exits, what is left is done at once; what the encode-then-verify path did after
ffmpeg (read every segment, hash every byte) is mostly done by then. No other process runs
beside ffmpeg (the sprite's tiling comes after it; the poster candidates are measured by the
encode itself): the peak RSS of the process
tree is ffmpeg's plus this one's.

The results are facts about files, valid only for the exact file they were computed from: each
is keyed by its path relative to the output folder and checked against the file's size, mtime
and inode before use. Memory: one small record per segment (≤ 2000 per rung).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from speak_encoder.pipeline.bitstream import BitstreamError
from speak_encoder.pipeline.iframes import IdrFrame, IdrIndexer
from speak_encoder.pipeline.plan import EncodePlan
from speak_encoder.storage.unixfs import Entry, import_file

log = logging.getLogger(__name__)

#: Seconds between two looks at the output folder while ffmpeg runs.
POLL_INTERVAL_S = 0.5
#: Output folders whose facts are kept for the verify stage (one per job running here).
MAX_KEPT_FOLDERS = 8


@dataclass(frozen=True, slots=True)
class FileStamp:
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        st = os.stat(path)
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True, slots=True)
class SegmentFacts:
    """What one read of a finished segment told."""

    stamp: FileStamp
    entry: Entry  # its UnixFS file entry (CID, sizes)
    idr_frames: tuple[IdrFrame, ...]
    first_nal: int | None  # first coded slice of the segment (5 = IDR)


def read_segment(path: Path) -> SegmentFacts | None:
    """Hash and index one segment in a single streaming read (None if it is not valid TS)."""
    stamp = FileStamp.of(path)
    indexer = IdrIndexer()
    try:
        entry = import_file(path, on_chunk=lambda chunk: indexer.feed(bytes(chunk)))
        frames = indexer.finish()
    except BitstreamError:
        return None  # the validator reads it again and says what is wrong
    if FileStamp.of(path) != stamp:
        return None
    return SegmentFacts(stamp, entry, tuple(frames), indexer.first_nal)


@dataclass(slots=True)
class LadderFacts:
    """Facts about the files of one output folder (relative POSIX path → facts)."""

    folder: Path
    segments: dict[str, SegmentFacts] = field(default_factory=dict)

    def segment(self, relative: str) -> SegmentFacts | None:
        facts = self.segments.get(relative)
        if facts is None:
            return None
        try:
            current = FileStamp.of(self.folder.joinpath(*relative.split("/")))
        except OSError:
            return None
        return facts if current == facts.stamp else None

    def entry_of(self, path: Path) -> Entry | None:
        """The UnixFS entry of ``path`` if it was hashed and has not changed since."""
        try:
            relative = path.relative_to(self.folder).as_posix()
        except ValueError:
            return None
        facts = self.segment(relative)
        return facts.entry if facts is not None else None


class LadderWatcher:
    """Reads the finished segments of ``folder`` while ffmpeg runs."""

    def __init__(self, folder: Path, plan: EncodePlan, ffmpeg: str) -> None:
        self.facts = LadderFacts(folder)
        self._plan = plan
        self._ffmpeg = ffmpeg
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Poll until :meth:`stop`; then catch up with what is left."""
        while not self._stop.is_set():
            await self._catch_up()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), POLL_INTERVAL_S)
        await self._catch_up(final=True)

    def stop(self) -> None:
        self._stop.set()

    def _finished_segments(self) -> list[tuple[str, Path]]:
        found = []
        for rung in self._plan.names:
            folder = self.facts.folder / rung
            try:
                with os.scandir(folder) as entries:
                    names = [e.name for e in entries if e.name.endswith(".ts") and e.is_file()]
            except OSError:
                continue
            for name in names:
                relative = f"{rung}/{name}"
                if self.facts.segment(relative) is None:
                    found.append((relative, folder / name))
        return found

    async def _catch_up(self, *, final: bool = False) -> None:
        for relative, path in self._finished_segments():
            try:
                facts = await asyncio.to_thread(read_segment, path)
            except OSError:
                continue  # removed (a failed attempt is being wiped) or unreadable: later
            if facts is not None:
                self.facts.segments[relative] = facts


_KEPT: OrderedDict[Path, LadderFacts] = OrderedDict()


def keep_facts(facts: LadderFacts) -> None:
    """Remember ``facts`` for the verify stage of the same folder (bounded)."""
    _KEPT[facts.folder] = facts
    _KEPT.move_to_end(facts.folder)
    while len(_KEPT) > MAX_KEPT_FOLDERS:
        _KEPT.popitem(last=False)


def take_facts(folder: Path) -> LadderFacts:
    """The facts kept for ``folder`` (empty ones after a restart: everything is read again)."""
    facts = _KEPT.pop(folder, None)
    return facts if facts is not None else LadderFacts(folder)


__all__ = [
    "LadderFacts",
    "LadderWatcher",
    "SegmentFacts",
    "keep_facts",
    "read_segment",
    "take_facts",
]
