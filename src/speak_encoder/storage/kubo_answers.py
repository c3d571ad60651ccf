"""What a Kubo RPC answer means: JSON read strictly, failures translated into the error tree.

Errors are translated at this boundary (see :mod:`speak_encoder.errors`): a Kubo error JSON
(HTTP 500 ``{"Message","Code","Type"}``) → :class:`IpfsApiError` (or :class:`IpfsTimeout` when
the node says it timed out), 4xx → :class:`IpfsRequestRejected`, an HTML page or broken JSON →
:class:`IpfsBadResponse`, connection problems → :class:`IpfsUnavailable` /
:class:`IpfsTimeout`. Shared by :class:`~speak_encoder.storage.kubo.KuboClient` and the
publish targets that speak to other IPFS endpoints (:mod:`speak_encoder.storage.targets`).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from speak_encoder.errors import (
    IpfsApiError,
    IpfsBadResponse,
    IpfsRequestRejected,
    IpfsTimeout,
    IpfsUnavailable,
)
from speak_encoder.http_errors import TIMEOUTS, Failure, failure_of, retryable_status

#: Messages by which Kubo / js-ipfs say a request ran out of time.
_TIMEOUT_MARKERS = ("request timed out", "context deadline exceeded", "timeout")


def as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def looks_html(content_type: str, body: bytes) -> bool:
    head = body.lstrip()[:15].lower()
    return "text/html" in content_type or head.startswith((b"<!doctype", b"<html", b"<"))


def error_for_response(status: int, content_type: str, body: bytes, what: str) -> Exception:
    """Translate a non-200 answer into the error tree."""
    if looks_html(content_type, body):
        return IpfsBadResponse(
            f"{what}: HTTP {status} with an HTML page (a proxy error page?), not the IPFS API"
        )
    message: str | None = None
    code: int | None = None
    try:
        data = json.loads(body)
        if isinstance(data, dict) and "Message" in data:
            message = str(data["Message"])
            code = as_int(data.get("Code"))
    except ValueError:
        pass
    text = message if message is not None else body[:300].decode(errors="replace").strip()
    if message is not None and any(marker in message.lower() for marker in _TIMEOUT_MARKERS):
        return IpfsTimeout(f"{what}: the IPFS node timed out ({message})")
    if retryable_status(status):
        if message is None and status == 500:
            return IpfsBadResponse(f"{what}: HTTP 500 without a Kubo error message: {text!r}")
        return IpfsApiError(
            f"{what}: IPFS node error (HTTP {status}): {text}", status=status, code=code
        )
    return IpfsRequestRejected(
        f"{what}: IPFS node refused the request (HTTP {status}): {text}", status
    )


def json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        if looks_html("", body):
            raise IpfsBadResponse(f"{what}: an HTML page instead of JSON") from None
        raise IpfsBadResponse(f"{what}: invalid JSON: {body[:200]!r}") from None
    if not isinstance(data, dict):
        raise IpfsBadResponse(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def map_transport_error(exc: httpx.HTTPError, what: str, timeouts: httpx.Timeout) -> Exception:
    """An httpx failure of an IPFS endpoint (:func:`speak_encoder.http_errors.failure_of`)."""
    failure = failure_of(exc)
    if failure is Failure.CONNECT_TIMEOUT:
        return IpfsTimeout(f"{what}: no connection within {timeouts.connect} s")
    if failure is Failure.WRITE_TIMEOUT:
        return IpfsTimeout(
            f"{what}: upload stalled, the node accepted no byte for {timeouts.write} s"
        )
    if failure is Failure.READ_TIMEOUT and isinstance(exc, httpx.ReadTimeout):
        return IpfsTimeout(f"{what}: no answer from the node for {timeouts.read} s")
    if failure in TIMEOUTS:
        return IpfsTimeout(f"{what}: timed out ({exc})")
    if failure is Failure.CONNECT:
        return IpfsUnavailable(f"{what}: cannot connect to the IPFS node ({exc})")
    return IpfsUnavailable(
        f"{what}: connection to the IPFS node failed ({type(exc).__name__}: {exc})"
    )


__all__ = [
    "as_int",
    "error_for_response",
    "json_object",
    "looks_html",
    "map_transport_error",
]
