"""One node per data folder: ``run`` holds an exclusive OS lock on ``DATA_DIR/node.lock``.

Like Kubo's ``repo.lock``: an ``flock`` taken by the running node and released by the kernel
when the process ends, whatever the way (a ``kill -9`` included), so there is never a stale
lock to remove by hand. The file holds the owner's pid for the message a second ``run`` prints
("another node (pid N) owns DATA_DIR …"). Read-only commands (``jobs list/show``, ``doctor``)
never take it and work beside a running node.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from speak_encoder.errors import ConfigError
from speak_encoder.private_files import ensure_private_dir

#: The lock file's name inside DATA_DIR.
LOCK_NAME = "node.lock"


class DataDirLock:
    """The exclusive lock of one data folder (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        """Take the lock or raise :class:`ConfigError` (exit 1) naming the node holding it."""
        ensure_private_dir(self.data_dir)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise ConfigError(
                f"another node ({who}) owns DATA_DIR {self.data_dir}: stop it first, or give "
                "this node its own --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


__all__ = ["LOCK_NAME", "DataDirLock"]
