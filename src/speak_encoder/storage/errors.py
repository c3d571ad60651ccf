"""The storage part of the error tree (a candidate to move into :mod:`speak_encoder.errors`)::

SpeakEncoderError
├── PermanentError
│   ├── UnixfsError                 a path cannot be imported as UnixFS
│   │   ├── HamtShardingRequired    a directory Kubo would shard (not implemented)
│   │   └── UnsupportedFileType     socket, device, dangling symlink …
│   ├── IpfsRequestRejected         the node refused the request itself (HTTP 4xx, bad arg)
│   ├── CidMismatch                 the node's root CID differs from the one computed here
│   └── CarError                    a CAR file cannot be written
└── RetryableError
    ├── NetworkError
    │   ├── IpfsUnavailable         cannot connect to the IPFS node / service
    │   └── StallError
    │       └── IpfsTimeout         connect, upload-stall or processing timeout
    ├── UpstreamError
    │   ├── IpfsApiError            a Kubo error JSON (HTTP 500 {"Message","Code","Type"})
    │   └── IpfsBadResponse         HTML page, non-JSON, NDJSON without a root …
    └── PublishIncomplete           the PUBLISH_REQUIRED policy is not met (pins queued)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from speak_encoder.errors import (
    NetworkError,
    PermanentError,
    RetryableError,
    StallError,
    UpstreamError,
)

if TYPE_CHECKING:
    from speak_encoder.storage.targets import PublishResult


class UnixfsError(PermanentError):
    """A path cannot be imported as UnixFS."""


class HamtShardingRequired(UnixfsError):
    """A directory is so large that Kubo would shard it (HAMT), which is not implemented."""


class UnsupportedFileType(UnixfsError):
    """Not a regular file or a directory (socket, device, dangling symlink …)."""


class CarError(PermanentError):
    """A CAR file cannot be written."""


class IpfsRequestRejected(PermanentError):
    """The IPFS node refused the request (HTTP 4xx: bad argument, unknown command)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class CidMismatch(PermanentError):
    """The root CID the node reports is not the CID computed locally: publishing must fail."""

    def __init__(self, message: str, expected: str, got: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.got = got


class IpfsUnavailable(NetworkError):
    """The IPFS node (or pinning service) cannot be reached."""


class IpfsTimeout(StallError):
    """A connect, upload-stall or processing timeout against an IPFS endpoint."""


class IpfsApiError(UpstreamError):
    """The node answered with a Kubo error (HTTP 500 ``{"Message","Code","Type"}``)."""

    def __init__(self, message: str, *, status: int = 500, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class IpfsBadResponse(UpstreamError):
    """The answer is not what the API promises (an HTML error page, broken JSON …)."""


class PublishIncomplete(RetryableError):
    """The required publish targets did not all succeed; the failures are in the pin queue."""

    def __init__(self, message: str, result: PublishResult) -> None:
        super().__init__(message)
        self.result = result
