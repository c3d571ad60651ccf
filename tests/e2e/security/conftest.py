"""Helpers of the security suite (issue 11): hostile media, CLI runs with their peak memory.

Every case here is a real process on real files (ffmpeg, ffprobe, `speak-encoder` commands and
nodes); the network is loopback only and every loop is bounded by a deadline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.support.media_fixtures import MEDIA_CACHE

CLI = [sys.executable, "-m", "speak_encoder"]
#: Where the hostile samples are generated once (next to the other test media).
HOSTILE_CACHE = MEDIA_CACHE / "hostile"


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float  # the command and every process it started, summed, highest sample


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment of a `speak-encoder` command on private folders, without any network."""
    env = dict(os.environ)
    env.update(
        {
            "DATA_DIR": str(tmp_path / "data"),
            "TEMP_DIR": str(tmp_path / "data" / "work"),
            "ENCODER_PRESET": "ultrafast",
            "IPFS_API_ADDR": "",
            "IPFS_GATEWAYS": "",
            "PUBLISH_TARGETS": "",
            "DISK_RESERVE_MB": "0",
            "HARDWARE_ACCELERATION": "false",
            "SPEAK_ENCODER_ENV_FILE": "",
        }
    )
    env.update(extra)
    return env


def run_cli(
    args: list[str],
    env: Mapping[str, str],
    *,
    timeout: float = 300,
    cwd: Path | None = None,
) -> CliRun:
    """Run `speak-encoder ARGS`, sampling the resident memory of its process tree."""
    proc = subprocess.Popen(
        [*CLI, *args], env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    peak = 0
    root = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.05)
    try:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"speak-encoder {' '.join(args)} did not finish: {err[-2000:]}"
        ) from None
    return CliRun(proc.returncode, out, err, peak / 1024 / 1024)


def wait_until(check: Callable[[], object], what: str, timeout: float = 60) -> object:
    """Poll ``check`` until it is truthy (returns it) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def hostile_dir() -> Path:
    HOSTILE_CACHE.mkdir(parents=True, exist_ok=True)
    return HOSTILE_CACHE
