"""Streaming CARv1 export of a file or folder's UnixFS DAG.

A CARv1 is ``varint(len(header)) ‖ header`` followed by one ``varint(len(cid)+len(block)) ‖
cid ‖ block`` per block. The header is dag-cbor ``{"roots": [cid], "version": 1}``, encoded
here by hand (canonical key order: ``roots`` before ``version``).

The root is only known once the whole DAG has been built, but its *length* is known up front
(34 bytes for a CIDv0, 36 for a CIDv1 dag-pb sha2-256 CID), so the header has a fixed size.
:func:`write_car` therefore makes **one pass with bounded memory**: it writes a placeholder
header of the right length, streams every block to the file as the importer emits it (children
before parents), then seeks back and writes the real header. No temp file, no second read of
the source. For an output that cannot seek (a pipe), :func:`write_car_stream` makes two passes
over the source instead: one to compute the root, one to write.

Identical chunks give identical blocks; they are written each time they occur (importers
accept duplicate blocks), which keeps memory independent of the DAG size.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

from speak_encoder.errors import CarError
from speak_encoder.storage.cid import CID, DAG_PB, encode_varint
from speak_encoder.storage.unixfs import Entry, import_path

#: Bytes buffered before a write to the CAR file.
WRITE_BUFFER = 1024 * 1024


def car_header(root: CID) -> bytes:
    """The varint-prefixed dag-cbor header of a CARv1 with one root."""
    cid_bytes = b"\x00" + root.to_bytes()  # tag 42 wraps the identity-multibase binary CID
    if len(cid_bytes) > 255:
        raise CarError("CID too long for a CAR header")
    body = (
        b"\xa2"  # map(2)
        + b"\x65roots"  # text(5)
        + b"\x81"  # array(1)
        + b"\xd8\x2a"  # tag(42)
        + b"\x58"
        + bytes([len(cid_bytes)])  # bytes(n), n < 256
        + cid_bytes
        + b"\x67version"  # text(7)
        + b"\x01"  # unsigned(1)
    )
    return encode_varint(len(body)) + body


def _placeholder_root(cid_version: int) -> CID:
    zero = bytes(32)
    return CID.v0(zero) if cid_version == 0 else CID.v1(DAG_PB, zero)


class CarBlockWriter:
    """A :class:`~speak_encoder.storage.unixfs.BlockSink` that appends CAR sections."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.blocks = 0
        self.bytes_written = 0

    def put(self, cid: CID, data: bytes) -> None:
        cid_bytes = cid.to_bytes()
        prefix = encode_varint(len(cid_bytes) + len(data)) + cid_bytes
        self.out.write(prefix)
        self.out.write(data)
        self.blocks += 1
        self.bytes_written += len(prefix) + len(data)


def write_car(source: Path, out_path: Path, *, cid_version: int = 0) -> Entry:
    """Write the DAG of ``source`` (file, or folder wrapped as the root) to ``out_path``.

    One pass, bounded memory (see the module docstring). The file is written under a temporary
    name next to ``out_path`` and renamed when complete, so a crash never leaves a CAR with a
    placeholder header.
    """
    partial = out_path.with_name(out_path.name + ".partial")
    try:
        with open(partial, "wb", buffering=WRITE_BUFFER) as out:
            placeholder = car_header(_placeholder_root(cid_version))
            out.write(placeholder)
            entry = import_path(source, CarBlockWriter(out), cid_version=cid_version)
            header = car_header(entry.cid)
            if len(header) != len(placeholder):  # cannot happen for sha2-256 dag-pb/raw roots
                raise CarError(f"unexpected root CID length for {entry.cid}")
            out.flush()
            out.seek(0)
            out.write(header)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, out_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    return entry


def _root_car_header(entry: Entry) -> bytes:
    return car_header(entry.cid)


def write_car_stream(source: Path, out: BinaryIO, *, cid_version: int = 0) -> Entry:
    """Write a CAR to a non-seekable stream: pass 1 computes the root, pass 2 writes."""
    first = import_path(source, None, cid_version=cid_version)
    out.write(_root_car_header(first))
    second = import_path(source, CarBlockWriter(out), cid_version=cid_version)
    if second.cid != first.cid:
        raise CarError(f"{source} changed while the CAR was written")
    out.flush()
    return second


def iter_car(stream: BinaryIO) -> tuple[bytes, list[tuple[CID, int]]]:
    """Read a CAR's header bytes and the (CID, block length) list (small CARs, tests)."""
    header_len = _read_varint(stream)
    header = stream.read(header_len)
    sections: list[tuple[CID, int]] = []
    while True:
        try:
            length = _read_varint(stream)
        except EOFError:
            return header, sections
        section = stream.read(length)
        cid_len = 34 if section[:2] == b"\x12\x20" else 36
        sections.append((CID.from_bytes(section[:cid_len]), length - cid_len))


def _read_varint(stream: BinaryIO) -> int:
    shift = value = 0
    while True:
        byte = stream.read(1)
        if not byte:
            raise EOFError
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7


__all__ = [
    "WRITE_BUFFER",
    "CarBlockWriter",
    "car_header",
    "iter_car",
    "write_car",
    "write_car_stream",
]
