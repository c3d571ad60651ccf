"""Check 6 of an encoded HLS folder (docs/encoding.md §6): it holds exactly what is referenced.

The folder holds exactly the files the playlists reference — plus, at the root, the poster
thumbnail.jpg (a JPEG) and storyboard.vtt with the sprite its cues point into (storyboard.jpg;
every cue inside it, and the cues cover the video: check 3). No symbolic link, no folder no
playlist references, nothing that is not a regular file. Blocking (run in a thread); memory
stays bounded: the folder is walked with ``os.scandir``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from speak_encoder.errors import OutputInvalid
from speak_encoder.pipeline.extras import POSTER_NAME, STORYBOARD_VTT
from speak_encoder.pipeline.hls import read_playlist_text
from speak_encoder.pipeline.jpeg import JpegError, read_jpeg_size
from speak_encoder.pipeline.m3u8 import check_relative_uri
from speak_encoder.pipeline.storyboard import (
    StoryboardError,
    check_coverage,
    check_cues,
    parse_storyboard,
)
from speak_encoder.pipeline.verify_checks import Collector

#: Files allowed at the root besides the playlists and segments (and the storyboard's sprite,
#: which its WebVTT references).
ALLOWED_ROOT_EXTRAS = frozenset({POSTER_NAME, STORYBOARD_VTT})


def _parents(paths: Iterable[str]) -> set[str]:
    folders: set[str] = set()
    for path in paths:
        folders.update(str(parent) for parent in PurePosixPath(path).parents if str(parent) != ".")
    return folders


def check_root_extras(
    folder: Path, referenced: set[str], duration: float | None, out: Collector
) -> None:
    """The poster must be a JPEG; the storyboard's sprite is referenced by its WebVTT, whose
    cues point inside the sprite (6) and cover the ``duration`` of the video (3). Blocking."""
    poster = folder / POSTER_NAME
    if poster.is_file() and not poster.is_symlink():
        try:
            read_jpeg_size(poster)
        except (JpegError, OSError) as exc:
            out.add(6, POSTER_NAME, f"is not a JPEG image: {exc}")
    vtt = folder / STORYBOARD_VTT
    if not vtt.is_file() or vtt.is_symlink():
        return
    try:
        cues = parse_storyboard(read_playlist_text(vtt, where=STORYBOARD_VTT))
    except (OutputInvalid, StoryboardError) as exc:
        out.add(6, STORYBOARD_VTT, f"is not a storyboard WebVTT: {exc}")
        return
    for image in sorted({cue.image for cue in cues}):
        reason = check_relative_uri(image)
        if reason is not None:
            out.add(6, STORYBOARD_VTT, f"references {image!r}: {reason}")
            continue
        referenced.add(image)
        try:
            sprite = read_jpeg_size(folder / image)
        except FileNotFoundError:
            continue  # reported missing
        except (JpegError, OSError) as exc:
            out.add(6, image, f"is not a JPEG image: {exc}")
            continue
        for problem in check_cues([cue for cue in cues if cue.image == image], sprite):
            out.add(6, STORYBOARD_VTT, problem, group=STORYBOARD_VTT)
    if duration is not None:
        for problem in check_coverage(cues, duration):
            out.add(3, STORYBOARD_VTT, problem, group=STORYBOARD_VTT)


def check_folder_contents(folder: Path, referenced: set[str], out: Collector) -> None:
    """Check 6 (blocking): no referenced file missing, nothing else in the folder."""
    expected_dirs = _parents(referenced)
    found: set[str] = set()
    stack = [""]
    while stack:
        relative = stack.pop()
        try:
            with os.scandir(folder / relative if relative else folder) as entries:
                for entry in entries:
                    _visit(entry, relative, referenced, expected_dirs, found, stack, out)
        except OSError as exc:
            out.add(6, relative or ".", f"cannot be listed: {exc.strerror or exc}", group="extra")
    for path in sorted(referenced - found):
        out.add(6, path, "is referenced by a playlist but missing from the folder", group="missing")


def _visit(
    entry: os.DirEntry[str],
    parent: str,
    referenced: set[str],
    expected_dirs: set[str],
    found: set[str],
    stack: list[str],
    out: Collector,
) -> None:
    path = f"{parent}/{entry.name}" if parent else entry.name
    if entry.is_symlink():
        out.add(6, path, "is a symbolic link (not allowed in a published folder)", group="extra")
    elif entry.is_dir(follow_symlinks=False):
        if path in expected_dirs:
            stack.append(path)
        else:
            out.add(6, path + "/", "is a folder no playlist references", group="extra")
    elif not entry.is_file(follow_symlinks=False):
        out.add(6, path, "is not a regular file", group="extra")
    elif path in referenced:
        found.add(path)
    elif not (parent == "" and entry.name in ALLOWED_ROOT_EXTRAS):
        out.add(
            6,
            path,
            f"is not referenced by any playlist (only {', '.join(sorted(ALLOWED_ROOT_EXTRAS))} "
            "may be added at the root)",
            group="extra",
        )


__all__ = [
    "ALLOWED_ROOT_EXTRAS",
    "check_folder_contents",
    "check_root_extras",
]
