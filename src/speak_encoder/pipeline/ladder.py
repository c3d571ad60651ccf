"""The encoding ladder as data: loaded from ``data/ladder.toml`` or ``LADDER_FILE``.

Two kinds of table: one ``[[rung]]`` per rendition (size, rate caps, profile, level, audio) and
one optional ``[x264]`` table with the keyframe and x264 tuning shared by every rung. Those
defaults were chosen by measured quality per bit (``bench/quality.py``, bench/README.md); a
ladder file without ``[x264]`` gets them too.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from speak_encoder.errors import ConfigError

_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$")
_PROFILES = frozenset({"baseline", "main", "high"})
_LEVEL = re.compile(r"^[1-6](\.[0-2])?$")
_TUNES = frozenset({"film", "animation", "grain", "stillimage", "psnr", "ssim"})
_PSY_RD = re.compile(r"^[0-9](\.[0-9]{1,2})?:[0-9](\.[0-9]{1,2})?$")

#: Keyframes: ``"segment"`` = an IDR at every segment boundary and none forced in between (the
#: GOP is at most one segment), or a number of seconds between forced IDRs.
KEYFRAMES_AT_SEGMENTS = "segment"
#: Built-in x264 defaults (the measured choice; bench/README.md "Quality per bit").
DEFAULT_KEYFRAMES: str | int = KEYFRAMES_AT_SEGMENTS
#: x264 scene-cut threshold: extra IDRs at scene changes between the forced ones (0 = none).
DEFAULT_SCENECUT = 40
#: ``-tune`` (film: psy-rd 1.0:0.15, deblock -1:-1; measured -2.5 % bits against no tune).
DEFAULT_TUNE: str | None = "film"


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
class X264Defaults:
    """The ``[x264]`` table: keyframe placement and tuning shared by every rung.

    ``None`` = x264's own value for the preset (nothing passed to ffmpeg).
    """

    #: ``"segment"`` or seconds between forced IDRs (see :data:`KEYFRAMES_AT_SEGMENTS`).
    keyframes: str | int = DEFAULT_KEYFRAMES
    #: Scene-cut threshold (0 = no scene-cut keyframes, x264's default is 40).
    scenecut: int = DEFAULT_SCENECUT
    #: ``-tune`` (film, animation, grain, stillimage, psnr, ssim).
    tune: str | None = DEFAULT_TUNE
    #: Adaptive quantisation mode (0 off, 1 variance, 2 auto-variance, 3 with dark bias).
    aq_mode: int | None = None
    aq_strength: float | None = None
    #: Psycho-visual rate-distortion ``"rd:trellis"`` (x264's default "1.00:0.00").
    psy_rd: str | None = None


@dataclass(frozen=True, slots=True)
class Ladder:
    """The rungs, highest first, and the x264 defaults."""

    rungs: tuple[RungSpec, ...]
    x264: X264Defaults = field(default_factory=X264Defaults)

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


def _x264_from(table: object, where: str) -> X264Defaults:
    if table is None:
        return X264Defaults()
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [x264] must be a table")
    known = {"keyframes", "scenecut", "tune", "aq_mode", "aq_strength", "psy_rd"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: [x264] has unknown key(s) {', '.join(unknown)}")
    defaults = X264Defaults()
    keyframes = table.get("keyframes", defaults.keyframes)
    problems = []
    if keyframes != KEYFRAMES_AT_SEGMENTS and not (
        isinstance(keyframes, int) and not isinstance(keyframes, bool) and 1 <= keyframes <= 60
    ):
        problems.append(f'keyframes must be "{KEYFRAMES_AT_SEGMENTS}" or seconds (1-60)')
    scenecut = table.get("scenecut", defaults.scenecut)
    if not isinstance(scenecut, int) or isinstance(scenecut, bool) or not 0 <= scenecut <= 100:
        problems.append("scenecut must be an integer between 0 and 100")
    tune = table.get("tune", defaults.tune)
    if tune == "none":
        tune = None
    if tune is not None and tune not in _TUNES:
        problems.append(f"tune must be none or one of {', '.join(sorted(_TUNES))}")
    aq_mode = table.get("aq_mode")
    if aq_mode is not None and (not isinstance(aq_mode, int) or not 0 <= aq_mode <= 3):
        problems.append("aq_mode must be 0, 1, 2 or 3")
    aq_strength = table.get("aq_strength")
    if aq_strength is not None and (
        not isinstance(aq_strength, int | float) or not 0 <= aq_strength <= 3
    ):
        problems.append("aq_strength must be a number between 0 and 3")
    psy_rd = table.get("psy_rd")
    if psy_rd is not None and (not isinstance(psy_rd, str) or not _PSY_RD.match(psy_rd)):
        problems.append('psy_rd must look like "1.00:0.15"')
    if problems:
        raise ConfigError(f"{where}: [x264]: " + "; ".join(problems))
    return X264Defaults(
        keyframes=keyframes,
        scenecut=scenecut,
        tune=tune,
        aq_mode=aq_mode,
        aq_strength=None if aq_strength is None else float(aq_strength),
        psy_rd=psy_rd,
    )


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
    return Ladder(tuple(rungs), _x264_from(doc.get("x264"), where))


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


__all__ = [
    "DEFAULT_KEYFRAMES",
    "DEFAULT_SCENECUT",
    "DEFAULT_TUNE",
    "KEYFRAMES_AT_SEGMENTS",
    "Ladder",
    "RungSpec",
    "X264Defaults",
    "load_ladder",
    "parse_ladder",
]
