"""What the real 3Speak embed server's stack (Node.js + Express) makes of JSON, for its model.

:mod:`speak_encoder.testing.embed_server` models an Express app; these are the few JavaScript
and Express behaviours its answers depend on: ``express.json()``'s body parsing (``{}`` unless
``application/json``, a 400 page for a body that is not strict JSON), Express's HTML error pages,
JavaScript truthiness (``if (!owner)``) and template strings (``${error}``), ``typeof x ===
'number'``, ``Date.toISOString()``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from typing import Any, Final

from starlette.responses import Response


class BadJson:
    """Marks a body Express's JSON parser refuses (answered with its 400 page)."""


BAD_JSON: Final = BadJson()


def truthy(value: Any) -> bool:
    """JavaScript's truthiness of a JSON value (``{}`` and ``[]`` are true, ``0`` and ``""``
    false)."""
    if isinstance(value, float) and math.isnan(value):
        return False
    if isinstance(value, dict | list):
        return True
    return bool(value)


def is_number(value: Any) -> bool:
    """``typeof value === 'number'`` (a JSON ``true`` is not a number)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def js_string(value: Any) -> str:
    """``${value}`` of a JSON value in JavaScript."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def express_json(raw: bytes, content_type: str) -> Any:
    """What ``express.json()`` makes of a body: ``{}`` unless ``application/json``, :data:`BAD_JSON`
    (Express's 400) if it is not strict JSON (an object or an array)."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        return {}
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return BAD_JSON
    if not text:
        return {}
    if text[0] not in "{[":  # strict mode
        return BAD_JSON
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return BAD_JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def express_page(status: int, message: str) -> Response:
    """Express's own HTML error page (``Cannot POST /x``, ``Bad Request``)."""
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
        f"</head>\n<body>\n<pre>{message}</pre>\n</body>\n</html>\n"
    )
    return Response(page, status_code=status, media_type="text/html")


def parse_answer(raw: bytes) -> Any:
    """An answer's JSON, or its text."""
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        return json.loads(raw)
    return raw.decode("utf-8", errors="replace")


def json_error(text: str) -> str:
    """About what ``response.json()`` throws on a body that is not JSON (V8's wording varies)."""
    shown = text[:32] + ("..." if len(text) > 32 else "")
    return f'Unexpected token in JSON: "{shown}" is not valid JSON'


def iso(timestamp: float) -> str:
    """``new Date(timestamp).toISOString()``."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{seconds}.{int(timestamp * 1000) % 1000:03d}Z"


__all__ = [
    "BAD_JSON",
    "BadJson",
    "express_json",
    "express_page",
    "is_number",
    "iso",
    "js_string",
    "json_error",
    "parse_answer",
    "truthy",
]
