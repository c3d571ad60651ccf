"""The encoding ladder as data: loaded from ``data/ladder.toml`` or ``LADDER_FILE``."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from speak_encoder.errors import ConfigError

_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$")
_PROFILES = frozenset({"baseline", "main", "high"})
_LEVEL = re.compile(r"^[1-6](\.[0-2])?$")


@dataclass(frozen=True, slots=True)
class RungSpec:
    """One row of the ladder table."""

    name: str
    height: int
    video_kbps: int
    max_kbps: int
    buffer_kbps: int
    profile: str
    level: str
    audio_kbps: int


@dataclass(frozen=True, slots=True)
class Ladder:
    """The rungs, highest first."""

    rungs: tuple[RungSpec, ...]

    def names(self) -> list[str]:
        return [r.name for r in self.rungs]

    def select(self, names: list[str]) -> tuple[RungSpec, ...]:
        """The rungs called ``names`` (in ladder order); unknown names are a ConfigError."""
        unknown = [n for n in names if n not in self.names()]
        if unknown:
            raise ConfigError(
                f"unknown rung(s) {', '.join(unknown)}: the ladder has {', '.join(self.names())}"
            )
        return tuple(r for r in self.rungs if r.name in names)


def _rung_from(row: dict[str, Any], where: str) -> RungSpec:
    try:
        rung = RungSpec(
            name=str(row["name"]),
            height=int(row["height"]),
            video_kbps=int(row["video_kbps"]),
            max_kbps=int(row["max_kbps"]),
            buffer_kbps=int(row["buffer_kbps"]),
            profile=str(row["profile"]),
            level=str(row["level"]),
            audio_kbps=int(row["audio_kbps"]),
        )
    except KeyError as exc:
        raise ConfigError(f"{where}: a rung is missing the key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: a rung has an invalid value ({exc})") from None
    problems = []
    if not _NAME.match(rung.name):
        problems.append("name must be letters, digits, - or _")
    if not 16 <= rung.height <= 4320 or rung.height % 2:
        problems.append("height must be an even number between 16 and 4320")
    if not 0 < rung.video_kbps <= rung.max_kbps <= rung.buffer_kbps * 4:
        problems.append("need 0 < video_kbps <= max_kbps and a sane buffer_kbps")
    if rung.profile not in _PROFILES:
        problems.append(f"profile must be one of {', '.join(sorted(_PROFILES))}")
    if not _LEVEL.match(rung.level):
        problems.append("level must look like 3.1 or 4")
    if not 32 <= rung.audio_kbps <= 512:
        problems.append("audio_kbps must be between 32 and 512")
    if problems:
        raise ConfigError(f"{where}: rung {rung.name!r}: " + "; ".join(problems))
    return rung


def parse_ladder(text: str, where: str = "ladder") -> Ladder:
    """Parse a ladder TOML document (pure)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    rows = doc.get("rung")
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{where}: needs at least one [[rung]] table")
    rungs = sorted((_rung_from(row, where) for row in rows), key=lambda r: -r.height)
    names = [r.name for r in rungs]
    if len(set(names)) != len(names) or len({r.height for r in rungs}) != len(rungs):
        raise ConfigError(f"{where}: rung names and heights must be unique")
    return Ladder(tuple(rungs))


def load_ladder(path: Path | None = None) -> Ladder:
    """The operator's ladder file, or the built-in table."""
    if path is None:
        text = resources.files("speak_encoder").joinpath("data/ladder.toml").read_text("utf-8")
        return parse_ladder(text, "built-in ladder")
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"LADDER_FILE {str(path)!r} cannot be read: {exc.strerror}") from None
    return parse_ladder(text, f"LADDER_FILE {str(path)!r}")
