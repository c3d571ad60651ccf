"""A string that never shows itself: the type of every secret setting.

``repr()``/``str()`` print ``**********``; only :meth:`SecretStr.get_secret_value` gives the
value. Logs mask the values too (``logs.secrets_of``), so a settings object can be printed or
logged whole without leaking a key.
"""

from __future__ import annotations

from typing import Final

#: What a secret prints as.
MASK: Final = "**********"


class SecretStr:
    """An immutable secret string (same interface as the part of pydantic's we used)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a secret is a string, not {type(value).__name__}")
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __str__(self) -> str:
        return MASK if self._value else ""

    def __repr__(self) -> str:
        return f"SecretStr('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("SecretStr", self._value))


__all__ = ["MASK", "SecretStr"]
