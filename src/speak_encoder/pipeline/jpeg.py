"""The size of a JPEG image from its header (bounded read, no image library).

A JPEG is a run of marker segments: ``FFD8`` (start of image), then ``FF xx <length> …``
segments until a start-of-frame marker (``FFC0``–``FFCF`` except ``C4``, ``C8``, ``CC``) whose
payload holds the height and width. Only the first :data:`MAX_HEADER_BYTES` are read.
"""

from __future__ import annotations

from pathlib import Path

#: Bytes read from the start of a file to find its frame header.
MAX_HEADER_BYTES = 256 * 1024
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})


class JpegError(ValueError):
    """Not a JPEG, or no frame header in its first bytes."""


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the start of a JPEG file."""
    if data[:2] != b"\xff\xd8":
        raise JpegError("not a JPEG image (no start-of-image marker)")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise JpegError(f"corrupt JPEG header at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF:
            if pos + 9 > len(data):
                break
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            if width == 0 or height == 0:
                raise JpegError("JPEG frame header with a zero size")
            return width, height
        if marker == 0xDA or length < 2:
            break  # image data before any frame header
        pos += 2 + length
    raise JpegError(f"no JPEG frame header in the first {len(data)} bytes")


def read_jpeg_size(path: Path) -> tuple[int, int]:
    """(width, height) of the JPEG at ``path``; :class:`JpegError` / :class:`OSError`."""
    with path.open("rb") as handle:
        return jpeg_size(handle.read(MAX_HEADER_BYTES))


__all__ = ["JpegError", "jpeg_size", "read_jpeg_size"]
