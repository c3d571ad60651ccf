"""Private folders and files: what the node keeps under DATA_DIR and TEMP_DIR is its own.

The job store holds each job's webhook ``api_key``, a work folder holds a stranger's source and
its encode: nobody but the node's user may read them, whatever the umask it was started with.

* Folders are 0700 and files 0600 (:data:`PRIVATE_DIR_MODE`, :data:`PRIVATE_FILE_MODE`): set
  explicitly where the node creates them (:func:`ensure_private_dir`, :func:`private_file`,
  :func:`make_tree_private` for an output moved into the local store), and the node service
  runs with umask :data:`PRIVATE_UMASK`, which its ffmpeg children inherit.
* A work folder is made with an exclusive ``mkdir`` (:func:`make_work_dir`) and carries the
  marker :data:`WORK_MARKER` (the pid and start time of the process that uses it). TEMP_DIR
  may be a shared folder: a folder someone else created under a job's name, or a symlink in
  its place, is never used (a restarted job takes its folder back only when it is a real
  folder of this user) — the job stops with a
  :class:`~speak_encoder.errors.ConfigError` instead of writing where another user can read,
  or swap, the files.
* The start-up clean-up (:func:`is_stale_work_dir`, used by ``service.clean_work_dir``)
  removes only folders the node made: its naming, its owner, its marker, no process alive
  behind the marker; never a symlink, never a file, never anything else in TEMP_DIR.

Base folders (DATA_DIR, TEMP_DIR) are the operator's: they may be symlinks; they are made
0700 only when they belong to the node's user (``/tmp`` is never touched).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from pathlib import Path

import psutil

from speak_encoder.errors import ConfigError

#: Mode of every folder the node creates under DATA_DIR / TEMP_DIR.
PRIVATE_DIR_MODE = 0o700
#: Mode of every file the node creates there.
PRIVATE_FILE_MODE = 0o600
#: The node service's umask (files 0600, folders 0700 for itself and its ffmpeg children).
PRIVATE_UMASK = 0o077
#: Marker file inside each work folder: ``<pid> <process start time>`` of its user.
WORK_MARKER = ".speak-encoder-work"
#: Work folders of ``speak-encoder encode`` (``job-<32 hex>``); the node's are job ids.
ENCODE_DIR = re.compile(r"job-[0-9a-f]{32}")
#: Longest marker read back (it is two numbers).
_MARKER_BYTES = 64

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _own(info: os.stat_result) -> bool:
    return info.st_uid == os.geteuid()


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if missing; make it 0700 when it is this user's.

    A folder owned by someone else is left as it is (e.g. a shared ``/tmp``); what the node
    puts inside it is protected by :func:`make_work_dir`.
    """
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    info = path.stat()
    if _own(info) and stat.S_IMODE(info.st_mode) != PRIVATE_DIR_MODE:
        with contextlib.suppress(PermissionError):
            path.chmod(PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if missing (never through a symlink); make an
    existing file of this user 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, PRIVATE_FILE_MODE)
    except FileExistsError:
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISREG(info.st_mode) and _own(info) and mode != PRIVATE_FILE_MODE:
            path.chmod(PRIVATE_FILE_MODE)
        return path
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
    return path


def open_private(path: Path) -> int:
    """``open(path, "wb")`` as a file descriptor with mode 0600, refusing a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, PRIVATE_FILE_MODE)
    os.fchmod(fd, PRIVATE_FILE_MODE)
    return fd


def make_tree_private(folder: Path) -> None:
    """Folders 0700 and files 0600 in ``folder`` and below (symlinks are never followed)."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        os.chmod(root, PRIVATE_DIR_MODE, follow_symlinks=False)
        del dirs  # walked next (a symlink to a folder is listed but never entered)
        for name in files:
            entry = Path(root, name)
            if not entry.is_symlink():
                entry.chmod(PRIVATE_FILE_MODE)


def _process_stamp(pid: int) -> str:
    try:
        return f"{pid} {psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return f"{pid} 0"


def _write_marker(folder: Path) -> None:
    marker = folder / WORK_MARKER
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()  # a stale marker of an earlier run (or of a crash)
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, PRIVATE_FILE_MODE)
    try:
        os.write(fd, _process_stamp(os.getpid()).encode("ascii"))
    finally:
        os.close(fd)


def _unsafe(folder: Path, why: str) -> ConfigError:
    return ConfigError(
        f"refusing the work folder {folder}: {why}. Someone else may be able to write to "
        "TEMP_DIR: give the node a folder of its own (see `speak-encoder doctor`)"
    )


def check_work_dir(folder: Path) -> None:
    """Raise :class:`ConfigError` unless ``folder`` can be taken back as a work folder: a real
    folder (not a symlink) that belongs to this user — nobody else can have made it. It is made
    0700 again (a folder of an older version may be 0755)."""
    try:
        info = folder.lstat()
    except FileNotFoundError:
        raise _unsafe(folder, "it does not exist") from None
    if stat.S_ISLNK(info.st_mode):
        raise _unsafe(folder, "it is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise _unsafe(folder, "it is not a folder")
    if not _own(info):
        raise _unsafe(folder, f"it belongs to another user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) != PRIVATE_DIR_MODE:
        folder.chmod(PRIVATE_DIR_MODE)
    marker = folder / WORK_MARKER
    if marker.is_symlink() or (marker.exists() and not marker.is_file()):
        raise _unsafe(folder, "its work marker is not a file")


def make_work_dir(folder: Path, *, resume: bool = False) -> Path:
    """Create the work folder ``folder`` (0700, with the marker) inside its base folder.

    With ``resume`` an existing folder is taken back only if :func:`check_work_dir` accepts it
    (a restarted job finds its checkpoints there); any other existing entry is refused.
    """
    ensure_private_dir(folder.parent)
    try:
        folder.mkdir(mode=PRIVATE_DIR_MODE)
    except FileExistsError:
        if not resume:
            raise _unsafe(folder, "it exists already") from None
        check_work_dir(folder)
    else:
        folder.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is reduced by the umask, never raised
    _write_marker(folder)
    return folder


def _marker_owner_alive(marker: Path) -> bool:
    """Whether the process recorded in ``marker`` still runs (same pid *and* start time)."""
    try:
        fd = os.open(marker, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return False
    try:
        text = os.read(fd, _MARKER_BYTES).decode("ascii", "replace").split()
    finally:
        os.close(fd)
    if len(text) != 2 or not text[0].isdigit():
        return False
    pid = int(text[0])
    if pid == os.getpid():
        return False  # this process starts now: what it left before a restart is stale
    return _process_stamp(pid) == f"{pid} {text[1]}"


def is_stale_work_dir(entry: os.DirEntry[str], *, named: bool) -> bool:
    """Whether the start-up clean-up may remove ``entry``: ``named`` (the node's naming),
    a real folder of this user with the node's marker, its process gone."""
    if not named or entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
        return False
    try:
        if not _own(entry.stat(follow_symlinks=False)):
            return False
        marker = Path(entry.path) / WORK_MARKER
        info = marker.lstat()
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or not _own(info):
        return False
    return not _marker_owner_alive(marker)


def remove_tree(path: Path) -> None:
    """Remove a folder without following any symlink inside it."""
    shutil.rmtree(path, ignore_errors=True)


__all__ = [
    "ENCODE_DIR",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "PRIVATE_UMASK",
    "WORK_MARKER",
    "check_work_dir",
    "ensure_private_dir",
    "is_stale_work_dir",
    "make_tree_private",
    "make_work_dir",
    "open_private",
    "private_file",
    "remove_tree",
]
