"""ffmpeg's answers to ``-version``, ``-filters`` and ``-encoders``, kept on disk between runs.

Every ``encode`` used to start three ffmpeg processes to learn what the binary can do, beside the
two ffprobes of the source. Each of them maps the whole libav* set: on a 640×272 source those
five processes at once were the peak of the job's process tree (up to 190 MB of summed RSS
against 126 MB while the ladder encodes; bench/README.md). The answers only change when the
binary does, so they are kept in ``<cache_dir>/ffmpeg-answers.json`` (0600, written atomically),
keyed by the binary's resolved path and identity (device, inode, size, modification time), and
trusted for :data:`MAX_AGE_S` at most (a library upgrade that leaves the binary's file alone is
noticed within a day). A missing, unreadable, malformed or oversized file is simply asked again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

#: File name inside the cache directory (DATA_DIR).
ANSWERS_NAME: Final = "ffmpeg-answers.json"
#: Bumped when the file's layout changes (an older file is asked again).
ANSWERS_FORMAT: Final = 1
#: Seconds an answer is trusted.
MAX_AGE_S: Final = 24 * 3600.0
#: Largest file read (the three answers of one Debian build are ~60 kB).
MAX_FILE_BYTES: Final = 1024 * 1024
#: Binaries remembered at most (an operator has one or two).
MAX_BINARIES: Final = 4


def binary_identity(ffmpeg: str) -> str | None:
    """``path:dev:ino:size:mtime_ns`` of the binary ``ffmpeg`` runs, or None if not found."""
    found = shutil.which(ffmpeg)
    if found is None:
        return None
    try:
        path = Path(found).resolve()
        info = path.stat()
    except OSError:
        return None
    return f"{path}:{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


def _load(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            return {}
        parsed = json.loads(data)
    except (OSError, ValueError):
        return {}
    if not isinstance(parsed, dict) or parsed.get("format") != ANSWERS_FORMAT:
        return {}
    binaries = parsed.get("binaries")
    return binaries if isinstance(binaries, dict) else {}


def _fresh_entry(binaries: Mapping[str, object], identity: str) -> dict[str, object] | None:
    entry = binaries.get(identity)
    if not isinstance(entry, dict):
        return None
    saved = entry.get("saved")
    if not isinstance(saved, int | float) or not 0 <= time.time() - saved <= MAX_AGE_S:
        return None
    return entry


def read_answers(cache_dir: Path, identity: str) -> dict[str, bytes]:
    """The kept stdout of ``ffmpeg -hide_banner <flag>`` by flag for this binary, if fresh."""
    entry = _fresh_entry(_load(cache_dir / ANSWERS_NAME), identity) or {}
    return {
        flag: answer.encode("utf-8", "surrogateescape")
        for flag, answer in entry.items()
        if flag != "saved" and isinstance(answer, str)
    }


def write_answers(cache_dir: Path, identity: str, answers: Mapping[str, bytes]) -> None:
    """Keep these answers of one binary (best effort: a cache that cannot be written is only a
    slower start); a stale entry is replaced, a fresh one completed."""
    path = cache_dir / ANSWERS_NAME
    binaries = _load(path)
    entry = _fresh_entry(binaries, identity) or {"saved": time.time()}
    entry.update({flag: out.decode("utf-8", "surrogateescape") for flag, out in answers.items()})
    binaries.pop(identity, None)
    binaries[identity] = entry
    while len(binaries) > MAX_BINARIES:
        binaries.pop(next(iter(binaries)))
    text = json.dumps({"format": ANSWERS_FORMAT, "binaries": binaries})
    try:
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, partial = tempfile.mkstemp(dir=cache_dir, prefix=".ffmpeg-answers-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
    except OSError as exc:
        log.debug("ffmpeg answers not kept in %s: %s", cache_dir, exc)


__all__ = [
    "ANSWERS_FORMAT",
    "ANSWERS_NAME",
    "MAX_AGE_S",
    "MAX_BINARIES",
    "MAX_FILE_BYTES",
    "binary_identity",
    "read_answers",
    "write_answers",
]
