"""Memory and disk guards — the seed's five memory fixes, done properly.

* Every ``MEMORY_LOG_INTERVAL`` seconds an INFO line:
  ``🧠 Memory: <rss> MB encoder + <children> MB ffmpeg, <avail> MB free`` — the RSS of this
  process and of its children (ffmpeg), measured with psutil, not the Python heap.
* Above ``MEMORY_WARN_MB``: a ``⚠️ HIGH MEMORY`` warning, ``gc.collect()``, every registered
  cache pruned, and a line saying what that freed.
* Above ``MEMORY_CRITICAL_MB``: intake pauses until memory is back below the threshold. The
  node never kills a process it did not start (the existing encoder ran a host-wide
  ``pkill -9 ffmpeg``).
* Disk: below ``DISK_RESERVE_MB`` free in the work directory, a warning and intake pauses.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

#: Seconds between two threshold checks (logging has its own, longer interval).
CHECK_INTERVAL_S = 5.0
#: Seconds between two samples kept for the dashboard's memory chart.
HISTORY_INTERVAL_S = 30.0
MB = 1024 * 1024

PAUSE_MEMORY = "memory above MEMORY_CRITICAL_MB"
PAUSE_DISK = "free disk below DISK_RESERVE_MB"


@dataclass(frozen=True, slots=True)
class MemorySample:
    at: float  # epoch seconds
    encoder_mb: float
    children_mb: float
    available_mb: float
    disk_free_mb: float

    @property
    def total_mb(self) -> float:
        return self.encoder_mb + self.children_mb


def sample(work_dir: Path, process: psutil.Process | None = None) -> MemorySample:
    proc = process or psutil.Process()
    own = proc.memory_info().rss
    children = 0
    for child in proc.children(recursive=True):
        try:
            children += child.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    try:
        disk = shutil.disk_usage(work_dir if work_dir.exists() else work_dir.parent).free
    except OSError:
        disk = 0
    return MemorySample(
        at=time.time(),
        encoder_mb=own / MB,
        children_mb=children / MB,
        available_mb=psutil.virtual_memory().available / MB,
        disk_free_mb=disk / MB,
    )


@dataclass
class Monitor:
    work_dir: Path
    warn_mb: float
    critical_mb: float
    disk_reserve_mb: float
    log_interval: float
    pause: Callable[[str], None]
    resume: Callable[[str], None]
    #: Called on high memory; each returns how many entries it dropped.
    pruners: list[Callable[[], int]] = field(default_factory=list)
    #: The last hours of samples, for the dashboard: one every ``history_interval`` seconds,
    #: at most ``history_max`` (30 s × 720 = 6 hours).
    history: list[MemorySample] = field(default_factory=list)
    history_max: int = 720
    history_interval: float = HISTORY_INTERVAL_S
    check_interval: float = CHECK_INTERVAL_S
    _last_log: float = 0.0

    def check(self) -> MemorySample:
        """One round: measure, log, warn, prune, pause or resume intake."""
        now = sample(self.work_dir)
        if not self.history or now.at - self.history[-1].at >= self.history_interval:
            self.history.append(now)
            del self.history[: max(0, len(self.history) - self.history_max)]
        if time.monotonic() - self._last_log >= self.log_interval:
            self._last_log = time.monotonic()
            log.info(
                "🧠 Memory: %.0f MB encoder + %.0f MB ffmpeg, %.0f MB free",
                now.encoder_mb, now.children_mb, now.available_mb,
            )  # fmt: skip
        if now.total_mb > self.warn_mb:
            self._relieve(now)
        if now.total_mb > self.critical_mb:
            self.pause(PAUSE_MEMORY)
        else:
            self.resume(PAUSE_MEMORY)
        if now.disk_free_mb < self.disk_reserve_mb:
            log.warning(
                "💽 LOW DISK: %.0f MB free in %s (reserve %.0f MB)",
                now.disk_free_mb, self.work_dir, self.disk_reserve_mb,
            )  # fmt: skip
            self.pause(PAUSE_DISK)
        else:
            self.resume(PAUSE_DISK)
        return now

    def _relieve(self, before: MemorySample) -> None:
        log.warning(
            "⚠️ HIGH MEMORY: %.0f MB encoder + %.0f MB ffmpeg (warning at %.0f MB)",
            before.encoder_mb, before.children_mb, self.warn_mb,
        )  # fmt: skip
        dropped = sum(prune() for prune in self.pruners)
        collected = gc.collect()
        after = sample(self.work_dir)
        log.warning(
            "🗑️ freed %.0f MB: gc collected %d objects, %d cache entries pruned",
            max(0.0, before.encoder_mb - after.encoder_mb), collected, dropped,
        )  # fmt: skip

    async def run(self) -> None:
        """Check forever (the service runs one check itself before intake starts)."""
        while True:
            await asyncio.sleep(self.check_interval)
            await asyncio.to_thread(self.check)


__all__ = [
    "CHECK_INTERVAL_S",
    "HISTORY_INTERVAL_S",
    "MB",
    "PAUSE_DISK",
    "PAUSE_MEMORY",
    "MemorySample",
    "Monitor",
    "sample",
]
