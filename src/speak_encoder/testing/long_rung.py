"""A long one-rung ladder made of hard links to one real segment (for scale tests and benches).

``link_rung(folder, segment, count, duration)`` writes ``folder/r/index.m3u8`` listing ``count``
links ``s_<i>.ts`` to ``segment`` (no extra bytes on disk) and a one-line
``folder/manifest.m3u8``: what a multi-hour source's rung looks like to the validator and the
master-playlist writer, built in milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

from speak_encoder.pipeline.m3u8 import format_duration


def link_rung(folder: Path, segment: Path, count: int, duration: float) -> Path:
    """Write the ladder described in the module docstring; return its rung folder."""
    rung = folder / "r"
    rung.mkdir(parents=True)
    lines = [
        "#EXTM3U", "#EXT-X-VERSION:6", f"#EXT-X-TARGETDURATION:{round(duration)}",
        "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS",
    ]  # fmt: skip
    for index in range(count):
        os.link(segment, rung / f"s_{index}.ts")
        lines += [f"#EXTINF:{format_duration(duration)},", f"s_{index}.ts"]
    lines.append("#EXT-X-ENDLIST")
    (rung / "index.m3u8").write_text("\n".join(lines) + "\n")
    (folder / "manifest.m3u8").write_text("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nr/index.m3u8\n")
    return rung


__all__ = ["link_rung"]
