"""Prometheus metrics, written by hand in the text exposition format 0.0.4 (no dependency).

Two kinds of figures:

* **Events** the pipeline reports as they happen, through a
  :class:`~speak_encoder.node.metrics.Registry` (the process-wide one is
  :data:`~speak_encoder.node.metrics.REGISTRY`, in ``node``: the node writes it, this module
  only reads it): ``observe_stage(stage, seconds)``,
  ``observe_encode(media_seconds, wall_seconds, encoder)``, ``add_fetched_bytes(n, origin)``,
  ``add_published_bytes(n, target)``.
* **State** read at scrape time from the node (:func:`collect_node`): jobs by state and source
  (one grouped query), outbox and pending-pin depth, the scheduler's counters (completed,
  failed, retried, watchdog kills), the monitor's last memory/disk sample, hardware fallbacks,
  uptime, readiness and build info.

Every family is written with ``# HELP`` and ``# TYPE`` lines; label values are escaped
(backslash, double quote, newline). Names::

    speak_encoder_jobs{state,source}                      gauge   (job store, all nodes)
    speak_encoder_jobs_running                            gauge   (this node)
    speak_encoder_job_slots                               gauge   MAX_CONCURRENT_JOBS
    speak_encoder_intake_paused{reason}                   gauge
    speak_encoder_jobs_completed_total / _failed_total    counter (this process)
    speak_encoder_job_retries_total                       counter
    speak_encoder_watchdog_kills_total                    counter
    speak_encoder_stage_duration_seconds{stage}           histogram
    speak_encoder_encode_speed_ratio{encoder}             histogram (media s per wall s)
    speak_encoder_fetched_bytes_total{origin}             counter
    speak_encoder_published_bytes_total{target}           counter
    speak_encoder_outbox_reports{state}                   gauge
    speak_encoder_pending_pins{status}                    gauge
    speak_encoder_memory_rss_bytes{process}               gauge   encoder | ffmpeg
    speak_encoder_memory_available_bytes                  gauge
    speak_encoder_disk_free_bytes                         gauge   (work directory)
    speak_encoder_hardware_fallbacks_total{encoder}       counter
    speak_encoder_store_up                                gauge   1 = the last query worked
    speak_encoder_ready                                   gauge
    speak_encoder_start_time_seconds / _uptime_seconds    gauge
    speak_encoder_build_info{version,ffmpeg_version,python_version}  gauge (always 1)
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from speak_encoder import __version__
from speak_encoder.node.metrics import (
    PREFIX,
    REGISTRY,
    Family,
    Labels,
    Registry,
    Sample,
    format_value,
)

if TYPE_CHECKING:
    from speak_encoder.config import Settings
    from speak_encoder.node.monitor import Monitor
    from speak_encoder.node.scheduler import Scheduler
    from speak_encoder.node.store import JobStore

#: Content type of the 0.0.4 text format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

MB: Final = 1024 * 1024


# --- the text format ---------------------------------------------------------------------


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed escaped, as the format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and line feed escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels)
    return "{" + inner + "}"


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families`` (each name written once, in the given order)."""
    out: list[str] = []
    for family in families:
        out.append(f"# HELP {family.name} {escape_help(family.help)}")
        out.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            out.append(
                f"{family.name}{sample.suffix}{_labels_text(sample.labels)} "
                f"{format_value(sample.value)}"
            )
    return "\n".join(out) + "\n"


# --- node state, read at scrape time -----------------------------------------------------


class NodeLike(Protocol):
    """What :func:`collect_node` reads (the node's :class:`~speak_encoder.service.Service`)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> JobStore: ...
    @property
    def scheduler(self) -> Scheduler: ...
    @property
    def monitor(self) -> Monitor: ...
    @property
    def started_at(self) -> float: ...
    @property
    def ready(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class StoreFigures:
    """What the databases said (read in a worker thread)."""

    jobs: dict[tuple[str, str], int] | None  # None: the job store did not answer
    outbox: dict[str, int] | None
    pins: dict[str, int] | None


def read_store_figures(node: NodeLike) -> StoreFigures:
    """The database part of a scrape (blocking: call it through ``asyncio.to_thread``)."""
    jobs: dict[tuple[str, str], int] | None
    outbox: dict[str, int] | None
    pins: dict[str, int] | None
    try:
        jobs = node.store.counts_by_kind()
        outbox = node.store.outbox_counts()
        pins = node.store.pin_counts()
    except Exception:
        jobs = outbox = pins = None
    return StoreFigures(jobs=jobs, outbox=outbox, pins=pins)


def _hardware_fallbacks() -> Mapping[str, int]:
    """Fallbacks counted by the pipeline — read only if the pipeline is loaded (a scrape must
    not import it: the idle node stays small; not loaded = no encode yet = no fallback)."""
    module: Any = sys.modules.get("speak_encoder.pipeline.hardware")
    return dict(module.FALLBACKS) if module is not None else {}


def collect_node(
    node: NodeLike,
    figures: StoreFigures,
    *,
    ffmpeg_version: str = "unknown",
    now: float | None = None,
) -> list[Family]:
    """Families describing the node's state (call in the event loop: it reads the scheduler)."""
    from speak_encoder.node.models import JobState, SourceKind

    at = time.time() if now is None else now
    fams: list[Family] = []

    jobs = Family(f"{PREFIX}jobs", "gauge", "Jobs in the job store by state and source kind.")
    if figures.jobs is not None:
        keys = {(s.value, k.value) for s in JobState for k in SourceKind} | set(figures.jobs)
        for state, kind in sorted(keys):
            jobs.add(figures.jobs.get((state, kind), 0), {"state": state, "source": kind})
    fams.append(jobs)
    store_up = Family(
        f"{PREFIX}store_up", "gauge", "1 when the job store answered this scrape's query."
    )
    store_up.add(1 if figures.jobs is not None else 0)
    fams.append(store_up)

    scheduler = node.scheduler
    running = Family(f"{PREFIX}jobs_running", "gauge", "Jobs this node is running now.")
    running.add(len(scheduler.running))
    slots = Family(f"{PREFIX}job_slots", "gauge", "Jobs this node may run at once.")
    slots.add(node.settings.max_concurrent_jobs)
    paused = Family(
        f"{PREFIX}intake_paused", "gauge", "1 for each reason intake is paused right now."
    )
    for reason in sorted(scheduler.pause_reasons):
        paused.add(1, {"reason": reason})
    fams += [running, slots, paused]

    stats = scheduler.stats
    for key, name, text in (
        ("completed", "jobs_completed_total", "Jobs this process completed."),
        ("failed", "jobs_failed_total", "Jobs this process failed for good."),
        ("retried", "job_retries_total", "Failed attempts scheduled for a retry."),
        ("watchdog_kills", "watchdog_kills_total",
         "Jobs the watchdog cancelled (STUCK_TIMEOUT or JOB_TIMEOUT)."),
    ):  # fmt: skip
        family = Family(f"{PREFIX}{name}", "counter", text)
        family.add(stats.get(key, 0))
        fams.append(family)

    outbox = Family(f"{PREFIX}outbox_reports", "gauge", "Completion reports in the outbox.")
    for state, n in sorted((figures.outbox or {}).items()):
        outbox.add(n, {"state": state})
    pins = Family(f"{PREFIX}pending_pins", "gauge", "Entries of the pending-pin queue.")
    for status, n in sorted((figures.pins or {}).items()):
        pins.add(n, {"status": status})
    fams += [outbox, pins]

    rss = Family(f"{PREFIX}memory_rss_bytes", "gauge",
                 "Resident memory of the encoder process and of its ffmpeg children.")  # fmt: skip
    available = Family(f"{PREFIX}memory_available_bytes", "gauge", "Memory available on the host.")
    disk = Family(f"{PREFIX}disk_free_bytes", "gauge", "Free disk in the work directory.")
    history = node.monitor.history
    if history:
        last = history[-1]
        rss.add(last.encoder_mb * MB, {"process": "encoder"})
        rss.add(last.children_mb * MB, {"process": "ffmpeg"})
        available.add(last.available_mb * MB)
        disk.add(last.disk_free_mb * MB)
    fams += [rss, available, disk]

    fallbacks = Family(
        f"{PREFIX}hardware_fallbacks_total", "counter",
        "Hardware encodes that failed and were redone with libx264, by encoder.",
    )  # fmt: skip
    for encoder, n in sorted(_hardware_fallbacks().items()):
        fallbacks.add(n, {"encoder": encoder})
    fams.append(fallbacks)

    ready = Family(f"{PREFIX}ready", "gauge", "1 when the node takes jobs (see /ready).")
    ready.add(1 if node.ready else 0)
    start = Family(f"{PREFIX}start_time_seconds", "gauge", "Start of the node (unix seconds).")
    start.add(node.started_at)
    uptime = Family(f"{PREFIX}uptime_seconds", "gauge", "Seconds since the node started.")
    uptime.add(max(0.0, at - node.started_at))
    build = Family(f"{PREFIX}build_info", "gauge", "Versions of this node (the value is 1).")
    build.add(1, {"version": __version__, "ffmpeg_version": ffmpeg_version,
                  "python_version": platform.python_version()})  # fmt: skip
    fams += [ready, start, uptime, build]
    return fams


def exposition(
    node: NodeLike,
    figures: StoreFigures,
    *,
    registry: Registry = REGISTRY,
    ffmpeg_version: str = "unknown",
    now: float | None = None,
) -> str:
    """The whole ``/metrics`` text."""
    families = collect_node(node, figures, ffmpeg_version=ffmpeg_version, now=now)
    return render([*families, *registry.families()])


__all__ = [
    "CONTENT_TYPE",
    "REGISTRY",
    "Family",
    "NodeLike",
    "Registry",
    "Sample",
    "StoreFigures",
    "collect_node",
    "escape_help",
    "escape_label_value",
    "exposition",
    "format_value",
    "read_store_figures",
    "render",
]
