"""Logging for the node: human console lines or JSON lines, always redacted.

Why this module is long: redaction is the point of the logging setup. The redaction rules, the
filters that apply them and the handlers that must never bypass them stay in one module, so that
no log path can be wired without them.

:func:`setup_logging` installs, on the root logger, one stream handler (``human`` format by
default, ``json`` for journald/Loki: one object per line with ``ts``, ``level``, ``logger``,
``msg``, plus ``job_id`` when the record belongs to a job, and ``exc`` for a traceback) and a
bounded in-memory :class:`RingBufferHandler` (the dashboard's live log). Every handler it
installs carries the :class:`RedactingFilter`, so no secret reaches the console, the journal or
the dashboard:

* the configured secret values themselves (``ENCODER_PRIVATE_KEY``, ``DIRECT_API_KEY``,
  ``WEBHOOK_SECRET``, the pinning tokens, the password of ``DATABASE_URL`` …) and their
  URL-encoded forms;
* ``X-API-Key: …``, ``Authorization: Bearer …`` (and ``Basic``), ``Cookie:`` values;
* JSON / ``key=value`` fields named like ``api_key``, ``token``, ``secret``, ``password``,
  ``private_key``;
* URL credentials (``scheme://user:pass@`` → ``scheme://user:***@``) and sensitive query
  parameters (``?token=``, ``&sig=``, ``X-Amz-Signature=`` …).

Repeated lines are rate-limited (:class:`RateLimitFilter`, on the same handlers): at most
:data:`LOG_BURST` records with the same logger, level and message template per
:data:`LOG_WINDOW_S` seconds; the rest are dropped and the next line let through says how many.
A flood (a client hammering the servers, a failing accept loop) cannot fill the disk.

:func:`redact` applies the same rules to any text (the dashboard uses it for errors it shows).
A record's ``job_id`` comes from ``extra={"job_id": …}`` or from :func:`bind_job_id`, which the
scheduler calls at the start of each job's task (a context variable: every log line of that
task and the tasks it starts carries the id).
"""

from __future__ import annotations

import collections
import contextvars
import dataclasses
import datetime as dt
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final
from urllib.parse import quote, quote_plus, unquote, urlsplit

from speak_encoder.secret_str import SecretStr

#: ``LOG_FORMAT`` values.
LOG_FORMAT_HUMAN: Final = "human"
LOG_FORMAT_JSON: Final = "json"
LOG_FORMATS: Final = (LOG_FORMAT_HUMAN, LOG_FORMAT_JSON)
#: Defaults of ``LOG_FORMAT`` and ``LOG_LEVEL`` (config candidates; see the lead's notes).
DEFAULT_LOG_FORMAT: Final = LOG_FORMAT_HUMAN
DEFAULT_LOG_LEVEL: Final = "INFO"
#: Lines the in-memory live log keeps (the dashboard's tail).
DEFAULT_RING_LINES: Final = 500
#: What a secret is replaced with.
MASK: Final = "***"
#: Configured secret values shorter than this are not masked by value (a 2-character "secret"
#: would mask ordinary words); the patterns below still apply.
MIN_SECRET_LENGTH: Final = 4
#: Records with the same logger, level and template let through per window, and the window (s).
LOG_BURST: Final = 50
LOG_WINDOW_S: Final = 60.0
#: Templates whose counts are kept (the least recently seen are forgotten first).
LOG_RATE_KEYS: Final = 1024
#: Loggers that would log request URLs (with tokens in query strings) at INFO.
QUIET_LOGGERS: Final = {"httpx": logging.WARNING, "httpcore": logging.WARNING}
#: The human console format.
HUMAN_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("speak_job_id", default=None)

# --- redaction rules ---------------------------------------------------------------------

#: Header-like credentials: the name and the auth scheme stay, the value goes.
_HEADER = re.compile(
    r"(?P<name>\b(?:x-api-key|(?:proxy-)?authorization)\b)"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<scheme>(?:bearer|basic|token|digest)\s+)?"
    r"(?P<value>[^\s\"',;}\]]+)",
    re.IGNORECASE,
)
_COOKIE = re.compile(
    r"(?P<name>\b(?:set-)?cookie\b)(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\r\n\"']+)",
    re.IGNORECASE,
)
#: Names of fields whose value is a secret (JSON keys, ``key=value``, query parameters).
_SENSITIVE_FIELD = (
    r"[\w.-]*?(?:api[_-]?key|apikey|token|secret|passw(?:or)?d|private[_-]?key|"
    r"signature|credential)[\w.-]*"
)
#: ``"token": "value"`` / ``'token': 'value'`` (JSON, Python reprs).
_QUOTED_FIELD = re.compile(
    rf"(?P<key>[\"'](?:{_SENSITIVE_FIELD})[\"']\s*:\s*)(?P<q>[\"'])(?P<value>(?:\\.|(?!(?P=q)).)*)(?P=q)",
    re.IGNORECASE,
)
#: ``token=value`` / ``password:value`` (log text, query strings, form bodies). A colon followed
#: by a space is prose (``DIRECT_API_KEY: must be set``), not a value.
_BARE_FIELD = re.compile(
    rf"(?P<key>(?<![\w.-])(?:{_SENSITIVE_FIELD})(?:\s*=\s*|:))(?P<value>(?!\*\*\*)[^\s,;&\"'}}\])]+)",
    re.IGNORECASE,
)
#: Short query-parameter names that are credentials only in a query string.
_QUERY_PARAM = re.compile(
    r"(?P<key>[?&](?:key|sig|auth|code|access_token|x-amz-security-token)=)(?P<value>[^&#\s\"']+)",
    re.IGNORECASE,
)
#: ``scheme://user:password@`` and ``scheme://token@``.
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<user>[^/\s:@\"']*)(?::(?P<password>[^/\s@\"']*))?@",
    re.IGNORECASE,
)


def _mask_userinfo(match: re.Match[str]) -> str:
    if match.group("password") is None:  # a bare token used as user name
        return f"{match.group('scheme')}{MASK}@"
    return f"{match.group('scheme')}{match.group('user')}:{MASK}@"


class Redactor:
    """Masks secrets in text: known values first, then the patterns of the module docstring."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Mask these exact values (and their URL-encoded forms) from now on."""
        forms: set[str] = set(self._values)
        for secret in secrets:
            value = secret.strip()
            if len(value) < MIN_SECRET_LENGTH:
                continue
            forms.update({value, quote(value, safe=""), quote_plus(value)})
        with self._lock:
            # Longest first: a secret containing another is masked whole.
            self._values = tuple(sorted(forms, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._values = ()

    def redact(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        text = _URL_USERINFO.sub(_mask_userinfo, text)
        text = _HEADER.sub(lambda m: f"{m['name']}{m['sep']}{m['scheme'] or ''}{MASK}", text)
        text = _COOKIE.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
        text = _QUOTED_FIELD.sub(lambda m: f"{m['key']}{m['q']}{MASK}{m['q']}", text)
        text = _QUERY_PARAM.sub(lambda m: f"{m['key']}{MASK}", text)
        return _BARE_FIELD.sub(lambda m: f"{m['key']}{MASK}", text)


#: The process-wide redactor (:func:`setup_logging` loads the configured secrets into it).
REDACTOR = Redactor()


def redact(text: str) -> str:
    """``text`` with every secret masked (the rules of the module docstring)."""
    return REDACTOR.redact(text)


def secrets_of(settings: object) -> list[str]:
    """Every secret value a settings object holds: each ``SecretStr`` field, and the password
    inside ``DATABASE_URL`` (also masked on its own, as drivers print it in errors)."""
    found: list[str] = []
    names = (
        [f.name for f in dataclasses.fields(settings)] if dataclasses.is_dataclass(settings) else []
    )
    for name in names:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr) and value.get_secret_value():
            secret = value.get_secret_value()
            found.append(secret)
            if "://" in secret:
                password = urlsplit(secret).password
                if password:
                    found += [password, unquote(password)]
    return found


# --- job ids -------------------------------------------------------------------------------


def bind_job_id(job_id: str | None) -> contextvars.Token[str | None]:
    """Tag every record logged from the current task (and tasks it starts) with ``job_id``."""
    return _JOB_ID.set(job_id)


def current_job_id() -> str | None:
    return _JOB_ID.get()


# --- filter, formatters, handlers ----------------------------------------------------------


class RateLimiter:
    """Counts records per (logger, level, template) in fixed windows (bounded: an LRU)."""

    def __init__(
        self,
        burst: int = LOG_BURST,
        window: float = LOG_WINDOW_S,
        max_keys: int = LOG_RATE_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # key → [window start, records in it, records dropped in it and not reported yet]
        self._seen: collections.OrderedDict[tuple[str, int, str], list[float]] = (
            collections.OrderedDict()
        )

    def admit(self, name: str, level: int, template: str) -> tuple[bool, int]:
        """Whether to emit this record, and how many similar ones were dropped before it."""
        key = (name, level, template)
        now = self._clock()
        with self._lock:
            state = self._seen.get(key)
            if state is None or now - state[0] >= self.window:
                dropped = int(state[2]) if state is not None else 0
                self._seen[key] = [now, 1.0, 0.0]
                self._seen.move_to_end(key)
                while len(self._seen) > self.max_keys:
                    self._seen.popitem(last=False)
                return True, dropped
            self._seen.move_to_end(key)
            if state[1] < self.burst:
                state[1] += 1
                return True, 0
            state[2] += 1
            return False, 0


#: The process-wide limiter (every handler setup_logging installs shares it).
RATE_LIMITER = RateLimiter()


class RateLimitFilter(logging.Filter):
    """Drops a record beyond the limiter's burst (decided once per record, whatever the number
    of handlers); the first record of a new window notes how many similar ones were dropped.
    Placed before :class:`RedactingFilter`, which rewrites the message."""

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        super().__init__()
        self.limiter = limiter or RATE_LIMITER

    def filter(self, record: logging.LogRecord) -> bool:
        decided = getattr(record, "_speak_rate_ok", None)
        if decided is not None:
            return bool(decided)
        template = str(record.msg)  # before RedactingFilter formats it
        ok, dropped = self.limiter.admit(record.name, record.levelno, template)
        if ok and dropped and isinstance(record.msg, str):
            record.msg = record.msg + f" [{dropped} similar line(s) dropped: rate limit]"
        record._speak_rate_ok = ok
        return ok


class RedactingFilter(logging.Filter):
    """Redacts a record in place: message with its args, traceback and stack; adds ``job_id``.

    Attached to handlers (a logger's filter would not see records of its child loggers).
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or REDACTOR

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_speak_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw parts, still redacted
            message = f"{record.msg!r} {record.args!r}"
        record.msg = self.redactor.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        if getattr(record, "job_id", None) is None:
            record.job_id = _JOB_ID.get()
        record._speak_redacted = True
        return True


def _iso(created: float) -> str:
    return dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``msg``,
    ``job_id`` (when the record has one), ``exc`` (a traceback, when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            doc["job_id"] = job_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


class HumanFormatter(logging.Formatter):
    """``time LEVEL logger: message``, with ``[job <id8>]`` before the message of a job."""

    def __init__(self) -> None:
        super().__init__(HUMAN_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        job_id = getattr(record, "job_id", None)
        if job_id and job_id[:8] not in record.message:
            head, sep, tail = text.partition(f"{record.name}: ")
            text = f"{head}{sep}[job {job_id[:8]}] {tail}"
        return text


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One redacted line of the live log."""

    seq: int  # increasing from 1: a reader asks for entries after the last one it saw
    ts: float
    level: str
    logger: str
    msg: str
    job_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": _iso(self.ts),
            "level": self.level,
            "logger": self.logger,
            "msg": self.msg,
            "job_id": self.job_id,
        }


class RingBufferHandler(logging.Handler):
    """The last ``capacity`` records, redacted, in memory (bounded: a deque)."""

    def __init__(
        self,
        capacity: int = DEFAULT_RING_LINES,
        level: int = logging.NOTSET,
        *,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(level)
        self.capacity = capacity
        self._entries: collections.deque[LogEntry] = collections.deque(maxlen=capacity)
        self._seq = 0
        self._changed = threading.Condition()
        if rate_limited:
            self.addFilter(RateLimitFilter())
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_text:
                msg = f"{msg}\n{record.exc_text}"
            with self._changed:
                self._seq += 1
                self._entries.append(
                    LogEntry(
                        seq=self._seq,
                        ts=record.created,
                        level=record.levelname,
                        logger=record.name,
                        msg=msg,
                        job_id=getattr(record, "job_id", None),
                    )
                )
                self._changed.notify_all()
        except Exception:
            self.handleError(record)

    @property
    def last_seq(self) -> int:
        return self._seq

    def entries(self, after: int = 0, limit: int | None = None) -> list[LogEntry]:
        """Entries with ``seq > after``, oldest first (at most the last ``limit``)."""
        with self._changed:
            found = [e for e in self._entries if e.seq > after]
        return found if limit is None else found[-limit:]

    def lines(self, after: int = 0) -> list[str]:
        """The entries as plain text lines (``ts LEVEL logger: msg``)."""
        return [f"{_iso(e.ts)} {e.level} {e.logger}: {e.msg}" for e in self.entries(after)]

    def wait(self, after: int, timeout: float) -> bool:
        """Block (in a thread) until an entry newer than ``after`` exists or ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._seq > after, timeout)

    def clear(self) -> None:
        with self._changed:
            self._entries.clear()


class _NodeStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The console handler setup_logging installs (recognised when it runs again)."""


@dataclass(frozen=True, slots=True)
class LogSetup:
    console: logging.Handler
    ring: RingBufferHandler


_CURRENT: LogSetup | None = None


def current_ring() -> RingBufferHandler | None:
    """The live log of the running process, if :func:`setup_logging` was called."""
    return None if _CURRENT is None else _CURRENT.ring


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}")
    return value


def setup_logging(
    level: str | int = DEFAULT_LOG_LEVEL,
    log_format: str = DEFAULT_LOG_FORMAT,
    *,
    secrets: Iterable[str] = (),
    stream: IO[str] | None = None,
    ring_lines: int = DEFAULT_RING_LINES,
) -> LogSetup:
    """(Re)configure the root logger: one redacted console handler and the live-log ring.

    Replaces the handlers an earlier call (or ``logging.basicConfig``) installed; handlers of
    other kinds (a test's capture handler) are left in place.
    """
    global _CURRENT
    fmt = log_format.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)} (got {log_format!r})")
    REDACTOR.clear()
    REDACTOR.add_secrets(secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) in (logging.StreamHandler, _NodeStreamHandler, RingBufferHandler):
            root.removeHandler(handler)
    console = _NodeStreamHandler(stream if stream is not None else sys.stderr)
    console.setFormatter(JsonFormatter() if fmt == LOG_FORMAT_JSON else HumanFormatter())
    console.addFilter(RateLimitFilter())
    console.addFilter(RedactingFilter())
    ring = RingBufferHandler(ring_lines, rate_limited=True)
    root.addHandler(console)
    root.addHandler(ring)
    root.setLevel(_level(level))
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet, root.level))
    _CURRENT = LogSetup(console=console, ring=ring)
    return _CURRENT


def setup_from_settings(
    settings: object, *, verbose: bool = False, log_format: str | None = None
) -> LogSetup:
    """:func:`setup_logging` from the settings: ``LOG_LEVEL`` (DEBUG with ``-v``), ``LOG_FORMAT``
    (until the field exists in config.py: ``log_format`` here, else the default) and every
    configured secret."""
    level = "DEBUG" if verbose else str(getattr(settings, "log_level", DEFAULT_LOG_LEVEL))
    fmt = log_format or str(getattr(settings, "log_format", None) or DEFAULT_LOG_FORMAT)
    return setup_logging(level, fmt, secrets=secrets_of(settings))


def iter_redacted(lines: Iterable[str]) -> Iterator[str]:
    """Each line redacted (for text that never went through logging, e.g. ffmpeg stderr)."""
    for line in lines:
        yield redact(line)


__all__ = [
    "DEFAULT_LOG_FORMAT",
    "DEFAULT_LOG_LEVEL",
    "DEFAULT_RING_LINES",
    "LOG_FORMATS",
    "LOG_FORMAT_HUMAN",
    "LOG_FORMAT_JSON",
    "MASK",
    "RATE_LIMITER",
    "REDACTOR",
    "HumanFormatter",
    "JsonFormatter",
    "LogEntry",
    "LogSetup",
    "RateLimitFilter",
    "RateLimiter",
    "RedactingFilter",
    "Redactor",
    "RingBufferHandler",
    "bind_job_id",
    "current_job_id",
    "current_ring",
    "iter_redacted",
    "redact",
    "secrets_of",
    "setup_from_settings",
    "setup_logging",
]
