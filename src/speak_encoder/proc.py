"""Subprocesses the house way: argument lists, own process group, killed with children.

No shell is ever involved. Every process starts in a new session (its own process group) so a
cancel or a timeout can kill ffmpeg *and* anything it spawned with one ``killpg``.

A child never outlives its parent: on Linux it asks the kernel, before ``exec``, for SIGKILL
when the process that started it dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the node (or
of ``encode``) takes its ffmpeg along instead of leaving it writing under PID 1. The request is
made in the child between ``fork`` and ``exec`` with a libc function resolved at import (no
allocation, no lock), and the child exits at once if its parent is already gone. The signal
follows the *thread* that forked: asyncio forks on the event-loop thread, which lives as long
as the loop. An optional address-space limit (``RLIMIT_AS``) is set there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import psutil

from speak_encoder.errors import ConfigError

#: Seconds a process gets between SIGTERM and SIGKILL when it is stopped.
TERMINATE_GRACE_S = 3.0
#: Default cap on captured stdout (ffprobe JSON of a huge file stays well below this).
DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024
#: Seconds between two samples of a watched process's resident memory (:func:`watch_memory`).
MEMORY_POLL_S = 0.1


class MemoryLimitHit(Exception):
    """A watched process went above its memory limit and was killed (callers translate it)."""

    def __init__(self, rss: int) -> None:
        super().__init__(f"resident memory {rss} bytes")
        self.rss = rss


@dataclass(frozen=True, slots=True)
class Completed:
    """Result of :func:`run_capture`."""

    returncode: int
    stdout: bytes
    stderr: bytes


#: ``prctl`` option number of PR_SET_PDEATHSIG (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def _resolve_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _resolve_prctl()


def _child_setup(parent: int) -> Callable[[], None]:
    """What the child runs between fork and exec (see the module docstring)."""

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # the parent died before the request took effect
                os._exit(1)

    return setup


#: Called with the pid of every child started in this context (a job's runner sets it to
#: record its ffmpeg, so that a node restarted after a crash can make sure none is left).
on_spawn: ContextVar[Callable[[int], None] | None] = ContextVar("on_spawn", default=None)


async def start(argv: Sequence[str], **kwargs: object) -> asyncio.subprocess.Process:
    """Start ``argv`` in its own process group, to die with this process; a missing binary is
    a :class:`ConfigError`."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            start_new_session=True,
            preexec_fn=_child_setup(os.getpid()),
            **kwargs,  # type: ignore[arg-type]
        )
    except FileNotFoundError:
        raise ConfigError(
            f"{argv[0]!r} was not found: install it or set the path in the configuration"
        ) from None
    except PermissionError:
        raise ConfigError(f"{argv[0]!r} is not executable") from None
    record = on_spawn.get()
    if record is not None:
        record(proc.pid)
    return proc


def kill_group(proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the whole process group of ``proc`` (ignore if already gone)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def stop(proc: asyncio.subprocess.Process, grace: float = TERMINATE_GRACE_S) -> None:
    """SIGTERM the group, then SIGKILL it after ``grace`` seconds; always reaps the child."""
    try:
        if proc.returncode is None:
            kill_group(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                kill_group(proc, signal.SIGKILL)
    except asyncio.CancelledError:
        kill_group(proc, signal.SIGKILL)  # cancelled during the grace: no grace left
        raise
    finally:
        # Reap even when cancelled meanwhile: no zombie, no subprocess transport left open.
        with contextlib.suppress(ProcessLookupError):
            await asyncio.shield(proc.wait())
        kill_group(proc, signal.SIGKILL)  # stragglers of the group


def _group_rss(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, in bytes (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


async def watch_memory(
    proc: asyncio.subprocess.Process, limit: int | None, *, interval: float = MEMORY_POLL_S
) -> int | None:
    """Sample ``proc``'s resident memory (with its children) every ``interval`` seconds until
    it exits; above ``limit`` bytes, kill its group and return the RSS seen (else ``None``).

    Resident, not virtual, memory: x264 threads and malloc arenas make ffmpeg's address space
    several times its RSS, so an address-space limit would kill honest encodes.
    """
    if limit is None:
        return None
    while proc.returncode is None:
        rss = await asyncio.to_thread(_group_rss, proc.pid)
        if rss > limit:
            kill_group(proc)
            return rss
        await asyncio.sleep(interval)
    return None


async def read_bounded(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    """Read ``stream`` to its end, keeping at most ``limit`` bytes."""
    return await _read_bounded(stream, limit)


async def _read_bounded(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    if stream is None:
        return b""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(64 * 1024):
        if size < limit:
            chunks.append(chunk[: limit - size])
        size += len(chunk)
    return b"".join(chunks)


async def run_capture(
    argv: Sequence[str],
    *,
    timeout: float,
    max_output: int = DEFAULT_MAX_OUTPUT,
    memory_limit: int | None = None,
) -> Completed:
    """Run ``argv`` to completion and capture at most ``max_output`` bytes of each stream.

    The process group is killed if it outlives ``timeout`` (a plain :class:`TimeoutError` is
    raised for the caller to translate into its own error), if its resident memory goes above
    ``memory_limit`` bytes (:class:`MemoryLimitHit`), or if the caller is cancelled.
    (``asyncio.timeout``, not ``wait_for`` around ``gather``: on Python 3.11 a cancelled
    ``wait_for`` leaves the gather's exception unretrieved, and asyncio prints a traceback.)
    """
    proc = await start(
        argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    watcher = asyncio.ensure_future(watch_memory(proc, memory_limit))
    try:
        async with asyncio.timeout(timeout):
            out, err = await asyncio.gather(
                _read_bounded(proc.stdout, max_output), _read_bounded(proc.stderr, max_output)
            )
            rc = await proc.wait()
    finally:
        await stop(proc, grace=0.5)
        hit = watcher.result() if watcher.done() and not watcher.cancelled() else None
        watcher.cancel()
        await asyncio.wait({watcher})  # finished before the process object goes
    if hit is not None:
        raise MemoryLimitHit(hit)
    return Completed(rc, out, err)


__all__ = [
    "Completed",
    "MemoryLimitHit",
    "kill_group",
    "on_spawn",
    "read_bounded",
    "run_capture",
    "start",
    "stop",
    "watch_memory",
]
