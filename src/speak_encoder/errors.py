"""The one error tree of speak-encoder.

Every failure the node can meet is translated, at the boundary where it happens (httpx,
ffmpeg/ffprobe exit codes, the file system), into one of these types. Each carries a message a
node operator can act on and says whether trying again later can help::

    SpeakEncoderError                      base: .message, .retryable
    ├── ConfigError                        a setting is missing or invalid (fails at start)
    ├── JobCancelled                       Ctrl-C, SIGTERM or an operator cancel
    ├── PermanentError                     retrying cannot help: bad input
    │   ├── UsageError                     a command was called wrongly (e.g. --out exists)
    │   ├── SourceError                    the source reference or its bytes are unusable
    │   │   ├── InvalidSourceReference     not a path, http(s) URL or IPFS CID
    │   │   ├── SourceNotFound             missing file, HTTP 404/410, unknown CID
    │   │   ├── SourceRejected             4xx, an HTML error page instead of media
    │   │   └── SourceTooLarge             larger than MAX_SOURCE_MB
    │   ├── MediaError                     ffprobe: not media, no video, zero length, corrupt
    │   ├── EncodeError                    ffmpeg failed on this input
    │   └── OutputInvalid                  the encoded folder fails the HLS validity checks
    └── RetryableError                     the world may heal: try again later
        ├── NetworkError                   connection refused/reset, DNS, TLS, timeouts
        │   └── StallError                 no byte received for FETCH_STALL_TIMEOUT seconds
        ├── UpstreamError                  an HTTP peer answered 5xx / 429
        ├── InsufficientDisk               not enough free space in the work directory
        └── ResourceError                  ffmpeg killed from outside (e.g. the OOM killer)
"""

from __future__ import annotations

from typing import ClassVar


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
