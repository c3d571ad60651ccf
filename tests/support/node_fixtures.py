"""Driving `speak-encoder run` as a real subprocess: start, wait for a state, kill -9, restart."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from speak_encoder.config import load_settings
from speak_encoder.node.models import Job
from speak_encoder.node.store import JobStore
from speak_encoder.testing.ipfs_node import free_port

CLI = [sys.executable, "-m", "speak_encoder"]


class NodeProcess:
    """One node (a `speak-encoder run` process) over a data folder; restartable."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "node.log"
        self.starts = 0

    # --- the process ---------------------------------------------------------------------

    def start(self, **extra_env: str) -> NodeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, **extra_env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*CLI, "run"], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> list[int]:
        """SIGKILL the node (the node only, as the OOM killer would) and check that none of its
        children outlives it (they die with it: PR_SET_PDEATHSIG); returns their pids."""
        assert self.proc is not None
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        survivors = wait_gone(children, timeout=10)
        for child in survivors:  # never leave one behind, even when the check fails
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        assert not survivors, f"children outlived their node: {survivors}"
        return [c.pid for c in children]

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- the CLI and the store -------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def submit(self, source: str, *args: str) -> str:
        done = self.cli("submit", source, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def store(self) -> JobStore:
        settings = load_settings(data_dir=self.data_dir, database_url=self.env.get("DATABASE_URL"))
        store = JobStore.from_settings(settings)
        store.migrate()
        return store

    def job(self, job_id: str) -> Job:
        store = self.store()
        try:
            return store.require(job_id)
        finally:
            store.close()

    def wait_for(
        self, job_id: str, check: Callable[[Job], bool], *, timeout: float = 120, what: str = ""
    ) -> Job:
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if check(job):
                return job
            if self.proc is not None and self.proc.poll() is not None and not what.startswith("~"):
                raise AssertionError(f"node exited ({self.proc.returncode}) waiting for {what}:\n"
                                     + self.log()[-3000:])  # fmt: skip
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what or check}: {job}\n{self.log()[-3000:]}")

    def wait_log(self, text: str, timeout: float = 60) -> None:
        """Until ``text`` is in the node's log (an error if the node exits first, or on timeout)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.alive(), self.log()[-2000:]
            assert time.monotonic() < deadline, f"{text!r} never logged:\n{self.log()[-2000:]}"
            time.sleep(0.1)

    def work_entries(self) -> list[str]:
        work = Path(self.env["TEMP_DIR"])
        return sorted(p.name for p in work.iterdir()) if work.is_dir() else []

    def wait_healthy(self, url: str, *, timeout: float = 60, request_timeout: float = 2) -> None:
        """Wait until ``url``'s ``/health`` answers 200, failing at once if the node exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=request_timeout).status_code == 200:
                    return
            assert self.alive(), self.log()[-3000:]
            time.sleep(0.2)
        raise AssertionError(f"{url} never answered:\n{self.log()[-3000:]}")

    def wait_reports_settled(self, delivered: int, timeout: float = 60) -> None:
        """Wait until the store records ``delivered`` final reports as delivered and none
        pending: from then on a report is never sent again (the positive event that replaces
        "wait and see that nothing more arrives")."""
        deadline = time.monotonic() + timeout
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            store = self.store()
            try:
                counts = store.outbox_counts()
            finally:
                store.close()
            if counts["pending"] == 0 and counts["delivered"] >= delivered:
                return
            time.sleep(0.2)
        raise AssertionError(f"reports not settled after {timeout:.0f} s: {counts}")

    def store_entries(self) -> list[str]:
        store = self.data_dir / "store"
        return (
            sorted(p.name for p in store.iterdir() if not p.name.startswith("."))
            if store.is_dir()
            else []
        )


def ffmpeg_children(pid: int, *, flag: str = "-filter_complex") -> list[psutil.Process]:
    """The running ffmpeg children of ``pid`` with ``flag`` on their command line (a short
    inspection run may be a zombie for a moment: skipped)."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for kid in kids:
        try:
            if "ffmpeg" in kid.name() and flag in kid.cmdline():
                found.append(kid)
        except psutil.NoSuchProcess:  # ZombieProcess included
            continue
    return found


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(procs: list[psutil.Process], *, timeout: float) -> list[psutil.Process]:
    """Wait until every process is gone (or a zombie); those still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if not _gone(p)]
    return alive


def node_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "TEMP_DIR": str(data_dir / "work"),
            "NODE_NAME": "test-node",
            "ENCODER_PRESET": "ultrafast",
            "IPFS_API_ADDR": "",
            "IPFS_GATEWAYS": "",
            "PUBLISH_TARGETS": "",
            "DISK_RESERVE_MB": "0",
            "LOG_LEVEL": "INFO",
            "RETRY_BASE": "0.2",
            "RETRY_MAX": "1",
            "LEASE_SECONDS": "6",
            # a node stopped after its test hands a running job back at once (tests of the
            # grace itself set their own)
            "SHUTDOWN_GRACE": "2",
            "DASHBOARD_PORT": str(free_port()),  # nodes run side by side in the tests
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """``make_node(**env)`` → a NodeProcess on its own data folder (stopped after the test)."""
    nodes: list[NodeProcess] = []

    def make(name: str = "node", **extra: str) -> NodeProcess:
        data_dir = tmp_path / name
        node = NodeProcess(data_dir, node_env(data_dir, **extra))
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()
