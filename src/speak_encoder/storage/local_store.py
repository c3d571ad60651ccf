"""Embedded default storage: output folders kept by CID under ``DATA_DIR/store/<CID>/``.

No daemon is needed: after an encode the folder's CID is computed locally
(:func:`~speak_encoder.storage.unixfs.import_folder`) and the folder is *moved* into the store
with one ``rename`` (atomic, no copy) when the store is on the same file system. Across file
systems it is copied into ``store/.incoming-…`` first, checked, renamed into place, and only
then is the original removed. A folder whose CID is already stored is verified (its CID
recomputed) and the duplicate dropped; a stored folder that no longer matches its name is
replaced. Stored folders are 0700 and their files 0600 (they live in the node's private
DATA_DIR; the dashboard serves them through the node).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from speak_encoder.config import Settings
from speak_encoder.errors import CidMismatch
from speak_encoder.private_files import ensure_private_dir, make_tree_private
from speak_encoder.storage.cid import parse_cid
from speak_encoder.storage.unixfs import import_folder

#: Sub-folder of DATA_DIR that holds the stored outputs.
STORE_DIR_NAME = "store"


@dataclass(frozen=True, slots=True)
class StoredFolder:
    cid: str
    path: Path
    #: True when the CID was already in the store (the given folder was dropped).
    reused: bool


def store_root(settings: Settings) -> Path:
    return settings.data_dir / STORE_DIR_NAME


def stored_path(settings: Settings, cid: str) -> Path:
    """Where the folder of ``cid`` lives (it may not exist)."""
    parse_cid(cid)  # never build a path from something that is not a CID
    return store_root(settings) / cid


def _cid_of(folder: Path) -> str:
    return str(import_folder(folder))


def keep_folder(folder: Path, settings: Settings, *, cid: str | None = None) -> StoredFolder:
    """Move ``folder`` into the store under its CID (computed when not given)."""
    cid = cid or _cid_of(folder)
    dest = stored_path(settings, cid)
    if folder.resolve() == dest.resolve():
        return StoredFolder(cid, dest, reused=True)
    ensure_private_dir(settings.data_dir)
    ensure_private_dir(dest.parent)
    if dest.exists():
        if _cid_of(dest) == cid:
            shutil.rmtree(folder)
            return StoredFolder(cid, dest, reused=True)
        _discard(dest)  # damaged copy: replace it
    make_tree_private(folder)  # modes are not part of the CID: 0700 folders, 0600 files
    try:
        os.rename(folder, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_into_place(folder, dest, cid)
        shutil.rmtree(folder)
    return StoredFolder(cid, dest, reused=False)


def _copy_into_place(folder: Path, dest: Path, cid: str) -> None:
    incoming = dest.parent / f".incoming-{secrets.token_hex(6)}"
    try:
        shutil.copytree(folder, incoming)
        got = _cid_of(incoming)
        if got != cid:
            raise CidMismatch(
                f"copy of {folder} into the store has CID {got}, expected {cid}",
                expected=cid,
                got=got,
            )
        os.rename(incoming, dest)
    finally:
        if incoming.exists():
            shutil.rmtree(incoming, ignore_errors=True)


def _discard(path: Path) -> None:
    trash = path.parent / f".trash-{secrets.token_hex(6)}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


__all__ = ["STORE_DIR_NAME", "StoredFolder", "keep_folder", "store_root", "stored_path"]
