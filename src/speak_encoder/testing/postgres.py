"""A throwaway PostgreSQL server for tests and benchmarks.

``initdb`` into a fresh temporary folder, then ``postgres`` on 127.0.0.1 (a free port) with its
unix socket in that folder, trust authentication, ``fsync`` off (nothing here must survive a
power cut). PostgreSQL refuses to run as root: when the euid is 0 the server runs as the
``postgres`` system user (created by the ``postgresql`` apt package) through ``setpriv`` (or
``runuser``), with the folder handed over to that user.

Usage::

    with PostgresServer() as server:
        url = server.create_database("jobs")   # postgresql+psycopg://postgres@127.0.0.1:…/jobs

Binaries are looked up in ``$SPEAK_ENCODER_PG_BIN``, then ``/usr/lib/postgresql/*/bin`` (the
newest version), then ``PATH``. Missing binaries are an error naming the fix, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from speak_encoder.errors import ConfigError

#: Environment variable naming the folder that holds ``initdb`` and ``postgres``.
PG_BIN_ENV = "SPEAK_ENCODER_PG_BIN"
#: Where Debian/Ubuntu's ``postgresql`` package installs the server binaries.
DEBIAN_PG_GLOB = "/usr/lib/postgresql/*/bin"
#: The system user the server runs as when we are root.
PG_SYSTEM_USER = "postgres"
#: The database superuser ``initdb`` creates (trust auth, no password).
SUPERUSER = "postgres"
#: Seconds to wait for the server to accept connections / to stop.
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0

_FIX = "install it with `scripts/install-system-deps.sh postgresql` (or `make test-deps`)"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresMissing(ConfigError):
    """The PostgreSQL server binaries (or the ``postgres`` user, as root) are missing."""


def find_pg_bin() -> Path:
    """The folder holding ``initdb`` and ``postgres``, or :class:`PostgresMissing`."""
    override = os.environ.get(PG_BIN_ENV)
    if override:
        candidates = [Path(override)]
    else:
        debian = sorted(Path("/").glob(DEBIAN_PG_GLOB.lstrip("/")), key=_version_key)
        on_path = shutil.which("initdb")
        candidates = list(reversed(debian)) + ([Path(on_path).parent] if on_path else [])
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    where = override or f"{DEBIAN_PG_GLOB} or PATH"
    raise PostgresMissing(f"PostgreSQL server binaries not found in {where}: {_FIX}")


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path.parent.name))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as_prefix() -> list[str]:
    """Argument prefix that drops root to the ``postgres`` user ([] when not root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        raise PostgresMissing(
            f"running as root but there is no {PG_SYSTEM_USER!r} system user to run "
            f"PostgreSQL as: {_FIX}"
        ) from None
    if shutil.which("setpriv"):
        user = PG_SYSTEM_USER
        return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    if shutil.which("runuser"):
        return ["runuser", "-u", PG_SYSTEM_USER, "--"]
    raise PostgresMissing("running as root and neither setpriv nor runuser is available")


def _check_traversable(path: Path) -> None:
    """As root, every parent of the data folder must be searchable by the postgres user."""
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise ConfigError(
                f"{parent} is not searchable by the {PG_SYSTEM_USER!r} user: set TMPDIR to a "
                "folder such as /tmp for the test PostgreSQL server"
            )


class PostgresServer:
    """One PostgreSQL server in a temporary folder (see the module docstring)."""

    def __init__(self) -> None:
        self.bin_dir = find_pg_bin()
        self._prefix = _run_as_prefix()
        self.base_dir = Path(tempfile.mkdtemp(prefix="speak-pg-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "socket"
        self.log_path = self.base_dir / "server.log"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    # --- addresses ---------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self._prefix, str(self.bin_dir / "postgres"), *self._server_args()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self._env(),
            )
        self._wait_ready()

    def _prepare_dirs(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        if self._prefix:
            _check_traversable(self.base_dir)
            user = pwd.getpwnam(PG_SYSTEM_USER)
            for path in (self.base_dir, self.socket_dir, self.log_path):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.base_dir.chmod(0o700)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env["LANG"] = "C"
        return env

    def _initdb(self) -> None:
        args = [
            *self._prefix,
            str(self.bin_dir / "initdb"),
            "--pgdata", str(self.data_dir),
            "--username", SUPERUSER,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--no-locale",
            "--no-sync",
        ]  # fmt: skip
        done = subprocess.run(args, capture_output=True, env=self._env(), check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise ConfigError(f"initdb failed (exit {done.returncode}): {output}")

    def _server_args(self) -> list[str]:
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
        }
        args = ["-D", str(self.data_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise ConfigError(f"PostgreSQL exited at start: {self._log_tail()}")
            try:
                self._connect("postgres").close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ConfigError(
                        f"PostgreSQL did not start within {READY_TIMEOUT_S:.0f} s: "
                        f"{self._log_tail()}"
                    ) from None
                time.sleep(0.1)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL of its process group if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)

    def close(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- databases ---------------------------------------------------------------------------

    def _connect(self, database: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=SUPERUSER,
            dbname=database,
            connect_timeout=2,
            autocommit=True,
        )

    def create_database(self, name: str) -> str:
        """Create an empty database; return its SQLAlchemy URL."""
        _check_name(name)
        with self._connect("postgres") as conn:
            query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if conn.info.server_version >= 150000:  # much faster for tiny databases
                query = sql.SQL("{} STRATEGY FILE_COPY").format(query)
            conn.execute(query)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing any connection still open to it."""
        _check_name(name)
        with self._connect("postgres") as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _check_name(name: str) -> None:
    if not _DB_NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")


__all__ = [
    "DEBIAN_PG_GLOB",
    "PG_BIN_ENV",
    "PG_SYSTEM_USER",
    "READY_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "SUPERUSER",
    "PostgresMissing",
    "PostgresServer",
    "find_pg_bin",
    "free_port",
]
