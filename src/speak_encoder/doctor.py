"""``speak-encoder doctor``: is this node able to work? One check per thing it depends on.

Why this module is long: it is the one list of checks ``doctor`` runs, each a short function
over one dependency, all sharing :class:`Check`, the redaction and the deadline runner; read top
to bottom it follows the list below, which a split by topic would scatter.

Each check gives ``ok``, ``warn`` (works, but look at it), ``fail`` (the node cannot do its job)
or ``skip`` (not configured). The checks run concurrently; every network check has a short
timeout (:data:`DEFAULT_NETWORK_TIMEOUT_S`) and every check a deadline
(:data:`CHECK_DEADLINE_S`), so the doctor never hangs. Details are redacted (URLs with
credentials, tokens) before they are shown.

* ``ffmpeg`` / ``ffprobe``: found, versions; the encoders (libx264, aac) and filters (scale,
  split, fps, aresample, asplit) the pipeline needs; zscale + tonemap (HDR sources) optional.
* ``hardware``: the hardware encoders (detected once, then cached in DATA_DIR).
* ``ipfs``: the node at IPFS_API_ADDR answers ``id`` and ``version``.
* ``target:<name>``: each remote publish target answers (a cheap GET; tokens are checked).
* ``gateway`` / ``embed gateway``: ``GET /api/v0/gateway/stats``, a GET of the embed base URL.
* ``identity``: the key loads (DID shown), key file mode.
* ``store``: the job store answers.
* ``disk``: free space in the work directory against DISK_RESERVE_MB.
* ``permissions``: DATA_DIR and the work directory are writable, private (0700), and not a
  folder shared with other users such as ``/tmp`` (nor inside one).
* ``config``: settings that work but are risky or contradictory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import stat
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import httpx

from speak_encoder import USER_AGENT
from speak_encoder.config import Settings
from speak_encoder.errors import SpeakEncoderError
from speak_encoder.logs import redact

Status = Literal["ok", "warn", "fail", "skip"]
OK: Final = "ok"
WARN: Final = "warn"
FAIL: Final = "fail"
SKIP: Final = "skip"

#: Seconds a network check may wait to connect and for an answer.
DEFAULT_NETWORK_TIMEOUT_S: Final = 5.0
#: Seconds any one check may take in all (ffmpeg queries, the job store, several requests).
CHECK_DEADLINE_S: Final = 20.0
#: Seconds hardware detection may take (test encodes on each GPU found; cached afterwards).
HARDWARE_DEADLINE_S: Final = 180.0
#: Seconds ffmpeg/ffprobe get to print their version, encoders or filters.
TOOL_TIMEOUT_S: Final = 15.0
#: Free disk above the reserve under which the doctor warns (one typical job's source + ladder).
DISK_HEADROOM_MB: Final = 5 * 1024
#: What the pipeline cannot do without, and what it uses when present.
REQUIRED_ENCODERS: Final = ("libx264", "aac")
REQUIRED_FILTERS: Final = ("scale", "split", "fps", "setsar", "format", "aresample", "aformat",
                           "asplit")  # fmt: skip
OPTIONAL_FILTERS: Final = ("zscale", "tonemap")
#: Folders every user can write to (TEMP_DIR must not be one of them, nor inside one).
SHARED_FOLDERS: Final = frozenset({"/tmp", "/var/tmp", "/dev/shm", "/run/shm"})  # noqa: S108
#: Hosts that only this machine can reach.
_LOOPBACK_NAMES: Final = frozenset({"localhost", "ip6-localhost"})


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


def _check(name: str, status: Status, detail: str) -> Check:
    return Check(name, status, redact(" ".join(detail.split())))


def failed(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


# --- ffmpeg ---------------------------------------------------------------------------------


async def _tool_output(binary: str, flag: str) -> str:
    from speak_encoder.proc import run_capture

    done = await run_capture([binary, "-hide_banner", flag], timeout=TOOL_TIMEOUT_S)
    if done.returncode != 0:
        raise SpeakEncoderError(f"{binary} {flag} exited with code {done.returncode}")
    return done.stdout.decode("utf-8", "replace")


def _version_of(text: str, tool: str) -> str:
    for word_index, word in enumerate(first := text.split()[:3]):
        if word == "version" and word_index + 1 < len(first):
            return first[word_index + 1]
    return f"{tool} (unknown version)"


def _listed(text: str) -> set[str]:
    """Names in an ``-encoders`` / ``-filters`` listing (second column of each entry)."""
    names = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith((" --", "--")):
            names.add(parts[1])
    return names


async def check_ffmpeg(settings: Settings) -> list[Check]:
    try:
        version_text, encoders, filters = await asyncio.gather(
            _tool_output(settings.ffmpeg_path, "-version"),
            _tool_output(settings.ffmpeg_path, "-encoders"),
            _tool_output(settings.ffmpeg_path, "-filters"),
        )
    except (SpeakEncoderError, TimeoutError) as exc:
        return [_check("ffmpeg", FAIL, f"{settings.ffmpeg_path}: {exc or 'timed out'}")]
    version = _version_of(version_text, "ffmpeg")
    have_encoders, have_filters = _listed(encoders), _listed(filters)
    missing = [e for e in REQUIRED_ENCODERS if e not in have_encoders]
    missing += [f"filter {f}" for f in REQUIRED_FILTERS if f not in have_filters]
    checks = []
    if missing:
        checks.append(_check("ffmpeg", FAIL, f"{version}: missing {', '.join(missing)}"))
    else:
        checks.append(_check("ffmpeg", OK, f"{version} ({', '.join(REQUIRED_ENCODERS)})"))
    absent = [f for f in OPTIONAL_FILTERS if f not in have_filters]
    if absent:
        checks.append(_check("ffmpeg hdr", WARN,
                             f"no {' / '.join(absent)}: HDR sources are encoded without "
                             "tone-mapping (washed-out colours)"))  # fmt: skip
    else:
        checks.append(_check("ffmpeg hdr", OK, "zscale + tonemap: HDR sources are tone-mapped"))
    return checks


async def check_ffprobe(settings: Settings) -> list[Check]:
    try:
        text = await _tool_output(settings.ffprobe_path, "-version")
    except (SpeakEncoderError, TimeoutError) as exc:
        return [_check("ffprobe", FAIL, f"{settings.ffprobe_path}: {exc or 'timed out'}")]
    return [_check("ffprobe", OK, _version_of(text, "ffprobe"))]


async def check_hardware(settings: Settings) -> list[Check]:
    if not settings.hardware_acceleration:
        return [_check("hardware", SKIP, "HARDWARE_ACCELERATION=false: jobs use libx264")]
    from speak_encoder.pipeline.encode_job import hardware_report

    try:
        report = await asyncio.wait_for(hardware_report(settings), HARDWARE_DEADLINE_S)
    except (SpeakEncoderError, TimeoutError) as exc:
        return [_check("hardware", WARN, f"detection failed ({exc or 'timed out'}): libx264")]
    return [_check("hardware", WARN if report.broken else OK, report.summary())]


# --- network peers --------------------------------------------------------------------------


def _client(timeout: float, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        transport=transport,
    )


def _http_problem(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc or 'refused'})"
    return f"{type(exc).__name__}: {exc}"


async def check_ipfs(
    settings: Settings, timeout: float, transport: httpx.AsyncBaseTransport | None
) -> list[Check]:
    address = settings.ipfs_api_addr.strip()
    needed = "local" in settings.publish_targets.split(",")
    if not address:
        return [_check("ipfs", FAIL if needed else SKIP, "not configured (IPFS_API_ADDR empty)"
                       + (" but PUBLISH_TARGETS has local" if needed else ""))]  # fmt: skip
    from speak_encoder.storage.kubo import KuboClient

    try:
        client = KuboClient(
            address, connect_timeout=timeout, call_timeout=timeout, transport=transport
        )
    except SpeakEncoderError as exc:
        return [_check("ipfs", FAIL, exc.message)]
    try:
        async with client:
            ident, version = await asyncio.gather(client.id(), client.version())
    except SpeakEncoderError as exc:
        status: Status = FAIL if needed else WARN
        why = "" if needed else " (used only to fetch IPFS sources)"
        return [_check("ipfs", status, f"{exc.message}{why}")]
    peer = str(ident.get("ID") or ident.get("id") or "?")
    return [_check("ipfs", OK, f"{client.base_url}: peer {peer}, version "
                   f"{version.get('Version') or version.get('version') or '?'}")]  # fmt: skip


async def _probe_url(
    name: str,
    url: str,
    *,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None,
    token: str | None = None,
    method: str = "GET",
    want_json: bool = False,
) -> Check:
    """Reachability: any HTTP answer below 500 is a reachable peer; 401/403 with a token is a
    rejected token; 5xx a warning; no answer a failure."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with _client(timeout, transport) as client:
            response = await client.request(method, url, headers=headers)
    except httpx.HTTPError as exc:
        return _check(name, FAIL, f"{url}: {_http_problem(exc)}")
    code = response.status_code
    if code in (401, 403):
        return _check(name, FAIL, f"{url}: HTTP {code}, the credentials were refused")
    if code >= 500:
        return _check(name, WARN, f"{url}: reachable but answers HTTP {code}")
    if want_json:
        try:
            response.json()
        except ValueError:
            return _check(name, FAIL, f"{url}: HTTP {code} but not JSON (wrong URL?)")
        if code != 200:
            return _check(name, FAIL, f"{url}: HTTP {code}")
    return _check(name, OK, f"{url}: reachable (HTTP {code})")


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


async def check_targets(
    settings: Settings, timeout: float, transport: httpx.AsyncBaseTransport | None
) -> list[Check]:
    names = [n for n in settings.publish_targets.split(",") if n and n != "local"]
    checks: list[Check] = []
    from speak_encoder.storage.kubo import api_base_url

    for name in names:
        label = f"target {name}"
        try:
            if name == "hotnode":
                url, token = settings.traffic_director_url, None
                if not url:
                    raise SpeakEncoderError("needs TRAFFIC_DIRECTOR_URL")
                checks.append(await _probe_url(label, url, timeout=timeout, transport=transport))
            elif name == "supernode":
                endpoint = settings.threespeak_ipfs_endpoint
                if not endpoint:
                    raise SpeakEncoderError("needs THREESPEAK_IPFS_ENDPOINT")
                url = f"{api_base_url(endpoint)}/api/v0/version"
                checks.append(
                    await _probe_url(
                        label, url, timeout=timeout, transport=transport, method="POST"
                    )
                )
            elif name == "cluster":
                base = settings.ipfs_cluster_url
                if not base:
                    raise SpeakEncoderError("needs IPFS_CLUSTER_URL")
                token = _secret(settings.ipfs_cluster_token)
                checks.append(await _probe_url(label, f"{base.rstrip('/')}/id", timeout=timeout,
                                               transport=transport, token=token))  # fmt: skip
            elif name == "pinning_service":
                base = settings.pinning_service_url
                if not base:
                    raise SpeakEncoderError("needs PINNING_SERVICE_URL")
                token = _secret(settings.pinning_service_token)
                url = f"{base.rstrip('/')}/pins?limit=1"
                checks.append(
                    await _probe_url(label, url, timeout=timeout, transport=transport, token=token)
                )
            else:
                raise SpeakEncoderError(f"unknown publish target {name!r} in PUBLISH_TARGETS")
        except SpeakEncoderError as exc:
            checks.append(_check(label, FAIL, exc.message))
    return checks


async def check_gateways(
    settings: Settings, timeout: float, transport: httpx.AsyncBaseTransport | None
) -> list[Check]:
    checks: list[Check] = []
    if settings.gateway_enabled:
        from speak_encoder.sources.gateway_protocol import ROUTE_PREFIX

        url = f"{settings.gateway_url.rstrip('/')}{ROUTE_PREFIX}stats"
        checks.append(await _probe_url("gateway", url, timeout=timeout, transport=transport,
                                       want_json=True))  # fmt: skip
    else:
        checks.append(_check("gateway", SKIP, "GATEWAY_ENABLED=false"))
    if settings.embed_gateway_enabled:
        checks.append(await _probe_url("embed gateway", settings.embed_gateway_url,
                                       timeout=timeout, transport=transport))  # fmt: skip
    else:
        checks.append(_check("embed gateway", SKIP, "EMBED_GATEWAY_ENABLED=false"))
    return checks


# --- local state ------------------------------------------------------------------------------


def check_identity(settings: Settings) -> list[Check]:
    from speak_encoder.node.identity import key_file_path, load_identity

    needed = settings.gateway_enabled or settings.embed_gateway_enabled
    from_env = settings.encoder_private_key is not None and bool(
        settings.encoder_private_key.get_secret_value().strip()
    )
    path = key_file_path(settings)
    if not from_env and not path.exists():
        status: Status = FAIL if needed else SKIP
        return [_check("identity", status, f"no node key ({path} missing, ENCODER_PRIVATE_KEY "
                       "unset): `speak-encoder keygen` creates one"
                       + (" — the gateways need it" if needed else ""))]  # fmt: skip
    try:
        identity = load_identity(settings)
    except SpeakEncoderError as exc:
        return [_check("identity", FAIL, exc.message)]
    where = "ENCODER_PRIVATE_KEY" if from_env else f"{path} (mode "
    if not from_env:
        where += f"{stat.S_IMODE(path.stat().st_mode):04o})"
    return [_check("identity", OK, f"{identity.did} from {where}")]


def check_store(settings: Settings) -> list[Check]:
    from speak_encoder.node.store import JobStore

    sqlite_file = settings.data_dir / "jobs.sqlite3"
    if settings.database_url is None and not sqlite_file.exists():
        return [_check("store", OK, f"SQLite {sqlite_file} (created at the first start)")]
    try:
        store = JobStore.from_settings(settings)
    except SpeakEncoderError as exc:
        return [_check("store", FAIL, exc.message)]
    try:
        counts = store.counts()
    except SpeakEncoderError as exc:
        return [_check("store", FAIL, exc.message)]
    except Exception as exc:  # e.g. a database never migrated: no table yet
        return [_check("store", WARN, f"{store!r} answers but cannot be read yet: "
                       f"{type(exc).__name__} (the node migrates it at start)")]  # fmt: skip
    finally:
        store.close()
    active = sum(counts.get(s, 0) for s in ("queued", "running", "retry_wait"))
    return [
        _check("store", OK, f"{store!r}: {active} active job(s), {sum(counts.values())} in all")
    ]


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(settings: Settings) -> list[Check]:
    work = settings.work_dir
    try:
        free_mb = shutil.disk_usage(_existing(work)).free / (1024 * 1024)
    except OSError as exc:
        return [_check("disk", FAIL, f"{work}: {exc.strerror or exc}")]
    reserve = settings.disk_reserve_mb
    text = f"{free_mb:,.0f} MB free in {work} (reserve {reserve} MB)"
    if free_mb < reserve:
        return [_check("disk", FAIL, f"{text}: intake stays paused until space is freed")]
    if free_mb < reserve + DISK_HEADROOM_MB:
        return [_check("disk", WARN, f"{text}: large sources will not fit")]
    return [_check("disk", OK, text)]


def _writable(path: Path) -> str | None:
    """None when ``path`` is (or can be created) writable, else why not."""
    target = _existing(path)
    if not target.is_dir():
        return f"{target} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        return f"{target} is not writable ({exc.strerror or exc})"
    return None


def check_permissions(settings: Settings) -> list[Check]:
    checks = []
    for label, path in (("DATA_DIR", settings.data_dir), ("work dir", settings.work_dir)):
        why = _writable(path)
        if why is not None:
            checks.append(_check(f"permissions {label}", FAIL, why))
        else:
            note = "" if path.exists() else " (will be created)"
            checks.append(_check(f"permissions {label}", OK, f"{path} writable{note}"))
    checks += check_shared_folders(settings)
    if os.geteuid() == 0:
        checks.append(_check("permissions user", WARN, "running as root: run the node as its "
                             "own user (see deploy/speak-encoder.service)"))  # fmt: skip
    return checks


def shared_folder_problem(path: Path) -> str | None:
    """Why ``path`` (or the folder it would be created in) is shared with other users."""
    target = path.resolve()
    if str(target) in SHARED_FOLDERS:
        return f"{target} is a folder every user of this machine can write to"
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    for folder in (probe, *probe.parents):
        try:
            info = folder.stat()
        except OSError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        foreign = folder == probe and info.st_uid != os.geteuid()
        if foreign and mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{folder} belongs to another user and others may write to it"
        if mode & stat.S_IWOTH:
            where = "is" if folder == target else f"is inside {folder}, which is"
            return f"{target} {where} writable by every user"
        if _shields(folder, info):
            return None  # e.g. /tmp/<a 0700 folder of ours>/...: nobody else gets in
    return None


def _shields(folder: Path, info: os.stat_result) -> bool:
    """Whether ``folder`` keeps other users out of everything below it: it is ours, only we
    may write to it, and nobody may rename it away (its parent is not writable by every user,
    or is sticky like /tmp)."""
    if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    try:
        parent = stat.S_IMODE(folder.parent.stat().st_mode)
    except OSError:
        return False
    return not parent & stat.S_IWOTH or bool(parent & stat.S_ISVTX)


def check_shared_folders(settings: Settings) -> list[Check]:
    """TEMP_DIR (and DATA_DIR) must not be a shared folder such as /tmp: another user could
    pre-create a job's folder there, or read what the node writes."""
    checks = []
    for label, setting, path, hint in (
        ("work dir", "TEMP_DIR", settings.work_dir, " (the default is $DATA_DIR/work)"),
        ("DATA_DIR", "DATA_DIR", settings.data_dir, ""),
    ):
        problem = shared_folder_problem(path)
        if problem is not None:
            checks.append(_check(f"private {label}", WARN, f"{setting}: {problem}: other users "
                                 "can pre-create or watch the node's folders; use a folder of "
                                 f"the node's own{hint}"))  # fmt: skip
        elif path.is_dir() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            mode = stat.S_IMODE(path.stat().st_mode)
            checks.append(_check(f"private {label}", WARN, f"{path} is {mode:04o}: others may "
                                 "read it (the node makes it 0700 when it starts)"))  # fmt: skip
    return checks


def _public_bind(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True  # a host name: may resolve to anything


def check_config(
    settings: Settings,
    *,
    dashboard_host: str | None = None,
    dashboard_token: str | None = None,
) -> list[Check]:
    """Settings that work but are risky or contradictory."""
    problems: list[tuple[Status, str]] = []
    if settings.direct_api_enabled:
        key = _secret(settings.direct_api_key)
        if not key:
            problems.append((FAIL, "DIRECT_API_ENABLED without DIRECT_API_KEY: every request "
                             "is refused"))  # fmt: skip
        if _public_bind(settings.direct_api_host):
            problems.append((WARN, f"DIRECT_API_HOST={settings.direct_api_host}: the Direct API "
                             "is reachable from other machines (put TLS in front)"))  # fmt: skip
        if settings.webhook_secret is None:
            problems.append((WARN, "WEBHOOK_SECRET unset: completion webhooks are unsigned"))
    if settings.embed_gateway_enabled and settings.webhook_secret is None:
        problems.append((WARN, "WEBHOOK_SECRET unset: embed webhooks are unsigned"))
    host = (
        dashboard_host if dashboard_host is not None else getattr(settings, "dashboard_host", None)
    )
    token = dashboard_token
    if token is None:
        token = _secret(getattr(settings, "dashboard_token", None))
    if host and _public_bind(str(host)) and not token:
        problems.append((WARN, f"DASHBOARD_HOST={host} without DASHBOARD_TOKEN: the operator "
                         "server is reachable from other machines"))  # fmt: skip
    if settings.allow_private_urls:
        problems.append((WARN, "ALLOW_PRIVATE_URLS=true: submitted URLs may reach this "
                         "machine's own services (labs and tests only)"))  # fmt: skip
    for key, url in (("GATEWAY_URL", settings.gateway_url),
                     ("EMBED_GATEWAY_URL", settings.embed_gateway_url),
                     ("IPFS_CLUSTER_URL", settings.ipfs_cluster_url),
                     ("PINNING_SERVICE_URL", settings.pinning_service_url)):  # fmt: skip
        if url and url.startswith("http://") and _public_bind(_host_of(url)):
            problems.append((WARN, f"{key} is plain http: signatures and tokens cross the "
                             "network unencrypted"))  # fmt: skip
    if "*" in settings.allowed_host_list:
        problems.append((WARN, "ALLOWED_HOSTS=*: any Host header is answered (a DNS-rebinding "
                         "page can read the dashboard and the Direct API)"))  # fmt: skip
    if not settings.ffmpeg_memory_max_mb:
        problems.append((WARN, "FFMPEG_MEMORY_MAX_MB=0: a decompression bomb can take all of "
                         "the machine's memory"))  # fmt: skip
    elif settings.ffmpeg_memory_max_mb * settings.max_concurrent_jobs > settings.memory_critical_mb:
        problems.append((WARN, f"FFMPEG_MEMORY_MAX_MB × MAX_CONCURRENT_JOBS "
                         f"({settings.ffmpeg_memory_max_mb * settings.max_concurrent_jobs} MB) "
                         "is above MEMORY_CRITICAL_MB: jobs can pause intake before any is "
                         "stopped"))  # fmt: skip
    if not settings.ipfs_verify_sources:
        problems.append((WARN, "IPFS_VERIFY_SOURCES=false: bytes from IPFS gateways are not "
                         "checked against their CID"))  # fmt: skip
    if settings.memory_warn_mb >= settings.memory_critical_mb:
        problems.append((WARN, "MEMORY_WARN_MB is not below MEMORY_CRITICAL_MB"))
    if settings.retry_base > settings.retry_max:
        problems.append((WARN, "RETRY_BASE is above RETRY_MAX"))
    if not problems:
        return [_check("config", OK, "no contradictory or risky setting found")]
    return [_check("config", status, text) for status, text in problems]


def _host_of(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""


# --- running them -----------------------------------------------------------------------------


async def _guard(name: str, deadline: float, work: Awaitable[list[Check]]) -> list[Check]:
    try:
        return await asyncio.wait_for(work, deadline)
    except TimeoutError:
        return [_check(name, FAIL, f"no result within {deadline:g} s")]
    except Exception as exc:  # a check must never take the doctor down
        return [_check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}")]


def _in_thread(fn: Callable[[Settings], list[Check]], settings: Settings) -> Awaitable[list[Check]]:
    return asyncio.to_thread(fn, settings)


async def run_checks(
    settings: Settings,
    *,
    timeout: float = DEFAULT_NETWORK_TIMEOUT_S,
    deadline: float = CHECK_DEADLINE_S,
    transport: httpx.AsyncBaseTransport | None = None,
    hardware: bool = True,
    dashboard_host: str | None = None,
    dashboard_token: str | None = None,
) -> list[Check]:
    """Every check, concurrently, in a stable order."""
    jobs: list[tuple[str, float, Awaitable[list[Check]]]] = [
        ("ffmpeg", deadline, check_ffmpeg(settings)),
        ("ffprobe", deadline, check_ffprobe(settings)),
    ]
    if hardware:
        jobs.append(("hardware", HARDWARE_DEADLINE_S, check_hardware(settings)))
    jobs += [
        ("ipfs", deadline, check_ipfs(settings, timeout, transport)),
        ("targets", deadline, check_targets(settings, timeout, transport)),
        ("gateways", deadline, check_gateways(settings, timeout, transport)),
        ("identity", deadline, _in_thread(check_identity, settings)),
        ("store", deadline, _in_thread(check_store, settings)),
        ("disk", deadline, _in_thread(check_disk, settings)),
        ("permissions", deadline, _in_thread(check_permissions, settings)),
    ]
    results = await asyncio.gather(*(_guard(n, d, w) for n, d, w in jobs))
    checks = [c for group in results for c in group]
    checks += check_config(settings, dashboard_host=dashboard_host, dashboard_token=dashboard_token)
    return checks


__all__ = [
    "CHECK_DEADLINE_S",
    "DEFAULT_NETWORK_TIMEOUT_S",
    "Check",
    "check_config",
    "check_disk",
    "check_ffmpeg",
    "check_gateways",
    "check_identity",
    "check_ipfs",
    "check_permissions",
    "check_store",
    "check_targets",
    "failed",
    "run_checks",
]
