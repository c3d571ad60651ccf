"""What is known about this machine's hardware encoders (docs/encoding.md §8), and its cache file.

:class:`DeviceScan` (the GPU devices present) and :class:`HardwareReport` (what detection found)
are kept in ``<cache_dir>/hardware.json``, keyed by the ffmpeg build (its ``-version`` text) and
the device list. The same file remembers failures during jobs: a hardware encoder that fails
:data:`DEFAULT_BROKEN_AFTER` jobs in a row (jobs that libx264 then encoded fine, so the source
is not to blame) is marked broken and not tried again until the next detection. Writes are
atomic and serialised (:func:`record_failure`, :func:`record_success`); detection itself and
the per-job fallback are :mod:`speak_encoder.pipeline.hardware`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speak_encoder.pipeline.ffmpeg import DEFAULT_RENDER_NODE, HARDWARE_ENCODERS, SOFTWARE_ENCODER

log = logging.getLogger(__name__)

#: File (inside the cache directory, e.g. DATA_DIR) holding detection and failure memory.
CACHE_NAME = "hardware.json"
#: Bumped when the file's layout changes (an older file is simply detected again).
CACHE_FORMAT = 1
#: Consecutive failed jobs after which a hardware encoder is marked broken (config candidate
#: ``HW_BROKEN_AFTER``).
DEFAULT_BROKEN_AFTER = 3
#: Where devices are looked for (parameters of :func:`scan_devices`, for tests).
DEV_ROOT = Path("/dev")
NVIDIA_VERSION_FILE = Path("/proc/driver/nvidia/version")

_RENDER_NODE = re.compile(r"^renderD\d+$")
_NVIDIA_NODE = re.compile(r"^nvidia\d+$")
_STATE_LOCK = threading.Lock()


# --- devices ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceScan:
    """The GPU devices of this machine (part of the cache key)."""

    render_nodes: tuple[str, ...] = ()  # /dev/dri/renderD128 …
    nvidia_devices: tuple[str, ...] = ()  # /dev/nvidia0 …
    nvidia_driver: str = ""  # first line of /proc/driver/nvidia/version

    @property
    def nvidia(self) -> bool:
        return bool(self.nvidia_devices)

    def to_json(self) -> dict[str, Any]:
        return {
            "render_nodes": list(self.render_nodes),
            "nvidia_devices": list(self.nvidia_devices),
            "nvidia_driver": self.nvidia_driver,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DeviceScan:
        return cls(
            render_nodes=tuple(str(n) for n in doc.get("render_nodes", [])),
            nvidia_devices=tuple(str(n) for n in doc.get("nvidia_devices", [])),
            nvidia_driver=str(doc.get("nvidia_driver", "")),
        )


def scan_devices(
    dev_root: Path = DEV_ROOT, nvidia_version_file: Path = NVIDIA_VERSION_FILE
) -> DeviceScan:
    """Render nodes and NVIDIA devices present (and the NVIDIA driver version, if loaded)."""

    def names(folder: Path, pattern: re.Pattern[str]) -> tuple[str, ...]:
        try:
            found = [p for p in folder.iterdir() if pattern.match(p.name)]
        except OSError:
            return ()
        return tuple(str(p) for p in sorted(found, key=lambda p: (len(p.name), p.name)))

    driver = ""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        driver = nvidia_version_file.read_text("utf-8").strip().splitlines()[0].strip()
    return DeviceScan(
        render_nodes=names(dev_root / "dri", _RENDER_NODE),
        nvidia_devices=names(dev_root, _NVIDIA_NODE),
        nvidia_driver=driver,
    )


# --- the report -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HardwareReport:
    """What detection found (and, as read from the cache, what jobs have broken since)."""

    ffmpeg_version: str
    fingerprint: str  # sha256 of `ffmpeg -version`: the build, not just its number
    devices: DeviceScan
    render_node: str | None  # VA-API/QSV device asked for (None = DEFAULT_RENDER_NODE)
    listed: tuple[str, ...]  # hardware encoders the build has
    candidates: tuple[str, ...]  # … whose device exists
    working: tuple[str, ...]  # … whose test encode passed, best first
    detect_failures: Mapping[str, str] = field(default_factory=dict)  # encoder → why
    job_failures: Mapping[str, int] = field(default_factory=dict)  # consecutive failed jobs
    broken: Mapping[str, str] = field(default_factory=dict)  # encoder → last failure
    detected_at: float = 0.0
    from_cache: bool = False

    @property
    def device(self) -> str:
        """The render node VA-API/QSV encodes use."""
        return self.render_node or DEFAULT_RENDER_NODE

    @property
    def usable(self) -> tuple[str, ...]:
        """Working and not broken, best first."""
        return tuple(e for e in self.working if e not in self.broken)

    @property
    def best(self) -> str:
        """The encoder a job tries first."""
        return self.usable[0] if self.usable else SOFTWARE_ENCODER

    def summary(self) -> str:
        """One human-readable line (for logs and ``doctor``)."""
        parts = [f"ffmpeg {self.ffmpeg_version}"]
        if not self.listed:
            parts.append("no hardware encoder in this build")
        for encoder in self.listed:
            if encoder in self.broken:
                state = f"broken ({self.broken[encoder]})"
            elif encoder in self.working:
                state = "working"
            elif encoder in self.detect_failures:
                state = f"not usable ({self.detect_failures[encoder]})"
            else:
                state = "not tested"
            parts.append(f"{encoder}: {state}")
        parts.append(f"jobs use {self.best}")
        return "; ".join(parts)

    def key(self) -> dict[str, Any]:
        """What the cache is valid for."""
        return {
            "format": CACHE_FORMAT,
            "fingerprint": self.fingerprint,
            "devices": self.devices.to_json(),
            "render_node": self.render_node,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.key(),
            "ffmpeg_version": self.ffmpeg_version,
            "listed": list(self.listed),
            "candidates": list(self.candidates),
            "working": list(self.working),
            "detect_failures": dict(self.detect_failures),
            "job_failures": dict(self.job_failures),
            "broken": dict(self.broken),
            "detected_at": self.detected_at,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HardwareReport:
        def encoders(name: str) -> tuple[str, ...]:
            return tuple(e for e in doc.get(name, []) if e in HARDWARE_ENCODERS)

        return cls(
            ffmpeg_version=str(doc["ffmpeg_version"]),
            fingerprint=str(doc["fingerprint"]),
            devices=DeviceScan.from_json(doc["devices"]),
            render_node=doc.get("render_node"),
            listed=encoders("listed"),
            candidates=encoders("candidates"),
            working=encoders("working"),
            detect_failures={str(k): str(v) for k, v in doc.get("detect_failures", {}).items()},
            job_failures={str(k): int(v) for k, v in doc.get("job_failures", {}).items()},
            broken={str(k): str(v) for k, v in doc.get("broken", {}).items()},
            detected_at=float(doc.get("detected_at", 0.0)),
            from_cache=True,
        )


# --- the cache file ---------------------------------------------------------------------


def cache_path(cache_dir: Path) -> Path:
    return cache_dir / CACHE_NAME


def load_cached(cache_dir: Path) -> HardwareReport | None:
    """The cached report, or None (missing, unreadable or from another layout)."""
    try:
        doc = json.loads(cache_path(cache_dir).read_text("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
            return None
        return HardwareReport.from_json(doc)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _save(cache_dir: Path, report: HardwareReport) -> None:
    """Write the cache atomically (a crash never leaves half a file)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{CACHE_NAME}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(report.to_json(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, cache_path(cache_dir))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_quietly(cache_dir: Path, report: HardwareReport) -> None:
    try:
        _save(cache_dir, report)
    except OSError as exc:
        log.warning(
            "cannot write %s (%s): hardware detection and failures are not remembered",
            cache_path(cache_dir),
            exc.strerror or exc,
        )


def current(report: HardwareReport, cache_dir: Path) -> HardwareReport:
    """``report`` with the failure memory the cache holds now (other jobs may have added)."""
    cached = load_cached(cache_dir)
    if cached is not None and cached.key() == report.key():
        return dataclasses.replace(report, job_failures=cached.job_failures, broken=cached.broken)
    return report


def _update(
    report: HardwareReport, cache_dir: Path, change: Callable[[HardwareReport], HardwareReport]
) -> HardwareReport:
    with _STATE_LOCK:
        updated = change(current(report, cache_dir))
        save_quietly(cache_dir, updated)
        return updated


def record_failure(
    report: HardwareReport,
    cache_dir: Path,
    encoder: str,
    reason: str,
    *,
    broken_after: int = DEFAULT_BROKEN_AFTER,
) -> HardwareReport:
    """Count a failed job of ``encoder``; the ``broken_after``-th in a row marks it broken."""

    def change(state: HardwareReport) -> HardwareReport:
        failures = dict(state.job_failures)
        failures[encoder] = failures.get(encoder, 0) + 1
        broken = dict(state.broken)
        if failures[encoder] >= broken_after and encoder not in broken:
            broken[encoder] = reason[:300]
            log.warning(
                "hardware encoder %s failed %d jobs in a row and is marked broken: jobs use "
                "libx264 until hardware is detected again (last error: %s)",
                encoder,
                failures[encoder],
                reason,
            )
        return dataclasses.replace(state, job_failures=failures, broken=broken)

    return _update(report, cache_dir, change)


def record_success(report: HardwareReport, cache_dir: Path, encoder: str) -> HardwareReport:
    """A job of ``encoder`` worked: its run of failures starts again from zero."""
    if not current(report, cache_dir).job_failures.get(encoder):
        return report

    def change(state: HardwareReport) -> HardwareReport:
        failures = {k: v for k, v in state.job_failures.items() if k != encoder}
        return dataclasses.replace(state, job_failures=failures)

    return _update(report, cache_dir, change)


__all__ = [
    "CACHE_NAME",
    "DEFAULT_BROKEN_AFTER",
    "DeviceScan",
    "HardwareReport",
    "current",
    "load_cached",
    "record_failure",
    "record_success",
    "save_quietly",
    "scan_devices",
]
