"""Hostile sources, tiny on disk: what a stranger could hand the node (issue 11).

Used by ``tests/e2e/security`` and ``bench/security_bench.py``; each is generated once into a cache
folder (like :mod:`speak_encoder.testing.media`) and returned as a path.

* :func:`forged_duration_mkv` — a 1-second, audio-less Matroska file whose Segment Info
  ``Duration`` (EBML id 0x4489, float64 milliseconds) is patched to say ``hours`` hours.
* :func:`png_bomb_mkv` — three ``size``×``size`` 16-bit RGB PNG frames in Matroska: a few MB
  that decode to gigabytes (16000² × 6 bytes = 1.5 GB per frame).
* :func:`growing_png_mkv` — the same, but the first frame is 64×64, so the stream's announced
  size is small and only the later frames are huge.
* :func:`disguised_playlist` — an HLS playlist (named like any source) whose one segment is a
  local file.

The PNG image data is one zlib stream of all-zero rows built without compressing 1.5 GB:
after a full flush, deflate output for identical input is identical, so one compressed block of
rows is repeated and the Adler-32 checksum is computed over the repeated rows.
"""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

#: Quiet, non-interactive prefix of the ffmpeg commands below.
_BASE = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
#: Rows compressed at once (then repeated) when building a PNG bomb.
_ROWS_PER_BLOCK = 64


def _atomic(out: Path, make: Callable[[Path], None]) -> Path:
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial{out.suffix}")
    try:
        make(partial)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def black_png(size: int) -> bytes:
    """A ``size``×``size`` 16-bit RGB (rgb48) PNG of zeros, a few MB for 16000²."""
    row = b"\0" * (1 + size * 6)  # filter byte + pixels
    block = row * _ROWS_PER_BLOCK
    blocks, rest = divmod(size, _ROWS_PER_BLOCK)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: header and checksum by hand
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH) if blocks else b""
    again = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH) if blocks > 1 else b""
    tail = comp.compress(row * rest) + comp.flush(zlib.Z_FINISH)
    adler = 1
    for _ in range(blocks):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(row * rest, adler)
    body = b"\x78\xda" + first + again * max(0, blocks - 1) + tail + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", size, size, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def _mux_pngs(frames: list[bytes], out: Path, ffmpeg: str) -> None:
    folder = out.parent / f".{out.stem}-frames-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    try:
        for i, data in enumerate(frames, start=1):
            (folder / f"f{i:03d}.png").write_bytes(data)
        pattern = str(folder / "f%03d.png")
        subprocess.run(
            [ffmpeg, *_BASE, "-framerate", "1", "-i", pattern, "-c", "copy", "-f", "matroska",
             str(out)],
            check=True, timeout=300,
        )  # fmt: skip
    finally:
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()


def png_bomb_mkv(
    folder: Path, *, size: int = 16000, frames: int = 3, ffmpeg: str = "ffmpeg"
) -> Path:
    """Matroska with ``frames`` ``size``×``size`` rgb48 PNG frames (module docstring)."""

    def make(out: Path) -> None:
        png = black_png(size)
        _mux_pngs([png] * frames, out, ffmpeg)

    return _atomic(folder / f"png-bomb-{size}x{frames}.mkv", make)


def growing_png_mkv(folder: Path, *, size: int = 16000, ffmpeg: str = "ffmpeg") -> Path:
    """A 64×64 PNG frame, then two ``size``×``size`` ones: the stream announces 64×64."""

    def make(out: Path) -> None:
        big = black_png(size)
        _mux_pngs([black_png(64), big, big], out, ffmpeg)

    return _atomic(folder / f"png-growing-{size}.mkv", make)


#: EBML id and size byte of Matroska's Segment Info Duration written as a float64.
_DURATION_ELEMENT = b"\x44\x89\x88"


def forged_duration_mkv(folder: Path, *, hours: float = 1000.0, ffmpeg: str = "ffmpeg") -> Path:
    """A 1 s, 320×240, audio-less MKV whose header says it lasts ``hours`` hours."""

    def make(out: Path) -> None:
        honest = out.with_name(out.name + ".honest.mkv")
        try:
            subprocess.run(
                [ffmpeg, *_BASE, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=1",
                 "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                 "-map_metadata", "-1", "-f", "matroska", str(honest)],
                check=True, timeout=120,
            )  # fmt: skip
            data = bytearray(honest.read_bytes())
        finally:
            honest.unlink(missing_ok=True)
        at = data.find(_DURATION_ELEMENT)
        if at < 0:
            raise RuntimeError("no float64 Duration element in the Matroska header")
        data[at + 3 : at + 11] = struct.pack(">d", hours * 3600 * 1000.0)
        out.write_bytes(bytes(data))

    return _atomic(folder / f"forged-duration-{hours:g}h.mkv", make)


def disguised_playlist(segment: Path) -> bytes:
    """An HLS playlist whose single segment is the local file ``segment`` (absolute path)."""
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:2.0,\n{segment.resolve()}\n#EXT-X-ENDLIST\n"
    ).encode()


__all__ = [
    "black_png",
    "disguised_playlist",
    "forged_duration_mkv",
    "growing_png_mkv",
    "png_bomb_mkv",
]
