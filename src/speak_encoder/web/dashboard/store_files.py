"""The finished outputs the player may fetch from ``DATA_DIR/store/<CID>/``.

Only a valid CID, only plain names inside that folder (no ``..``, no hidden files, no symlink
out), only playlist / segment / image types (:data:`STORE_TYPES`).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Final

from speak_encoder.config import Settings
from speak_encoder.storage.cid import is_cid
from speak_encoder.storage.local_store import stored_path

#: What the player may fetch from the local store, by extension.
STORE_TYPES: Final = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".vtt": "text/vtt",
}
_PLAIN_NAME: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def store_file(settings: Settings, cid: str, path: str) -> Path | None:
    """The file ``path`` inside the stored folder of ``cid``, or None (never outside it)."""
    if not (cid.isalnum() and is_cid(cid)):
        return None
    parts = path.split("/")
    if not parts or len(parts) > 4 or not all(_PLAIN_NAME.match(p) for p in parts):
        return None
    if PurePosixPath(parts[-1]).suffix.lower() not in STORE_TYPES:
        return None
    root = stored_path(settings, cid)
    try:
        root_real = root.resolve(strict=True)
        target = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(root_real) or not target.is_file():
        return None
    return target


__all__ = ["STORE_TYPES", "store_file"]
