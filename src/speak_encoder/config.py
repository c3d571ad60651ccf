"""One typed settings object, read once at start.

Why this module is long: it is the one settings table: every setting with its named default and
its validation, in the one place ``scripts/gen-env-example.py`` and the README test read. Split,
a setting's default and its check would live apart.

Values come from (highest priority first): command-line flags (passed as keyword arguments to
:func:`load_settings`), the process environment, then an *env file*. The env file is never taken
from the working directory (a command run in someone else's folder must not take that folder's
settings, e.g. ``FFMPEG_PATH=./evil.sh``): it is the file given with ``--env-file`` or
``SPEAK_ENCODER_ENV_FILE`` (empty = none), else :data:`DEFAULT_ENV_FILE` when it exists. Whichever
it is, it must be a regular file owned by the user running the command (or root) and writable by
nobody else, in a folder nobody else can write to; otherwise the command stops with a
:class:`~speak_encoder.errors.ConfigError` instead of reading it.
Environment names are the field names in upper case, compatible with the existing Node.js
encoder where it had the same setting (``NODE_NAME``, ``ENCODER_PRIVATE_KEY``,
``MAX_CONCURRENT_JOBS``, ``DIRECT_API_*``, ``IPFS_API_ADDR``, ``TEMP_DIR``,
``HARDWARE_ACCELERATION``).

Every default is a named constant below, documented where it is defined. A bad value fails at
start with a :class:`~speak_encoder.errors.ConfigError` that names the environment key.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from speak_encoder.config_values import coerce, environment_values, optional_base, read_env_file
from speak_encoder.errors import ConfigError
from speak_encoder.secret_str import SecretStr

#: Where the node keeps its state (job store, local CID store, pending pins).
DEFAULT_DATA_DIR = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / (
    "speak-encoder"
)
#: libx264 preset. ``medium`` is the network's reference quality/speed point.
DEFAULT_PRESET = "medium"
#: Capped CRF: quality target, bounded by each rung's -maxrate/-bufsize.
DEFAULT_CRF = 19
#: Seconds without receiving a single byte before a download is abandoned.
DEFAULT_STALL_TIMEOUT_S = 60.0
#: Seconds to establish a TCP/TLS connection to a source.
DEFAULT_CONNECT_TIMEOUT_S = 15.0
#: Largest source accepted, in MiB (20 GiB).
DEFAULT_MAX_SOURCE_MB = 20 * 1024
#: Free space (MiB) always left untouched in the work directory.
DEFAULT_DISK_RESERVE_MB = 1024
#: How many times a dropped HTTP download is resumed with a Range request.
DEFAULT_FETCH_RESUMES = 5
#: Bytes per read/write when streaming a download to disk.
DEFAULT_CHUNK_BYTES = 256 * 1024
#: Public IPFS gateways tried, in order, for IPFS sources.
DEFAULT_IPFS_GATEWAYS = "https://ipfs.3speak.tv,https://ipfs.io"
#: The local Kubo RPC API (multiaddr or URL); used for `cat` when it answers.
DEFAULT_IPFS_API_ADDR = "/ip4/127.0.0.1/tcp/5001"
#: Rungs for direct-API jobs that are neither short nor premium (upstream policy).
DEFAULT_STANDARD_RUNGS = "480p"
#: Threads ffmpeg may use to run the filter graph (decode once, scale per rung).
DEFAULT_FILTER_THREADS = 2
#: Seconds to connect to an IPFS RPC endpoint.
DEFAULT_IPFS_CONNECT_TIMEOUT_S = 10.0
#: Seconds an upload to IPFS may go without the peer accepting a byte.
DEFAULT_IPFS_UPLOAD_STALL_S = 120.0
#: Seconds the IPFS node may take to answer once the upload is complete (pinning, DAG writes).
DEFAULT_IPFS_PROCESSING_TIMEOUT_S = 600.0
#: First back-off (s) of a pending pin; doubles per failed attempt up to the maximum.
DEFAULT_PIN_RETRY_BASE_S = 30.0
DEFAULT_PIN_RETRY_MAX_S = 3600.0
#: Pending pins older than this (hours) are given up (and reported as such).
DEFAULT_PIN_MAX_AGE_H = 7 * 24.0
#: Jobs waiting or running beyond which submissions are refused.
DEFAULT_QUEUE_MAX = 100
#: Failed attempts after which a job fails for good.
DEFAULT_MAX_ATTEMPTS = 5
#: Back-off of a retried job: base × 2^(attempts-1), capped, ± 20 % jitter (seconds).
DEFAULT_RETRY_BASE_S = 30.0
DEFAULT_RETRY_MAX_S = 1800.0
#: A job making no progress in any stage for this long is cancelled (seconds).
DEFAULT_STUCK_TIMEOUT_S = 30 * 60.0
#: Longest a job may run at all (seconds).
DEFAULT_JOB_TIMEOUT_S = 12 * 3600.0
#: Running jobs get this long to finish after SIGTERM before they are requeued (seconds).
DEFAULT_SHUTDOWN_GRACE_S = 60.0
#: A claimed job belongs to its node for this long unless the heartbeat renews it (seconds).
DEFAULT_LEASE_S = 120.0
#: Memory log interval (seconds) and the warning / intake-pause thresholds (MiB of RSS,
#: encoder + its ffmpeg children).
DEFAULT_MEMORY_LOG_INTERVAL_S = 300.0
DEFAULT_MEMORY_WARN_MB = 1500
DEFAULT_MEMORY_CRITICAL_MB = 6000
#: Finished job results stay in memory caches this long (hours); rows stay in the store for
#: HISTORY_DAYS.
DEFAULT_RESULT_TTL_H = 24.0
DEFAULT_HISTORY_DAYS = 30.0
#: Free disk needed to start a job: announced source size × this factor (source + ladder).
DEFAULT_DISK_FACTOR = 2.5
#: x264 threads per rung and lookahead frames (see Settings.x264_threads).
DEFAULT_X264_THREADS = 2
DEFAULT_X264_LOOKAHEAD = 10
#: Packets ffmpeg may buffer per output stream before it gives up (bounds its memory).
DEFAULT_MAX_MUXING_QUEUE = 1024
#: Poster (thumbnail.jpg), I-frame playlists and storyboard previews in every output folder.
DEFAULT_OUTPUT_EXTRAS = True
#: Longest source accepted (seconds of media, announced or measured): 12 hours, as long as a job
#: may run at all (JOB_TIMEOUT) — a longer video could not be encoded in time anyway.
DEFAULT_MAX_SOURCE_DURATION_S = 12 * 3600.0
#: Largest video frame accepted, in pixels (width × height): DCI 8K (8192 × 4320 = 35.4 Mpx), so
#: every 8K UHD (7680 × 4320) source and its portrait twin still pass.
DEFAULT_MAX_SOURCE_PIXELS = 8192 * 4320
#: Resident memory (MiB) one job's ffmpeg may use before it is killed and the job fails for good.
#: An honest 1080p source with the full ladder peaks near 0.5 GiB (bench/README.md).
DEFAULT_FFMPEG_MEMORY_MAX_MB = 4096
#: Seconds a client may take to send a request's headers, and then its body, to the Direct API or
#: the operator server before the connection is closed (slowloris).
DEFAULT_HTTP_HEADER_TIMEOUT_S = 10.0
DEFAULT_HTTP_BODY_TIMEOUT_S = 30.0
#: Connections each HTTP server holds at once; beyond, the oldest idle one makes room.
DEFAULT_HTTP_MAX_CONNECTIONS = 64
#: Shortest DIRECT_API_KEY / DASHBOARD_TOKEN accepted (characters).
MIN_SECRET_TOKEN_LENGTH = 16
#: Name of the environment variable that names the env file ("" = read none).
ENV_FILE_VARIABLE = "SPEAK_ENCODER_ENV_FILE"
#: The env file read when none is named: $XDG_CONFIG_HOME/speak-encoder/env (if it exists).
DEFAULT_ENV_FILE = (
    Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / ("speak-encoder") / "env"
)
#: File name of the SQLite job store inside DATA_DIR.
SQLITE_NAME = "jobs.sqlite3"
#: Database URL schemes the job store can use.
DATABASE_SCHEMES = ("sqlite", "postgresql")


_T = TypeVar("_T")


def bounded(
    default: _T, *, ge: float | None = None, gt: float | None = None, le: float | None = None
) -> _T:
    """A setting's default with the bounds its value must keep (shown in .env.example)."""
    limits = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le)) if v is not None}
    return field(default=default, metadata={"bounds": limits})


def _default_node_name() -> str:
    return f"speak-encoder-{socket.gethostname()}"


@dataclass(kw_only=True)
class Settings:
    """Every setting of the node. Field ``foo_bar`` is environment variable ``FOO_BAR``.

    Building one converts and checks every value (text from the environment or a file becomes
    the declared type, bounds and the checks below apply); a bad value is a
    :class:`~speak_encoder.errors.ConfigError` naming its key. Only :func:`load_settings` reads
    the environment and the env file."""

    # --- identity -------------------------------------------------------------------------
    node_name: str = field(default_factory=_default_node_name)
    hive_username: str = ""
    encoder_private_key: SecretStr | None = None

    # --- folders --------------------------------------------------------------------------
    data_dir: Path = DEFAULT_DATA_DIR
    #: Per-job work folders. Defaults to DATA_DIR/work (never a RAM-backed /tmp: sources can be
    #: many GB).
    temp_dir: Path | None = None

    # --- ffmpeg ---------------------------------------------------------------------------
    ffmpeg_path: str = "ffmpeg"
    ffprobe_path: str = "ffprobe"
    encoder_preset: str = DEFAULT_PRESET
    encoder_crf: int = bounded(DEFAULT_CRF, ge=0, le=51)
    #: Optional TOML file replacing the built-in ladder table (see data/ladder.toml).
    ladder_file: Path | None = None
    filter_threads: int = bounded(DEFAULT_FILTER_THREADS, ge=1, le=64)
    #: x264 threads per rung (0 = x264's own choice; 1 is refused: ffmpeg 5.1 would then run
    #: the rungs one after another) and its lookahead in frames (only ever lowers the
    #: preset's own). The defaults are the measured speed/memory optimum of the one-decode
    #: ladder on 2 cores: as fast as x264's defaults, under the per-rung baseline's peak RSS
    #: (bench/README.md).
    x264_threads: int = bounded(DEFAULT_X264_THREADS, ge=0, le=64)
    x264_rc_lookahead: int | None = bounded(DEFAULT_X264_LOOKAHEAD, ge=0, le=250)
    max_muxing_queue: int = bounded(DEFAULT_MAX_MUXING_QUEUE, ge=16, le=65536)
    #: Poster, I-frame playlists and storyboard, made from the ladder's own decode
    #: (``encode --no-extras`` turns them off for one encode).
    output_extras: bool = DEFAULT_OUTPUT_EXTRAS
    #: Resident memory (MiB) a job's ffmpeg may use: above, it is killed and the job fails for
    #: good with a readable error (0 = no limit).
    ffmpeg_memory_max_mb: int = bounded(DEFAULT_FFMPEG_MEMORY_MAX_MB, ge=0)
    hardware_acceleration: bool = True
    #: A hardware encoder that failed this many jobs in a row is not tried until re-detection.
    hw_broken_after: int = bounded(3, ge=1, le=100)
    #: Render node for VA-API and QSV (None = /dev/dri/renderD128).
    vaapi_device: str | None = None
    #: Seconds one hardware detection test encode may take.
    hw_detect_timeout: float = bounded(60.0, gt=0)
    #: Rungs of a direct-API job that is neither short nor premium.
    standard_rungs: str = DEFAULT_STANDARD_RUNGS

    # --- fetching sources -----------------------------------------------------------------
    ipfs_gateways: str = DEFAULT_IPFS_GATEWAYS
    ipfs_api_addr: str = DEFAULT_IPFS_API_ADDR
    fetch_stall_timeout: float = bounded(DEFAULT_STALL_TIMEOUT_S, gt=0)
    fetch_connect_timeout: float = bounded(DEFAULT_CONNECT_TIMEOUT_S, gt=0)
    fetch_resumes: int = bounded(DEFAULT_FETCH_RESUMES, ge=0, le=100)
    max_source_mb: int = bounded(DEFAULT_MAX_SOURCE_MB, gt=0)
    #: Longest source accepted, in seconds of media: the length its container announces and the
    #: length its streams really have (their last timestamps) are both checked, before any
    #: encoding.
    max_source_duration: float = bounded(DEFAULT_MAX_SOURCE_DURATION_S, gt=0)
    #: Largest video frame accepted, in pixels (width × height; the default takes DCI 8K). Checked
    #: on the probe before anything is decoded, and passed to ffprobe/ffmpeg as -max_pixels.
    max_source_pixels: int = bounded(DEFAULT_MAX_SOURCE_PIXELS, ge=64 * 64)
    #: Check the bytes of an IPFS source fetched from a gateway against its CID while they stream
    #: (the local Kubo node verifies its own blocks). Assumes `ipfs add` defaults (256 KiB chunks,
    #: balanced DAG; CIDv1 = raw leaves): a CID made otherwise cannot be verified.
    ipfs_verify_sources: bool = True
    disk_reserve_mb: int = bounded(DEFAULT_DISK_RESERVE_MB, ge=0)
    chunk_bytes: int = bounded(DEFAULT_CHUNK_BYTES, ge=4096, le=16 * 1024 * 1024)

    # --- publishing (storage/) ------------------------------------------------------------
    #: Publish targets in the order they are tried: local, hotnode, supernode, cluster,
    #: pinning_service. "local" is the node at IPFS_API_ADDR.
    publish_targets: str = "local"
    #: Which successes a publish needs: "all", "any", "any-remote", or a comma list of names.
    publish_required: str = "all"
    traffic_director_url: str | None = None
    threespeak_ipfs_endpoint: str | None = None
    ipfs_cluster_url: str | None = None
    ipfs_cluster_token: SecretStr | None = None
    pinning_service_url: str | None = None
    pinning_service_token: SecretStr | None = None
    ipfs_connect_timeout: float = bounded(DEFAULT_IPFS_CONNECT_TIMEOUT_S, gt=0)
    ipfs_upload_stall_timeout: float = bounded(DEFAULT_IPFS_UPLOAD_STALL_S, gt=0)
    ipfs_processing_timeout: float = bounded(DEFAULT_IPFS_PROCESSING_TIMEOUT_S, gt=0)
    pin_retry_base: float = bounded(DEFAULT_PIN_RETRY_BASE_S, gt=0)
    pin_retry_max: float = bounded(DEFAULT_PIN_RETRY_MAX_S, gt=0)
    pin_max_age_hours: float = bounded(DEFAULT_PIN_MAX_AGE_H, gt=0)

    # --- service (used by `speak-encoder run`) ---------------------------------------------
    #: SQLAlchemy URL of the job store; empty = SQLite in DATA_DIR/jobs.sqlite3. A fleet of
    #: nodes shares one PostgreSQL: postgresql+psycopg://user:pass@host/db
    database_url: SecretStr | None = None
    max_concurrent_jobs: int = bounded(1, ge=1, le=64)
    queue_max: int = bounded(DEFAULT_QUEUE_MAX, ge=1)
    max_attempts: int = bounded(DEFAULT_MAX_ATTEMPTS, ge=1, le=100)
    retry_base: float = bounded(DEFAULT_RETRY_BASE_S, gt=0)
    retry_max: float = bounded(DEFAULT_RETRY_MAX_S, gt=0)
    stuck_timeout: float = bounded(DEFAULT_STUCK_TIMEOUT_S, gt=0)
    job_timeout: float = bounded(DEFAULT_JOB_TIMEOUT_S, gt=0)
    shutdown_grace: float = bounded(DEFAULT_SHUTDOWN_GRACE_S, ge=0)
    lease_seconds: float = bounded(DEFAULT_LEASE_S, gt=1)
    memory_log_interval: float = bounded(DEFAULT_MEMORY_LOG_INTERVAL_S, gt=0)
    memory_warn_mb: int = bounded(DEFAULT_MEMORY_WARN_MB, gt=0)
    memory_critical_mb: int = bounded(DEFAULT_MEMORY_CRITICAL_MB, gt=0)
    result_ttl_hours: float = bounded(DEFAULT_RESULT_TTL_H, gt=0)
    history_days: float = bounded(DEFAULT_HISTORY_DAYS, gt=0)
    disk_factor: float = bounded(DEFAULT_DISK_FACTOR, ge=1)
    direct_api_enabled: bool = False
    direct_api_host: str = "127.0.0.1"
    direct_api_port: int = bounded(3002, ge=1, le=65535)
    direct_api_key: SecretStr | None = None
    #: Largest request body the Direct API accepts (bytes).
    direct_api_max_body: int = bounded(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    #: Serve the Swagger UI at /docs (it loads its script from a CDN; /openapi.json is always
    #: served).
    direct_api_docs: bool = False
    #: Rungs of a direct/embed job that is neither short nor premium: STANDARD_RUNGS above.
    #: A re-submitted (owner, permlink, input_cid) is the same job while queued, running or
    #: completed less than this many hours ago.
    dedup_window_hours: float = bounded(24.0, ge=0)

    # --- webhooks (direct and embed jobs) ----------------------------------------------------
    #: HMAC-SHA256 key for the X-Speak-Signature header (unset = unsigned, as upstream).
    webhook_secret: SecretStr | None = None
    webhook_timeout: float = bounded(10.0, gt=0)
    #: Attempts of a completion/failure webhook before it is given up.
    webhook_max_attempts: int = bounded(12, ge=1, le=100)
    webhook_retry_base: float = bounded(10.0, gt=0)
    webhook_retry_max: float = bounded(3600.0, gt=0)
    #: Allow webhook and source URLs that resolve to loopback/private/link-local addresses
    #: (labs and tests only: it opens the node's own services to whoever submits jobs).
    allow_private_urls: bool = False

    # --- 3Speak gateways ------------------------------------------------------------------
    #: The legacy encoder gateway (community nodes).
    gateway_enabled: bool = False
    gateway_url: str = "https://encoder-gateway.infra.3speak.tv"
    #: The embed gateway ("community mode" upstream).
    embed_gateway_enabled: bool = False
    embed_gateway_url: str = "https://embed.3speak.tv"
    #: Seconds between two polls of a gateway (± 20 % jitter).
    gateway_poll_interval: float = bounded(60.0, gt=0)
    #: Seconds a gateway request may take.
    gateway_timeout: float = bounded(30.0, gt=0)
    log_level: str = "INFO"
    #: Console log format: "human" lines, or "json" (one object per line, for journald/Loki).
    log_format: str = "human"

    # --- operator server (/health, /ready, /metrics; the dashboard later) --------------------
    #: Address of the operator server (never all interfaces by default).
    dashboard_host: str = "127.0.0.1"
    #: Port of the operator server.
    dashboard_port: int = bounded(3001, ge=1, le=65535)
    #: Operator token for the dashboard's actions (read-only without it; at least 16
    #: characters).
    dashboard_token: SecretStr | None = None
    #: Host names (comma list) the Direct API and the operator server answer besides their bound
    #: address and localhost; any other Host header gets 400 (DNS rebinding). "*" = any.
    allowed_hosts: str = ""
    #: Seconds a client may take to send a request's headers before the connection is closed.
    http_header_timeout: float = bounded(DEFAULT_HTTP_HEADER_TIMEOUT_S, gt=0, le=600)
    #: Seconds a client may then take to send the body it announced.
    http_body_timeout: float = bounded(DEFAULT_HTTP_BODY_TIMEOUT_S, gt=0, le=3600)
    #: Connections each HTTP server (Direct API, operator server) holds at once (never more
    #: than 1/8 of the file-descriptor limit); beyond, a slow or idle one is closed to make room.
    http_max_connections: int = bounded(DEFAULT_HTTP_MAX_CONNECTIONS, ge=4, le=10000)

    def __post_init__(self) -> None:
        problems = []
        hints = _field_types()
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            try:
                before = _BEFORE.get(item.name)
                value = coerce(
                    before(value) if before else value,
                    hints[item.name],
                    item.metadata.get("bounds"),
                )
                check = _CHECKS.get(item.name)
                setattr(self, item.name, check(value) if check else value)
            except ValueError as exc:
                secret = optional_base(hints[item.name])[1] is SecretStr
                shown = "" if secret else f" (got {value!r})"
                problems.append(f"{item.name.upper()}: {exc}{shown}")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))

    @property
    def work_dir(self) -> Path:
        """Folder that holds one sub-folder per running job."""
        return self.temp_dir if self.temp_dir is not None else self.data_dir / "work"

    @property
    def store_url(self) -> str:
        """The job store's SQLAlchemy URL (a secret: it may hold a password)."""
        if self.database_url is not None and self.database_url.get_secret_value():
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / SQLITE_NAME}"

    @property
    def gateway_list(self) -> list[str]:
        return [g.rstrip("/") for g in self.ipfs_gateways.split(",") if g]

    @property
    def allowed_host_list(self) -> list[str]:
        return [h.lower() for h in self.allowed_hosts.split(",") if h]

    @property
    def max_source_bytes(self) -> int:
        return self.max_source_mb * 1024 * 1024

    @property
    def disk_reserve_bytes(self) -> int:
        return self.disk_reserve_mb * 1024 * 1024


# --- the checks beyond type and bounds ---------------------------------------------------------

_PRESETS = frozenset(
    {
        "ultrafast", "superfast", "veryfast", "faster", "fast",
        "medium", "slow", "slower", "veryslow", "placebo",
    }
)  # fmt: skip


def _known_preset(value: Any) -> Any:
    if value not in _PRESETS:
        raise ValueError(f"must be one of {', '.join(sorted(_PRESETS))}")
    return value


def _known_format(value: Any) -> Any:
    if value.lower() not in {"human", "json"}:
        raise ValueError("must be human or json")
    return value.lower()


def _preset_lookahead(value: Any) -> Any:
    """``X264_RC_LOOKAHEAD=`` (empty) or ``preset`` keeps the preset's own lookahead."""
    if isinstance(value, str) and value.strip().lower() in {"", "preset", "none"}:
        return None
    return value


def _not_one_thread(value: Any) -> Any:
    if value == 1:
        raise ValueError(
            "must be 0 (automatic) or at least 2: with one thread per rung ffmpeg 5.1 "
            "encodes the rungs one after another"
        )
    return value


def _known_level(value: Any) -> Any:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _long_enough(value: Any) -> Any:
    if value is not None and 0 < len(value.get_secret_value()) < MIN_SECRET_TOKEN_LENGTH:
        raise ValueError(
            f"must be at least {MIN_SECRET_TOKEN_LENGTH} characters (a short key can be "
            "guessed): make one with `openssl rand -hex 24`"
        )
    return value


def _database_url(value: Any) -> Any:
    if value is not None and value.get_secret_value().strip():
        database_url_problem(value.get_secret_value().strip())
    return value


def _strip_list(value: Any) -> Any:
    return ",".join(part.strip() for part in value.split(",") if part.strip())


#: Applied to the raw value, before it is converted to the field's type.
_BEFORE: dict[str, Callable[[Any], Any]] = {"x264_rc_lookahead": _preset_lookahead}
#: Applied to the converted value.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "encoder_preset": _known_preset,
    "log_format": _known_format,
    "x264_threads": _not_one_thread,
    "log_level": _known_level,
    "direct_api_key": _long_enough,
    "dashboard_token": _long_enough,
    "database_url": _database_url,
    "ipfs_gateways": _strip_list,
    "standard_rungs": _strip_list,
    "publish_targets": _strip_list,
    "allowed_hosts": _strip_list,
}
_TYPES: dict[str, Any] = {}


def _field_types() -> dict[str, Any]:
    """Each field's declared type (resolved once: the annotations are strings here)."""
    if not _TYPES:
        _TYPES.update(typing.get_type_hints(Settings))
    return _TYPES


def setting_fields() -> dict[str, dataclasses.Field[Any]]:
    """The settings by field name, in table order (``.default``; ``.metadata["bounds"]``)."""
    return {item.name: item for item in dataclasses.fields(Settings)}


def setting_default(name: str) -> Any:
    """The default of setting ``name`` (a factory's value for NODE_NAME)."""
    item = setting_fields()[name]
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def database_url_problem(url: str) -> None:
    """Raise a ValueError (never echoing ``url``: it may hold a password) if the job store
    cannot use it; parsing is SQLAlchemy's, imported only when a URL is configured."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(
            "not a database URL: expected postgresql+psycopg://user:password@host/db "
            "(or empty for SQLite in DATA_DIR)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in DATABASE_SCHEMES:
        raise ValueError(
            f"unsupported database {backend!r}: use postgresql+psycopg://… (or empty for SQLite)"
        )
    if backend == "postgresql" and parsed.get_driver_name() != "psycopg":
        raise ValueError(
            f"the {parsed.get_driver_name()!r} driver is not installed: use postgresql+psycopg://…"
        )


def env_file_problem(path: Path) -> str | None:
    """Why ``path`` must not be read as an env file (``None``: it may)."""
    try:
        info = path.stat()
        folder = path.resolve().parent.stat()
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    owners = {os.geteuid(), 0}
    if info.st_uid not in owners:
        return f"it belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"others may write to it (mode {stat.S_IMODE(info.st_mode):04o}): chmod go-w it"
    if folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not folder.st_mode & stat.S_ISVTX:
        return "its folder is writable by others (the file could be replaced)"
    if folder.st_uid not in owners and folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "its folder belongs to another user and is writable by others"
    return None


def env_file_to_read(env_file: Path | str | None = None) -> Path | None:
    """The env file to read: ``env_file`` (``--env-file``), else ``SPEAK_ENCODER_ENV_FILE``
    (empty = none), else :data:`DEFAULT_ENV_FILE` if it exists. A named file that is missing or
    unsafe, or an unsafe default file, is a :class:`ConfigError`."""
    named: str | None = str(env_file) if env_file is not None else None
    variable = ENV_FILE_VARIABLE
    if named is None:
        named = os.environ.get(ENV_FILE_VARIABLE)
    else:
        variable = "--env-file"
    if named is not None:
        if not named.strip():
            return None
        path = Path(named).expanduser()
        if not path.exists():
            raise ConfigError(f"{variable}: {path} does not exist")
    elif DEFAULT_ENV_FILE.exists():
        path = DEFAULT_ENV_FILE
    else:
        return None
    problem = env_file_problem(path)
    if problem is not None:
        raise ConfigError(f"refusing to read the env file {path}: {problem}")
    return path


def load_settings(*, env_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the settings once; CLI flags come in as ``overrides`` (``None`` = not given).

    ``env_file`` is ``--env-file`` (see :func:`env_file_to_read`). Priority: ``overrides``,
    then the process environment, then the env file, then the defaults."""
    names = frozenset(setting_fields())
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"not settings: {', '.join(unknown)}")
    path = env_file_to_read(env_file)
    values: dict[str, Any] = {}
    if path is not None:
        values.update(environment_values(names, read_env_file(path)))
    values.update(environment_values(names, os.environ))
    values.update({key: value for key, value in overrides.items() if value is not None})
    return Settings(**values)


__all__ = [
    "DATABASE_SCHEMES",
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_CRF",
    "DEFAULT_DATA_DIR",
    "DEFAULT_DISK_FACTOR",
    "DEFAULT_DISK_RESERVE_MB",
    "DEFAULT_ENV_FILE",
    "DEFAULT_FETCH_RESUMES",
    "DEFAULT_FFMPEG_MEMORY_MAX_MB",
    "DEFAULT_FILTER_THREADS",
    "DEFAULT_HISTORY_DAYS",
    "DEFAULT_HTTP_BODY_TIMEOUT_S",
    "DEFAULT_HTTP_HEADER_TIMEOUT_S",
    "DEFAULT_HTTP_MAX_CONNECTIONS",
    "DEFAULT_IPFS_API_ADDR",
    "DEFAULT_IPFS_CONNECT_TIMEOUT_S",
    "DEFAULT_IPFS_GATEWAYS",
    "DEFAULT_IPFS_PROCESSING_TIMEOUT_S",
    "DEFAULT_IPFS_UPLOAD_STALL_S",
    "DEFAULT_JOB_TIMEOUT_S",
    "DEFAULT_LEASE_S",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_MUXING_QUEUE",
    "DEFAULT_MAX_SOURCE_DURATION_S",
    "DEFAULT_MAX_SOURCE_MB",
    "DEFAULT_MAX_SOURCE_PIXELS",
    "DEFAULT_MEMORY_CRITICAL_MB",
    "DEFAULT_MEMORY_LOG_INTERVAL_S",
    "DEFAULT_MEMORY_WARN_MB",
    "DEFAULT_OUTPUT_EXTRAS",
    "DEFAULT_PIN_MAX_AGE_H",
    "DEFAULT_PIN_RETRY_BASE_S",
    "DEFAULT_PIN_RETRY_MAX_S",
    "DEFAULT_PRESET",
    "DEFAULT_QUEUE_MAX",
    "DEFAULT_RESULT_TTL_H",
    "DEFAULT_RETRY_BASE_S",
    "DEFAULT_RETRY_MAX_S",
    "DEFAULT_SHUTDOWN_GRACE_S",
    "DEFAULT_STALL_TIMEOUT_S",
    "DEFAULT_STANDARD_RUNGS",
    "DEFAULT_STUCK_TIMEOUT_S",
    "DEFAULT_X264_LOOKAHEAD",
    "DEFAULT_X264_THREADS",
    "ENV_FILE_VARIABLE",
    "MIN_SECRET_TOKEN_LENGTH",
    "SQLITE_NAME",
    "SecretStr",
    "Settings",
    "database_url_problem",
    "env_file_problem",
    "env_file_to_read",
    "load_settings",
    "setting_default",
    "setting_fields",
]
