"""One map from httpx exceptions and HTTP status codes to the error tree.

Every HTTP peer of the node (the fetch stage's origins, the IPFS RPC and pinning services, the
3Speak gateways, webhook receivers) meets the same failures; this module names them once:

* :data:`HTTPX_FAILURES` gives every exception httpx exports a :class:`Failure` (what went
  wrong, independent of the peer); ``tests/unit/test_http_errors.py`` checks that none is missing,
  like httpx's own test of its exported members. :func:`failure_of` reads it (an unknown
  subclass takes its nearest mapped base).
* :data:`FAILURE_ERRORS` gives each failure its default class of :mod:`speak_encoder.errors`
  (:func:`error_for_exception`); a boundary with a more precise class of its own (IPFS:
  :class:`~speak_encoder.errors.IpfsTimeout`/:class:`~speak_encoder.errors.IpfsUnavailable`;
  a gateway: :class:`~speak_encoder.errors.GatewayError`) maps the :class:`Failure` itself and
  keeps its own words.
* :func:`status_class` sorts a status code into a :class:`StatusClass`, and
  :func:`retryable_status` says whether the same request may succeed later (5xx, 429).

Nothing here builds a message: messages stay at the boundary, which knows the peer's name and
never shows a URL's secrets. This module imports httpx and the error tree only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import httpx

from speak_encoder.errors import (
    InternalError,
    NetworkError,
    PermanentError,
    SourceRejected,
    SpeakEncoderError,
    StallError,
    UpstreamError,
)


class Failure(enum.Enum):
    """What went wrong on an HTTP exchange, whoever the peer."""

    CONNECT_TIMEOUT = "no connection within the connect timeout"
    READ_TIMEOUT = "no byte received within the read timeout"
    WRITE_TIMEOUT = "the peer accepted no byte within the write timeout"
    POOL_TIMEOUT = "no free connection within the pool timeout"
    CONNECT = "the connection could not be made (refused, DNS, TLS)"
    READ = "the connection broke while receiving"
    WRITE = "the connection broke while sending"
    CLOSE = "the connection failed while closing"
    REMOTE_PROTOCOL = "the peer broke HTTP (closed mid-answer, garbage)"
    LOCAL_PROTOCOL = "this side broke HTTP (a bug or a bad header)"
    PROXY = "the proxy failed"
    UNSUPPORTED_PROTOCOL = "the URL's scheme is not http(s)"
    TOO_MANY_REDIRECTS = "too many redirects"
    DECODING = "the body cannot be decoded"
    INVALID_URL = "the URL is invalid"
    STATUS = "raise_for_status: the peer answered an error status"
    TRANSPORT = "another transport failure"
    USAGE = "httpx was used wrongly (a stream read twice, a cookie conflict): a bug"


#: Every exception class httpx exports → its :class:`Failure` (bases last: they catch the rest).
HTTPX_FAILURES: Final[Mapping[type[Exception], Failure]] = MappingProxyType(
    {
        httpx.ConnectTimeout: Failure.CONNECT_TIMEOUT,
        httpx.ReadTimeout: Failure.READ_TIMEOUT,
        httpx.WriteTimeout: Failure.WRITE_TIMEOUT,
        httpx.PoolTimeout: Failure.POOL_TIMEOUT,
        httpx.TimeoutException: Failure.READ_TIMEOUT,
        httpx.ConnectError: Failure.CONNECT,
        httpx.ReadError: Failure.READ,
        httpx.WriteError: Failure.WRITE,
        httpx.CloseError: Failure.CLOSE,
        httpx.NetworkError: Failure.READ,
        httpx.RemoteProtocolError: Failure.REMOTE_PROTOCOL,
        httpx.LocalProtocolError: Failure.LOCAL_PROTOCOL,
        httpx.ProtocolError: Failure.REMOTE_PROTOCOL,
        httpx.ProxyError: Failure.PROXY,
        httpx.UnsupportedProtocol: Failure.UNSUPPORTED_PROTOCOL,
        httpx.TransportError: Failure.TRANSPORT,
        httpx.TooManyRedirects: Failure.TOO_MANY_REDIRECTS,
        httpx.DecodingError: Failure.DECODING,
        httpx.RequestError: Failure.TRANSPORT,
        httpx.HTTPStatusError: Failure.STATUS,
        httpx.HTTPError: Failure.TRANSPORT,
        httpx.InvalidURL: Failure.INVALID_URL,
        httpx.CookieConflict: Failure.USAGE,
        httpx.StreamConsumed: Failure.USAGE,
        httpx.StreamClosed: Failure.USAGE,
        httpx.ResponseNotRead: Failure.USAGE,
        httpx.RequestNotRead: Failure.USAGE,
        httpx.StreamError: Failure.USAGE,
    }
)

#: The timeouts among the failures.
TIMEOUTS: Final = frozenset(
    {Failure.CONNECT_TIMEOUT, Failure.READ_TIMEOUT, Failure.WRITE_TIMEOUT, Failure.POOL_TIMEOUT}
)

#: Each failure's default class in the error tree.
FAILURE_ERRORS: Final[Mapping[Failure, type[SpeakEncoderError]]] = MappingProxyType(
    {
        Failure.CONNECT_TIMEOUT: NetworkError,
        Failure.READ_TIMEOUT: StallError,
        Failure.WRITE_TIMEOUT: StallError,
        Failure.POOL_TIMEOUT: NetworkError,
        Failure.CONNECT: NetworkError,
        Failure.READ: NetworkError,
        Failure.WRITE: NetworkError,
        Failure.CLOSE: NetworkError,
        Failure.REMOTE_PROTOCOL: NetworkError,
        Failure.LOCAL_PROTOCOL: InternalError,
        Failure.PROXY: NetworkError,
        Failure.UNSUPPORTED_PROTOCOL: SourceRejected,
        Failure.TOO_MANY_REDIRECTS: SourceRejected,
        Failure.DECODING: SourceRejected,
        Failure.INVALID_URL: SourceRejected,
        Failure.STATUS: UpstreamError,
        Failure.TRANSPORT: NetworkError,
        Failure.USAGE: InternalError,
    }
)


def failure_of(exc: BaseException) -> Failure:
    """The :class:`Failure` of an httpx exception (its nearest mapped class; else TRANSPORT)."""
    for cls in type(exc).__mro__:
        failure = HTTPX_FAILURES.get(cls)
        if failure is not None:
            return failure
    return Failure.TRANSPORT


def error_for_exception(exc: BaseException, message: str) -> SpeakEncoderError:
    """The default error of the tree for an httpx exception, with the boundary's ``message``."""
    return FAILURE_ERRORS[failure_of(exc)](message)


class StatusClass(enum.Enum):
    """What an HTTP status code means to a client of the node."""

    SUCCESS = "2xx"
    REDIRECT = "3xx"
    NOT_FOUND = "404/410: not there"
    AUTH = "401/403: refused who we are"
    RANGE = "416: range not satisfiable"
    RATE_LIMITED = "429: slow down"
    CLIENT = "another 4xx: this request will not succeed as it is"
    SERVER = "5xx: the peer is failing"
    OTHER = "1xx or out of range"


def status_class(code: int) -> StatusClass:
    if 200 <= code < 300:
        return StatusClass.SUCCESS
    if 300 <= code < 400:
        return StatusClass.REDIRECT
    if code in (404, 410):
        return StatusClass.NOT_FOUND
    if code in (401, 403):
        return StatusClass.AUTH
    if code == 416:
        return StatusClass.RANGE
    if code == 429:
        return StatusClass.RATE_LIMITED
    if 400 <= code < 500:
        return StatusClass.CLIENT
    if 500 <= code < 600:
        return StatusClass.SERVER
    return StatusClass.OTHER


def retryable_status(code: int) -> bool:
    """Whether the same request may succeed later: a 5xx or 429 (overloaded or failing)."""
    return code == 429 or code >= 500


#: Each status class's default class in the error tree (``None``: not an error).
STATUS_ERRORS: Final[Mapping[StatusClass, type[SpeakEncoderError] | None]] = MappingProxyType(
    {
        StatusClass.SUCCESS: None,
        StatusClass.REDIRECT: PermanentError,
        StatusClass.NOT_FOUND: PermanentError,
        StatusClass.AUTH: PermanentError,
        StatusClass.RANGE: PermanentError,
        StatusClass.RATE_LIMITED: UpstreamError,
        StatusClass.CLIENT: PermanentError,
        StatusClass.SERVER: UpstreamError,
        StatusClass.OTHER: UpstreamError,
    }
)


__all__ = [
    "FAILURE_ERRORS",
    "HTTPX_FAILURES",
    "STATUS_ERRORS",
    "TIMEOUTS",
    "Failure",
    "StatusClass",
    "error_for_exception",
    "failure_of",
    "retryable_status",
    "status_class",
]
