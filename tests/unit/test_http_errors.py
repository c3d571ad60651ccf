"""One map from httpx and HTTP status to the error tree (:mod:`speak_encoder.http_errors`).

Like httpx's test of its exported members: every exception class httpx exports must be mapped,
so a new httpx release that adds one fails here instead of falling through somewhere.
"""

from __future__ import annotations

import inspect

import httpx
import pytest

from speak_encoder.errors import NetworkError, SpeakEncoderError, StallError
from speak_encoder.http_errors import (
    FAILURE_ERRORS,
    HTTPX_FAILURES,
    STATUS_ERRORS,
    Failure,
    StatusClass,
    error_for_exception,
    failure_of,
    retryable_status,
    status_class,
)


def _httpx_exceptions() -> list[type[BaseException]]:
    exported = [getattr(httpx, name) for name in httpx.__all__]
    return [o for o in exported if inspect.isclass(o) and issubclass(o, BaseException)]


def test_every_httpx_exception_is_mapped() -> None:
    exceptions = _httpx_exceptions()
    assert len(exceptions) >= 25  # the parser sees httpx's exception family
    missing = [cls.__name__ for cls in exceptions if cls not in HTTPX_FAILURES]
    assert missing == [], f"httpx exceptions without a Failure: {missing}"


def test_every_failure_has_an_error_class() -> None:
    assert set(FAILURE_ERRORS) == set(Failure)
    assert all(issubclass(cls, SpeakEncoderError) for cls in FAILURE_ERRORS.values())
    assert set(STATUS_ERRORS) == set(StatusClass)


@pytest.mark.parametrize(
    ("exc", "failure", "error"),
    [
        (httpx.ConnectTimeout("t"), Failure.CONNECT_TIMEOUT, NetworkError),
        (httpx.ReadTimeout("t"), Failure.READ_TIMEOUT, StallError),
        (httpx.ConnectError("refused"), Failure.CONNECT, NetworkError),
        (httpx.RemoteProtocolError("closed"), Failure.REMOTE_PROTOCOL, NetworkError),
        (httpx.ReadError("reset"), Failure.READ, NetworkError),
    ],
)
def test_common_failures(exc: httpx.HTTPError, failure: Failure, error: type[Exception]) -> None:
    assert failure_of(exc) is failure
    mapped = error_for_exception(exc, "peer: it broke")
    assert type(mapped) is error and mapped.message == "peer: it broke"


def test_an_unknown_subclass_takes_its_nearest_mapped_base() -> None:
    class OddRead(httpx.ReadError):
        pass

    assert failure_of(OddRead("x")) is Failure.READ
    assert failure_of(ValueError("not httpx")) is Failure.TRANSPORT


@pytest.mark.parametrize(
    ("code", "kind", "retryable"),
    [
        (200, StatusClass.SUCCESS, False),
        (206, StatusClass.SUCCESS, False),
        (302, StatusClass.REDIRECT, False),
        (401, StatusClass.AUTH, False),
        (403, StatusClass.AUTH, False),
        (404, StatusClass.NOT_FOUND, False),
        (410, StatusClass.NOT_FOUND, False),
        (416, StatusClass.RANGE, False),
        (418, StatusClass.CLIENT, False),
        (429, StatusClass.RATE_LIMITED, True),
        (500, StatusClass.SERVER, True),
        (503, StatusClass.SERVER, True),
    ],
)
def test_status_classes(code: int, kind: StatusClass, retryable: bool) -> None:
    assert status_class(code) is kind
    assert retryable_status(code) is retryable
    error = STATUS_ERRORS[kind]
    assert error is None if kind is StatusClass.SUCCESS else error is not None
    if error is not None and kind is not StatusClass.REDIRECT:
        assert error.retryable is retryable
