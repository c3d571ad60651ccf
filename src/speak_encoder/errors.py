"""The one error tree of speak-encoder.

Every failure the node can meet is translated, at the boundary where it happens (httpx,
ffmpeg/ffprobe exit codes, the file system), into one of these types. Each carries a message a
node operator can act on and says whether trying again later can help::

    SpeakEncoderError                      base: .message, .retryable
    ├── ConfigError                        a setting is missing or invalid (fails at start)
    ├── JobCancelled                       Ctrl-C, SIGTERM or an operator cancel
    ├── PermanentError                     retrying cannot help: bad input
    │   ├── UsageError                     a command was called wrongly (e.g. --out exists)
    │   │   └── JobNotFound                no job with that id in the store
    │   ├── SourceError                    the source reference or its bytes are unusable
    │   │   ├── InvalidSourceReference     not a path, http(s) URL or IPFS CID
    │   │   ├── SourceNotFound             missing file, HTTP 404/410, unknown CID
    │   │   ├── SourceRejected             4xx, an HTML error page instead of media
    │   │   └── SourceTooLarge             larger than MAX_SOURCE_MB
    │   ├── MediaError                     ffprobe: not media, no video, zero length, corrupt
    │   ├── EncodeError                    ffmpeg failed on this input
    │   ├── MemoryLimitExceeded            ffmpeg/ffprobe needed more than FFMPEG_MEMORY_MAX_MB
    │   ├── OutputInvalid                  the encoded folder fails the HLS validity checks
    │   ├── UnixfsError                    a path cannot be imported as UnixFS
    │   │   ├── HamtShardingRequired       a directory Kubo would shard (not implemented)
    │   │   └── UnsupportedFileType        socket, device, dangling symlink …
    │   ├── CarError                       a CAR file cannot be written
    │   ├── IpfsRequestRejected            the IPFS node refused the request (HTTP 4xx)
    │   ├── CidMismatch                    the node's root CID differs from ours: never publish
    │   ├── UnsafeUrl                      a URL from outside resolves where the node must not go
    │   ├── InvalidDid                     not an Ed25519 did:key
    │   └── InvalidJws                     a JWS that cannot be trusted (malformed, bad signature)
    └── RetryableError                     the world may heal: try again later
        ├── NetworkError                   connection refused/reset, DNS, TLS, timeouts
        │   ├── IpfsUnavailable            cannot connect to an IPFS node / pinning service
        │   └── StallError                 no byte received for FETCH_STALL_TIMEOUT seconds
        │       └── IpfsTimeout            connect, upload-stall or processing timeout (IPFS)
        ├── UpstreamError                  an HTTP peer answered 5xx / 429
        │   ├── IpfsApiError               a Kubo error JSON (HTTP 500 {"Message","Code","Type"})
        │   ├── IpfsBadResponse            an HTML page, broken JSON, NDJSON without a root …
        │   └── GatewayError               a 3Speak gateway failed, answered 5xx/429 or garbage
        │       ├── GatewayAuthRejected    401/403: check ENCODER_PRIVATE_KEY
        │       └── GatewayRejected        another 4xx                            [permanent]
        │           ├── GatewayNotRegistered  404 "Encoder not registered": register again
        │           └── GatewayNodeRefused    403 "Encoder is disabled or banned" (an
        │                                     operator's decision upstream: wait long, then
        │                                     ask again)
        ├── InsufficientDisk               not enough free space in the work directory
        ├── ResourceError                  ffmpeg killed from outside (e.g. the OOM killer)
        ├── PublishIncomplete              PUBLISH_REQUIRED not met (the failures are queued)
        ├── QueueFull                      QUEUE_MAX jobs are waiting: submit again later
        ├── StoreUnavailable               the job store (database) cannot be reached
        └── InternalError                  a bug: an exception outside this tree

``[permanent]`` marks a class whose ``retryable`` is ``False`` although it sits under
:class:`RetryableError`: a gateway's 4xx other than 401/403/429 will not succeed as it is (a
report is given up), yet ``except GatewayError`` still catches every gateway failure. A poller
treats its two subclasses on their own (register again; wait long). The drawing is checked
against the classes by ``tests/unit/test_errors.py``.

This module imports nothing of speak-encoder: every layer may raise these errors.
"""

from __future__ import annotations

from typing import ClassVar, Generic, Literal, TypeVar

#: What a :class:`PublishIncomplete` carries (``storage.targets.PublishResult``; the error tree
#: does not import the layers that raise it).
ResultT = TypeVar("ResultT")


class SpeakEncoderError(Exception):
    """Base of every error speak-encoder raises on purpose."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    @property
    def kind(self) -> str:
        """A short machine-readable name of the error type (used in --json output)."""
        return type(self).__name__


class ConfigError(SpeakEncoderError):
    """A setting is missing or has an invalid value."""


class JobCancelled(SpeakEncoderError):
    """The job was cancelled (Ctrl-C, SIGTERM, operator)."""


class PermanentError(SpeakEncoderError):
    """Bad input: trying again will fail the same way."""


class UsageError(PermanentError):
    """A command was called with arguments that cannot work."""


class JobNotFound(UsageError):
    """No job with that id in the store."""


class SourceError(PermanentError):
    """The source cannot be used."""


class InvalidSourceReference(SourceError):
    """The SOURCE argument is not a local path, an http(s) URL or an IPFS reference."""


class SourceNotFound(SourceError):
    """The source does not exist (missing file, HTTP 404/410)."""


class SourceRejected(SourceError):
    """The server refused the request (4xx) or sent something that is not media."""


class SourceTooLarge(SourceError):
    """The source is larger than the configured maximum."""


class MediaError(PermanentError):
    """ffprobe could not find a usable video in the source."""


class EncodeError(PermanentError):
    """ffmpeg failed on this input."""


class MemoryLimitExceeded(PermanentError):
    """ffmpeg or ffprobe went above FFMPEG_MEMORY_MAX_MB on this source and was killed."""


class OutputInvalid(PermanentError):
    """The produced HLS folder fails one or more validity checks."""

    def __init__(self, message: str, violations: list[str] | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])


class RetryableError(SpeakEncoderError):
    """A transient failure: the same job may succeed later."""

    retryable: ClassVar[bool] = True


class NetworkError(RetryableError):
    """Connection refused or reset, DNS or TLS failure, timeout."""


class StallError(NetworkError):
    """The peer stopped sending bytes for longer than the stall timeout."""


class UpstreamError(RetryableError):
    """An HTTP peer answered with a server error (5xx) or asked us to slow down (429)."""


class InsufficientDisk(RetryableError):
    """Not enough free disk space in the work directory."""


class ResourceError(RetryableError):
    """A process was killed from outside (out of memory, a signal we did not send)."""


# --- content addressing and IPFS --------------------------------------------------------


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


class PublishIncomplete(RetryableError, Generic[ResultT]):
    """The required publish targets did not all succeed; the failures are in the pin queue.

    ``result`` is the publish stage's summary (``PublishIncomplete[PublishResult]``).
    """

    def __init__(self, message: str, result: ResultT) -> None:
        super().__init__(message)
        self.result = result


# --- the node service ------------------------------------------------------------------


class QueueFull(RetryableError):
    """QUEUE_MAX jobs are already waiting: the submission is refused (not dropped)."""

    def __init__(self, message: str, retry_after: float = 60.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(RetryableError):
    """The job store (SQLite file or PostgreSQL server) cannot be reached."""


# --- job sources: identity, URLs, gateways --------------------------------------------


class UnsafeUrl(PermanentError):
    """A URL from outside is refused: wrong scheme, user-info, or it resolves to an address
    the node must not reach (loopback, private, link-local/metadata, the IPFS RPC …)."""


JwsFailure = Literal["malformed", "unsupported_alg", "bad_signature", "did_mismatch"]


class InvalidDid(PermanentError):
    """A text is not an Ed25519 ``did:key`` (wrong method, multibase, multicodec or length)."""


class InvalidJws(PermanentError):
    """A JWS cannot be trusted: malformed, unsupported algorithm, bad signature, other signer.

    ``reason`` tells which, for callers that answer differently (e.g. 400 vs 401).
    """

    def __init__(self, message: str, reason: JwsFailure) -> None:
        super().__init__(message)
        self.reason: JwsFailure = reason


class InternalError(RetryableError):
    """A bug: an exception outside the error tree. Retried like a transient failure."""


class GatewayError(UpstreamError):
    """A gateway did not answer, answered 5xx/429 or sent something unreadable."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GatewayAuthRejected(GatewayError):
    """401/403: the gateway refused the node's signature."""


class GatewayRejected(GatewayError):
    """A 4xx other than 401/403/404/429: this request will not succeed as it is."""

    retryable: ClassVar[bool] = False


class GatewayNotRegistered(GatewayRejected):
    """The gateway does not know this node (any more): an admin removed it; register again."""


class GatewayNodeRefused(GatewayRejected):
    """The gateway knows this node and refuses it: disabled or banned by its operators."""


__all__ = [
    "CarError",
    "CidMismatch",
    "ConfigError",
    "EncodeError",
    "GatewayAuthRejected",
    "GatewayError",
    "GatewayNodeRefused",
    "GatewayNotRegistered",
    "GatewayRejected",
    "HamtShardingRequired",
    "InsufficientDisk",
    "InternalError",
    "InvalidDid",
    "InvalidJws",
    "InvalidSourceReference",
    "IpfsApiError",
    "IpfsBadResponse",
    "IpfsRequestRejected",
    "IpfsTimeout",
    "IpfsUnavailable",
    "JobCancelled",
    "JobNotFound",
    "JwsFailure",
    "MediaError",
    "MemoryLimitExceeded",
    "NetworkError",
    "OutputInvalid",
    "PermanentError",
    "PublishIncomplete",
    "QueueFull",
    "ResourceError",
    "RetryableError",
    "SourceError",
    "SourceNotFound",
    "SourceRejected",
    "SourceTooLarge",
    "SpeakEncoderError",
    "StallError",
    "StoreUnavailable",
    "UnixfsError",
    "UnsafeUrl",
    "UnsupportedFileType",
    "UpstreamError",
    "UsageError",
]
