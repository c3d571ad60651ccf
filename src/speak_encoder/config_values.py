"""The raw material of the settings: env-file lines and text turned into typed values.

:mod:`speak_encoder.config` holds the table of settings; this module holds the two generic
steps under it, with no knowledge of any particular setting:

* :func:`read_env_file` — ``KEY=VALUE`` lines (the dotenv format, as the Node.js encoder's
  ``dotenv`` reads it): blank lines and ``#`` comments are skipped, an ``export`` prefix is
  allowed, a value may be quoted (``'literal'`` or ``"with \\n \\t \\" \\\\ escapes"``), an
  unquoted value ends at a `` #`` comment. Values are taken literally: no ``${VAR}``
  expansion, so a ``$`` in a key or password stays what it is. A line that is none of these is
  an error naming the file and line (never its text: it may hold a secret), as is a file over
  :data:`MAX_ENV_FILE_BYTES`.
* :func:`coerce` — one value (text from the environment or a file, or a Python value from a
  command-line flag or a test) to the type a setting declares: ``str``, ``int``, ``float``,
  ``bool``, ``Path``, :class:`~speak_encoder.secret_str.SecretStr`, or any of them ``| None``
  (where an empty text means "not set"), then the setting's bounds. A wrong value raises
  ``ValueError`` with a message meant for an operator.
"""

from __future__ import annotations

import math
import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Union, get_args, get_origin

from speak_encoder.errors import ConfigError
from speak_encoder.secret_str import SecretStr

#: Largest env file read (bytes): a settings file is a few kB; anything bigger is a mistake.
MAX_ENV_FILE_BYTES: Final = 1024 * 1024
#: Texts a boolean setting accepts (any case).
TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on", "t", "y"})
FALSE_WORDS: Final = frozenset({"0", "false", "no", "off", "f", "n"})

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}
_INTEGER = re.compile(r"[+-]?\d+")


# --- env files -----------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` pairs of the env file at ``path`` (the rules of the module docstring)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_ENV_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the env file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_ENV_FILE_BYTES:
        raise ConfigError(
            f"the env file {path} is larger than {MAX_ENV_FILE_BYTES // 1024} KiB: "
            "not a settings file?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"the env file {path} is not UTF-8 text") from None
    try:
        return parse_env_text(text)
    except ValueError as exc:
        raise ConfigError(f"the env file {path}, {exc}") from None


def parse_env_text(text: str) -> dict[str, str]:
    """The pairs of an env file's text; ``ValueError("line N: …")`` on a malformed line."""
    pairs: dict[str, str] = {}
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise ValueError(f"line {number}: expected KEY=VALUE")
        try:
            pairs[key] = _value(rest.strip())
        except ValueError as exc:
            raise ValueError(f"line {number} ({key}): {exc}") from None
    return pairs


def _value(text: str) -> str:
    if not text:
        return ""
    quote = text[0]
    if quote == "'":
        end = text.find("'", 1)
        if end < 0:
            raise ValueError("the ' quote is not closed")
        _only_comment_after(text[end + 1 :])
        return text[1:end]
    if quote == '"':
        out: list[str] = []
        index = 1
        while index < len(text):
            char = text[index]
            if char == "\\" and index + 1 < len(text):
                following = text[index + 1]
                out.append(_ESCAPES.get(following, "\\" + following))
                index += 2
                continue
            if char == '"':
                _only_comment_after(text[index + 1 :])
                return "".join(out)
            out.append(char)
            index += 1
        raise ValueError('the " quote is not closed')
    comment = re.search(r"\s#", text)
    return (text[: comment.start()] if comment else text).rstrip()


def _only_comment_after(rest: str) -> None:
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise ValueError("text after the closing quote")


def environment_values(names: frozenset[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The values of the settings ``names`` (lower case) in ``environ``, whose keys match in any
    case; the upper-case spelling wins over another spelling of the same key."""
    found: dict[str, str] = {}
    exact: set[str] = set()
    for key, value in environ.items():
        name = key.lower()
        if name not in names or (name in exact and key != name.upper()):
            continue
        found[name] = value
        if key == name.upper():
            exact.add(name)
    return found


# --- typed values --------------------------------------------------------------------------


def optional_base(hint: object) -> tuple[bool, object]:
    """``(True, X)`` for ``X | None``, else ``(False, hint)``."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return True, args[0]
    return False, hint


def coerce(value: object, hint: object, bounds: Mapping[str, float] | None = None) -> object:
    """``value`` as the type ``hint`` within ``bounds`` (``ge``/``gt``/``le``), or ValueError."""
    optional, base = optional_base(hint)
    if value is None or (optional and isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise ValueError("must be set")
    result = _convert(value, base)
    if bounds and isinstance(result, int | float) and not isinstance(result, bool):
        _check_bounds(result, bounds)
    return result


def _convert(value: object, base: object) -> object:
    if base is bool:
        return _boolean(value)
    if base is int:
        return _integer(value)
    if base is float:
        return _number(value)
    if base is str:
        if isinstance(value, str):
            return value
        raise ValueError("must be text")
    if base is Path:
        if isinstance(value, str | os.PathLike):
            path = Path(value)
            if not str(value).strip():
                raise ValueError("must be a path, not empty")
            return path
        raise ValueError("must be a path")
    if base is SecretStr:
        if isinstance(value, SecretStr):
            return value
        if isinstance(value, str):
            return SecretStr(value)
        raise ValueError("must be text")
    raise TypeError(f"no conversion to {base!r}")  # a setting of a type this module lacks


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError("must be true or false (also accepted: 1/0, yes/no, on/off)")


def _integer(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise ValueError("must be a whole number")


def _number(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    number: float
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError("must be a number") from None
    else:
        raise ValueError("must be a number")
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _check_bounds(number: float, bounds: Mapping[str, float]) -> None:
    if "ge" in bounds and not number >= bounds["ge"]:
        raise ValueError(f"must be at least {_shown(bounds['ge'])}")
    if "gt" in bounds and not number > bounds["gt"]:
        raise ValueError(f"must be greater than {_shown(bounds['gt'])}")
    if "le" in bounds and not number <= bounds["le"]:
        raise ValueError(f"must be at most {_shown(bounds['le'])}")


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


__all__ = [
    "FALSE_WORDS",
    "MAX_ENV_FILE_BYTES",
    "TRUE_WORDS",
    "coerce",
    "environment_values",
    "optional_base",
    "parse_env_text",
    "read_env_file",
]
