"""UnixFS / dag-pb importer: the CIDs ``ipfs add`` gives, computed locally, streaming.

Pure Python, no dependency. It reproduces the Kubo (and js-ipfs) defaults byte for byte:

* files cut in fixed 256 KiB chunks (``size-262144``);
* a *balanced* DAG with at most 174 links per node: leaves are grouped by 174 into parents,
  parents by 174 again, … until one node remains (a one-chunk file is its own leaf);
* dag-pb nodes encoded as go/js-ipfs do: ``PBNode`` with the Links (field 2) written before the
  Data (field 1); ``PBLink`` Hash (1), Name (2, always present, ``""`` inside files), Tsize (3);
  the UnixFS ``Data`` message with Type (1), Data (2), filesize (3), blocksizes (4, unpacked);
* CIDv0 (``Qm…``, the network's default): leaves are dag-pb ``File`` nodes wrapping the chunk;
* CIDv1 (``bafy…``, ``--cid-version=1`` semantics): raw leaves (``bafk…`` for a one-chunk
  file), dag-pb CIDv1 for every other node;
* directories: links sorted by the bytes of their names, ``Tsize`` = the child's cumulative
  size (its block plus all the blocks below it), exactly as Kubo computes it.

Folders (:func:`import_folder`) are imported the way the encoder uploads them (docs/protocols.md §6:
``add?wrap-with-directory=true`` with one multipart part per file named by its relative path):
the root is the directory of the folder's *contents*. Only regular files are imported
(symlinks to files are followed); directories without any file are skipped, because a
file-per-part upload cannot carry them. :func:`walk_files` gives the same files in the same
order, for the uploader.

Memory does not grow with the size of a file: chunks are read one at a time into a reused
buffer and streamed through sha256; only the pending links of each DAG level are kept (at most
174 × depth). A directory keeps one link per entry (its listing), which is bounded by the
sharding limit below.

HAMT sharding is **not implemented**. Kubo turns a directory into a HAMT shard when the
estimated size of its links (name bytes + CID bytes, summed) reaches 256 KiB
(``Import.UnixFSHAMTDirectorySizeThreshold``; older Kubo switches at ``>=``, newer at ``>``);
for such a directory the CIDs would differ, so :func:`import_folder` refuses it (boundary
included) with :class:`HamtShardingRequired`. The encoder's output (a
manifest and one folder per rung with ``<rung>_<n>.ts`` segments) stays far below this: ~5 000
segments per rung. (js-ipfs shards by entry count instead, above 1 000 entries; the tests stay
below both.)

Every block produced can be handed to a :class:`BlockSink` (e.g. the CAR writer) as it is made,
children before parents.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from speak_encoder.errors import HamtShardingRequired, UnixfsError, UnsupportedFileType
from speak_encoder.storage.cid import CID, DAG_PB, RAW, encode_varint

#: Kubo's default chunker: fixed 256 KiB chunks.
CHUNK_SIZE = 256 * 1024
#: Kubo's default maximum number of links per node of a balanced file DAG.
MAX_LINKS = 174
#: Kubo's default HAMT threshold: estimated size of a directory's links, in bytes.
HAMT_THRESHOLD = 256 * 1024

#: UnixFS Data.Type values.
UNIXFS_DIRECTORY = 1
UNIXFS_FILE = 2


class BlockSink(Protocol):
    """Receives every block as it is created (children before their parents)."""

    def put(self, cid: CID, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Entry:
    """Result of an import: the root CID and sizes as ``ipfs add`` reports them.

    ``size`` is the cumulative DAG size (``Tsize`` in a parent link, ``Size`` in the add
    response); ``file_size`` is the number of content bytes.
    """

    cid: CID
    size: int
    file_size: int

    def __str__(self) -> str:
        return self.cid.encode()


# --- protobuf encoding -----------------------------------------------------------------------


def _key(field: int, wire_type: int) -> bytes:
    return encode_varint((field << 3) | wire_type)


def _bytes_field(field: int, value: bytes) -> bytes:
    return _key(field, 2) + encode_varint(len(value)) + value


def _varint_field(field: int, value: int) -> bytes:
    return _key(field, 0) + encode_varint(value)


def unixfs_data(
    kind: int,
    data: bytes | None = None,
    filesize: int | None = None,
    blocksizes: tuple[int, ...] | list[int] = (),
) -> bytes:
    """Encode a UnixFS ``Data`` message (empty ``data`` is omitted, as both go and js do)."""
    out = _varint_field(1, kind)
    if data:
        out += _bytes_field(2, data)
    if filesize is not None:
        out += _varint_field(3, filesize)
    for size in blocksizes:
        out += _varint_field(4, size)
    return out


@dataclass(frozen=True, slots=True)
class Link:
    """A dag-pb link."""

    cid: CID
    name: bytes
    tsize: int


def encode_link(link: Link) -> bytes:
    body = (
        _bytes_field(1, link.cid.to_bytes())
        + _bytes_field(2, link.name)
        + _varint_field(3, link.tsize)
    )
    return _bytes_field(2, body)


def encode_node(links: list[Link], data: bytes) -> bytes:
    """Encode a ``PBNode``: every link (field 2) first, then the data (field 1)."""
    return b"".join(encode_link(link) for link in links) + _bytes_field(1, data)


def _cid_for(codec: int, digest: bytes, version: int) -> CID:
    return CID.v0(digest) if version == 0 else CID.v1(codec, digest)


def _check_version(cid_version: int) -> None:
    if cid_version not in (0, 1):
        raise UnixfsError(f"CID version must be 0 or 1, not {cid_version}")


# --- files -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FileNode:
    """A node of a file DAG, as its parent needs it."""

    cid: CID
    tsize: int  # cumulative size of the block and everything below it
    file_size: int  # content bytes under this node


class _FileBuilder:
    """Incremental balanced-DAG builder: same shape as js-ipfs' ``reduceToParents``."""

    def __init__(self, cid_version: int, sink: BlockSink | None) -> None:
        self.version = cid_version
        self.sink = sink
        self.levels: list[list[_FileNode]] = [[]]
        self.leaves = 0

    def add_chunk(self, chunk: memoryview) -> None:
        self._push(0, self._leaf(chunk))
        self.leaves += 1

    def _leaf(self, chunk: memoryview) -> _FileNode:
        size = len(chunk)
        if self.version == 1:
            if self.sink is not None:
                block = bytes(chunk)
                cid = CID.v1(RAW, hashlib.sha256(block).digest())
                self.sink.put(cid, block)
            else:
                cid = CID.v1(RAW, hashlib.sha256(chunk).digest())
            return _FileNode(cid, size, size)
        # dag-pb leaf: PBNode{Data: UnixFS{Type: File, Data: chunk, filesize}}; hashed without
        # building the block when nobody wants it.
        tail = _varint_field(3, size)
        inner_len = len(_varint_field(1, UNIXFS_FILE)) + len(tail)
        if size:
            inner_len += 1 + len(encode_varint(size)) + size
        head = _key(1, 2) + encode_varint(inner_len) + _varint_field(1, UNIXFS_FILE)
        if size:
            head += _key(2, 2) + encode_varint(size)
        block_len = len(head) + size + len(tail)
        if self.sink is not None:
            block = b"".join((head, chunk, tail))
            cid = CID.v0(hashlib.sha256(block).digest())
            self.sink.put(cid, block)
        else:
            hasher = hashlib.sha256(head)
            hasher.update(chunk)
            hasher.update(tail)
            cid = CID.v0(hasher.digest())
        return _FileNode(cid, block_len, size)

    def _push(self, level: int, node: _FileNode) -> None:
        nodes = self.levels[level]
        if len(nodes) == MAX_LINKS:
            parent = self._parent(nodes)
            self.levels[level] = nodes = []
            if level + 1 == len(self.levels):
                self.levels.append([])
            self._push(level + 1, parent)
        nodes.append(node)

    def _parent(self, children: list[_FileNode]) -> _FileNode:
        links = [Link(child.cid, b"", child.tsize) for child in children]
        sizes = [child.file_size for child in children]
        file_size = sum(sizes)
        block = encode_node(links, unixfs_data(UNIXFS_FILE, None, file_size, sizes))
        cid = _cid_for(DAG_PB, hashlib.sha256(block).digest(), self.version)
        if self.sink is not None:
            self.sink.put(cid, block)
        return _FileNode(cid, len(block) + sum(child.tsize for child in children), file_size)

    def finish(self) -> _FileNode:
        if self.leaves == 0:  # empty file: one empty leaf
            self.add_chunk(memoryview(b""))
        level = 0
        while True:
            nodes = self.levels[level]
            top = level + 1 == len(self.levels)
            if top:
                if level == 0 and len(nodes) == 1:
                    return nodes[0]  # one chunk: the leaf is the file
                return self._parent(nodes)
            self._push(level + 1, self._parent(nodes))
            level += 1


def _read_full(stream: BinaryIO, buf: bytearray) -> int:
    """Fill ``buf`` from ``stream``; return the number of bytes read (short only at EOF)."""
    view = memoryview(buf)
    filled = 0
    while filled < len(buf):
        got = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            break
        filled += got
    return filled


def import_stream(
    stream: BinaryIO,
    sink: BlockSink | None = None,
    *,
    cid_version: int = 0,
    on_chunk: Callable[[memoryview], None] | None = None,
) -> Entry:
    """Import the bytes of a binary stream as one UnixFS file.

    ``on_chunk`` sees every chunk as it is read (one read of a file serves another pass too).
    """
    _check_version(cid_version)
    builder = _FileBuilder(cid_version, sink)
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    while n := _read_full(stream, buf):
        builder.add_chunk(view[:n])
        if on_chunk is not None:
            on_chunk(view[:n])
        if n < CHUNK_SIZE:
            break
    node = builder.finish()
    return Entry(node.cid, node.tsize, node.file_size)


class FileImporter:
    """:func:`import_stream` fed by pushes: ``update(bytes)`` as the bytes arrive (e.g. while a
    download is written), ``finish()`` for the file's :class:`Entry`. Holds at most one chunk."""

    def __init__(self, *, cid_version: int = 0, sink: BlockSink | None = None) -> None:
        _check_version(cid_version)
        self._builder = _FileBuilder(cid_version, sink)
        self._pending = bytearray()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            room = CHUNK_SIZE - len(self._pending)
            if not self._pending and len(view) >= CHUNK_SIZE:
                self._builder.add_chunk(view[:CHUNK_SIZE])  # no copy for whole chunks
                view = view[CHUNK_SIZE:]
                continue
            self._pending += view[:room]
            view = view[room:]
            if len(self._pending) == CHUNK_SIZE:
                self._builder.add_chunk(memoryview(self._pending))
                self._pending = bytearray()

    def finish(self) -> Entry:
        if self._pending:
            self._builder.add_chunk(memoryview(self._pending))
            self._pending = bytearray()
        node = self._builder.finish()
        return Entry(node.cid, node.tsize, node.file_size)


def import_file(
    path: Path,
    sink: BlockSink | None = None,
    *,
    cid_version: int = 0,
    on_chunk: Callable[[memoryview], None] | None = None,
) -> Entry:
    """Import a regular file (one 256 KiB chunk in memory at a time)."""
    with open(path, "rb", buffering=0) as stream:
        return import_stream(stream, sink, cid_version=cid_version, on_chunk=on_chunk)


def import_bytes(data: bytes, sink: BlockSink | None = None, *, cid_version: int = 0) -> Entry:
    """Import small in-memory content (tests, playlists)."""
    return import_stream(io.BytesIO(data), sink, cid_version=cid_version)


# --- directories -----------------------------------------------------------------------------


def _name_bytes(name: str) -> bytes:
    return os.fsencode(name)


def _listing(folder: Path) -> list[tuple[bytes, Path, bool]]:
    """Entries of ``folder`` as (name bytes, path, is_dir), sorted by name bytes.

    Regular files and directories only (symlinks followed); anything else is refused.
    """
    entries: list[tuple[bytes, Path, bool]] = []
    with os.scandir(folder) as scan:
        for item in scan:
            path = Path(item.path)
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                raise UnsupportedFileType(f"{path}: dangling symbolic link") from None
            if stat.S_ISDIR(mode):
                entries.append((_name_bytes(item.name), path, True))
            elif stat.S_ISREG(mode):
                entries.append((_name_bytes(item.name), path, False))
            else:
                raise UnsupportedFileType(f"{path}: not a regular file or a directory")
    entries.sort(key=lambda entry: entry[0])
    return entries


def walk_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """Files under ``folder`` as (relative POSIX path, path), in the importer's order.

    Depth first, each directory's entries sorted by name bytes, so every directory's files are
    contiguous (what Kubo's multipart reader expects).
    """
    yield from _walk(folder, "")


def _walk(folder: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for name, path, is_dir in _listing(folder):
        rel = prefix + os.fsdecode(name)
        if is_dir:
            yield from _walk(path, rel + "/")
        else:
            yield rel, path


def _directory(links: list[Link], sink: BlockSink | None, cid_version: int, where: Path) -> Entry:
    estimated = sum(len(link.name) + len(link.cid.to_bytes()) for link in links)
    if estimated >= HAMT_THRESHOLD:  # Kubo ≤ 0.3x: >=, newer: > — refuse the boundary too
        raise HamtShardingRequired(
            f"{where}: {len(links)} entries ({estimated} bytes of links) exceed Kubo's "
            f"{HAMT_THRESHOLD}-byte directory threshold; Kubo would shard it (HAMT), which is "
            "not supported: split the folder"
        )
    block = encode_node(links, unixfs_data(UNIXFS_DIRECTORY))
    cid = _cid_for(DAG_PB, hashlib.sha256(block).digest(), cid_version)
    if sink is not None:
        sink.put(cid, block)
    return Entry(cid, len(block) + sum(link.tsize for link in links), 0)


#: A cache of file entries computed earlier: the entry of ``path`` if still valid, else None.
KnownFiles = Callable[[Path], "Entry | None"]


def _import_dir(
    folder: Path, sink: BlockSink | None, cid_version: int, known: KnownFiles | None = None
) -> Entry | None:
    links: list[Link] = []
    total = 0
    for name, path, is_dir in _listing(folder):
        if is_dir:
            child = _import_dir(path, sink, cid_version, known)
            if child is None:
                continue  # no file below: an upload cannot carry it either
        else:
            cached = known(path) if known is not None else None
            child = cached or import_file(path, sink, cid_version=cid_version)
        links.append(Link(child.cid, name, child.size))
        total += child.file_size
    if not links:
        return None
    entry = _directory(links, sink, cid_version, folder)
    return Entry(entry.cid, entry.size, total)


def import_folder(
    folder: Path,
    sink: BlockSink | None = None,
    *,
    cid_version: int = 0,
    known: KnownFiles | None = None,
) -> Entry:
    """Import a folder as the node does for the encoder's wrapped upload (see module doc).

    The root is a directory holding the folder's contents; ``file_size`` is the sum of the
    files' sizes. A folder without any file gives the empty directory. ``known`` gives the
    entries of files already hashed (the encoder hashes segments while ffmpeg still runs); it
    cannot be combined with a ``sink`` (their blocks were not kept).
    """
    _check_version(cid_version)
    if known is not None and sink is not None:
        raise ValueError("known file entries cannot be combined with a block sink")
    if not folder.is_dir():
        raise UnixfsError(f"{folder} is not a directory")
    entry = _import_dir(folder, sink, cid_version, known)
    if entry is None:
        return _directory([], sink, cid_version, folder)
    return entry


def import_path(path: Path, sink: BlockSink | None = None, *, cid_version: int = 0) -> Entry:
    """A file's own CID, or a folder's wrapped root (what ``speak-encoder cid`` prints)."""
    if path.is_dir():
        return import_folder(path, sink, cid_version=cid_version)
    if path.is_file():
        return import_file(path, sink, cid_version=cid_version)
    if not path.exists():
        raise UnixfsError(f"{path} does not exist")
    raise UnsupportedFileType(f"{path}: not a regular file or a directory")


__all__ = [
    "CHUNK_SIZE",
    "HAMT_THRESHOLD",
    "MAX_LINKS",
    "BlockSink",
    "Entry",
    "HamtShardingRequired",
    "Link",
    "UnixfsError",
    "UnsupportedFileType",
    "encode_node",
    "import_bytes",
    "import_file",
    "import_folder",
    "import_path",
    "import_stream",
    "unixfs_data",
    "walk_files",
]
