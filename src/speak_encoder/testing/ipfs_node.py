"""A real IPFS node for tests and benchmarks: js-ipfs on loopback, offline, in a temp repo.

Kubo cannot be installed everywhere the tests run, so the suite drives js-ipfs 0.66 (installed
by ``scripts/install-test-deps.sh`` into ``.tools/ipfs``; its CIDv0 results are Kubo's). The
node listens on 127.0.0.1 only (random free ports), has no bootstrap peers, no MDNS, no
preload, and runs ``--offline``. It can be stopped and started again on the same repo and the
same ports (to play "the node is down").

Usage::

    with JsIpfsNode() as node:
        httpx.post(f"{node.api_url}/api/v0/version")

A missing install is an error with the command that fixes it, never a silent skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from speak_encoder.errors import ConfigError

#: Where scripts/install-test-deps.sh installs js-ipfs (relative to the repository root).
TOOLS_DIR = Path(__file__).resolve().parents[3] / ".tools" / "ipfs"
#: Environment variable that overrides the path of the ``jsipfs`` executable.
JSIPFS_ENV = "SPEAK_ENCODER_JSIPFS"
#: Seconds to wait for the daemon to answer ``/api/v0/id``.
READY_TIMEOUT_S = 60.0


class IpfsNodeMissing(ConfigError):
    """js-ipfs is not installed where the tests look for it."""


def jsipfs_path() -> Path:
    """The ``jsipfs`` executable, or :class:`IpfsNodeMissing` naming the fix."""
    override = os.environ.get(JSIPFS_ENV)
    path = Path(override) if override else TOOLS_DIR / "node_modules" / ".bin" / "jsipfs"
    if not path.exists():
        raise IpfsNodeMissing(
            f"js-ipfs is not installed ({path} is missing): run scripts/install-test-deps.sh "
            f"(or `make test-deps`), or set {JSIPFS_ENV}"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class JsIpfsNode:
    """One js-ipfs daemon (see the module docstring)."""

    def __init__(self, repo_dir: Path | None = None) -> None:
        self.executable = jsipfs_path()
        self._own_dir = repo_dir is None
        self.base_dir = (
            Path(tempfile.mkdtemp(prefix="speak-ipfs-")) if repo_dir is None else repo_dir
        )
        self.repo = self.base_dir / "repo"
        self.log_path = self.base_dir / "daemon.log"
        self.api_port = free_port()
        self.gateway_port = free_port()
        self.rpc_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._initialised = False

    # --- addresses ---------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def api_multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.api_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- life cycle --------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["IPFS_PATH"] = str(self.repo)
        env.setdefault("NODE_OPTIONS", "--no-deprecation")
        return env

    def _init(self) -> None:
        config = {
            "Addresses": {
                "Swarm": ["/ip4/127.0.0.1/tcp/0"],
                "API": f"/ip4/127.0.0.1/tcp/{self.api_port}",
                "Gateway": f"/ip4/127.0.0.1/tcp/{self.gateway_port}",
                "RPC": f"/ip4/127.0.0.1/tcp/{self.rpc_port}",
                "Delegates": [],
            },
            "Bootstrap": [],
            "Discovery": {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}},
        }
        self.base_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.base_dir / "init-config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        argv = [str(self.executable), "init", "--emptyRepo", "--profile", "test"]
        result = subprocess.run(
            [*argv, str(config_path)],
            env=self._env(),
            capture_output=True,
            timeout=READY_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"jsipfs init failed ({result.returncode}): {result.stderr.decode()[-2000:]}"
            )
        self._initialised = True

    def start(self) -> JsIpfsNode:
        """Start the daemon (initialising the repo the first time) and wait until it answers."""
        if self.running:
            return self
        if not self._initialised:
            self._init()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.executable), "daemon", "--offline", "--enable-preload=false"],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"jsipfs daemon exited early:\n{self._log_tail()}")
            try:
                response = httpx.post(f"{self.api_url}/api/v0/id", timeout=2.0)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"jsipfs daemon not ready after {READY_TIMEOUT_S} s:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, self.log_path.stat().st_size - 4000))
                return log.read(4000).decode(errors="replace")  # the tail, bounded
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the daemon (SIGTERM to its process group, then SIGKILL); the repo is kept."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group
        # js-ipfs leaves its repo lock behind when killed; a restart must not trip over it.
        lock = self.repo / "repo.lock"
        if lock.exists():
            shutil.rmtree(lock, ignore_errors=True)

    def close(self) -> None:
        """Stop the daemon and delete the temporary repo."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> JsIpfsNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "JSIPFS_ENV",
    "READY_TIMEOUT_S",
    "TOOLS_DIR",
    "IpfsNodeMissing",
    "JsIpfsNode",
    "free_port",
    "jsipfs_path",
]
