"""The processes a job started (ffmpeg, ffprobe), recorded so that none outlives a crash.

Children die with the node on their own (``PR_SET_PDEATHSIG``, see :mod:`speak_encoder.proc`);
this is the second line: every child a job's stages start is appended to ``<job
folder>/children`` as ``<pid> <start time>``, and a node starting up kills, before it resumes
any job, every recorded process that still runs (the pid *and* its start time must match, so
a pid reused by an unrelated process is never touched). Two ffmpegs never write one folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

#: The record's file name inside a job's work folder.
CHILDREN_FILE = "children"
#: Seconds a killed leftover gets to disappear.
KILL_WAIT_S = 5.0
#: Start times are compared to this precision (seconds).
_CTIME_SLACK = 0.05


def recorder(job_dir: Path) -> Callable[[int], None]:
    """A :data:`speak_encoder.proc.on_spawn` callback that records children in ``job_dir``."""

    def record(pid: int) -> None:
        try:
            started = psutil.Process(pid).create_time()
        except psutil.Error:
            return  # already gone
        with contextlib.suppress(OSError):
            fd = os.open(job_dir / CHILDREN_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, f"{pid} {started:.3f}\n".encode())
            finally:
                os.close(fd)

    return record


def _recorded(path: Path) -> list[tuple[int, float]]:
    found: list[tuple[int, float]] = []
    try:
        with path.open(encoding="ascii", errors="replace") as lines:
            for line in lines:
                pid, _, started = line.strip().partition(" ")
                with contextlib.suppress(ValueError):
                    found.append((int(pid), float(started)))
                if len(found) >= 1000:  # a job starts a handful; never read a huge file
                    break
    except OSError:
        return []
    return found


def _dead(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE  # killed, not yet reaped by its parent
    except psutil.NoSuchProcess:
        return True


def _wait_dead(proc: psutil.Process) -> None:
    deadline = time.monotonic() + KILL_WAIT_S
    while not _dead(proc) and time.monotonic() < deadline:
        time.sleep(0.05)


def kill_leftovers(work_dir: Path) -> list[int]:
    """Kill every recorded child of every job folder under ``work_dir`` that still runs;
    returns their pids. Records are removed afterwards."""
    killed: list[int] = []
    if not work_dir.is_dir():
        return killed
    for record in sorted(work_dir.glob(f"*/{CHILDREN_FILE}")):
        for pid, started in _recorded(record):
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - started) > _CTIME_SLACK or _dead(proc):
                    continue  # gone, or the pid now belongs to someone else
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # its own group: ffmpeg and its helpers
                proc.kill()
                _wait_dead(proc)
            except psutil.NoSuchProcess:
                continue
            except psutil.Error as exc:
                log.warning("could not stop leftover process %d: %s", pid, exc)
                continue
            killed.append(pid)
            log.warning("🧹 killed leftover process %d of job %s (its node had died)", pid,
                        record.parent.name)  # fmt: skip
        record.unlink(missing_ok=True)
    return killed


__all__ = ["CHILDREN_FILE", "kill_leftovers", "recorder"]
