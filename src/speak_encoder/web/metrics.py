"""Prometheus metrics, written by hand in the text exposition format 0.0.4 (no dependency).

Two kinds of figures:

* **Events** the pipeline reports as they happen, through a :class:`Registry` (the process-wide
  one is :data:`REGISTRY`; every method is thread-safe and never raises):
  ``observe_stage(stage, seconds)``, ``observe_encode(media_seconds, wall_seconds, encoder)``,
  ``add_fetched_bytes(n, origin)``, ``add_published_bytes(n, target)``.
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

import math
import platform
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from speak_encoder import __version__

if TYPE_CHECKING:
    from speak_encoder.config import Settings
    from speak_encoder.node.monitor import Monitor
    from speak_encoder.node.scheduler import Scheduler
    from speak_encoder.node.store import JobStore

#: Content type of the 0.0.4 text format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: Prefix of every metric name.
PREFIX: Final = "speak_encoder_"
#: Histogram buckets (upper bounds) of a stage's duration, in seconds: 1 s … 4 h.
STAGE_BUCKETS_S: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
                          3600.0, 7200.0, 14400.0)  # fmt: skip
#: Histogram buckets of the encode speed (seconds of media encoded per second of wall time).
SPEED_BUCKETS: Final = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0, 16.0)
#: Seconds the pending-pin database may keep a scrape waiting for its lock.

MB: Final = 1024 * 1024

MetricType = Literal["counter", "gauge", "histogram", "summary", "untyped"]
Labels = tuple[tuple[str, str], ...]


# --- the text format ---------------------------------------------------------------------


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed escaped, as the format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and line feed escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels_text(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels)
    return "{" + inner + "}"


@dataclass(frozen=True, slots=True)
class Sample:
    suffix: str  # "" or "_bucket", "_sum", "_count"
    labels: Labels
    value: float


@dataclass(slots=True)
class Family:
    """One metric family: its name, type, help and samples."""

    name: str
    type: MetricType
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float, labels: Mapping[str, str] | None = None, suffix: str = "") -> None:
        self.samples.append(Sample(suffix, tuple((labels or {}).items()), float(value)))


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


# --- event metrics ---------------------------------------------------------------------------


class _Histogram:
    """Cumulative buckets, sum and count per label set."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        self.series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        counts, totals = self.series.setdefault(labels, ([0] * len(self.buckets), [0.0, 0.0]))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        totals[0] += value
        totals[1] += 1

    def write(self, family: Family) -> None:
        for labels, (counts, (total, count)) in sorted(self.series.items()):
            for bound, n in zip(self.buckets, counts, strict=True):
                family.samples.append(Sample("_bucket", (*labels, ("le", format_value(bound))), n))
            family.samples.append(Sample("_bucket", (*labels, ("le", "+Inf")), count))
            family.samples.append(Sample("_sum", labels, total))
            family.samples.append(Sample("_count", labels, count))


class Registry:
    """Counters and histograms the pipeline feeds while jobs run (thread-safe, never raises)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages = _Histogram(STAGE_BUCKETS_S)
        self._speed = _Histogram(SPEED_BUCKETS)
        self._fetched: dict[str, float] = {}
        self._published: dict[str, float] = {}

    def observe_stage(self, stage: str, seconds: float) -> None:
        """A stage of a job finished after ``seconds`` (call it after each stage)."""
        if seconds >= 0 and math.isfinite(seconds):
            with self._lock:
                self._stages.observe((("stage", str(stage)),), seconds)

    def observe_encode(self, media_seconds: float, wall_seconds: float, encoder: str) -> None:
        """An encode of ``media_seconds`` of video took ``wall_seconds`` with ``encoder``."""
        if media_seconds > 0 and wall_seconds > 0:
            with self._lock:
                self._speed.observe((("encoder", encoder),), media_seconds / wall_seconds)

    def add_fetched_bytes(self, n: int, origin: str = "http") -> None:
        """``n`` source bytes were downloaded (``origin``: http, ipfs, file …)."""
        if n > 0:
            with self._lock:
                self._fetched[origin] = self._fetched.get(origin, 0.0) + n

    def add_published_bytes(self, n: int, target: str) -> None:
        """``n`` bytes were uploaded to publish ``target`` (local, hotnode, supernode …)."""
        if n > 0:
            with self._lock:
                self._published[target] = self._published.get(target, 0.0) + n

    def families(self) -> list[Family]:
        stages = Family(
            f"{PREFIX}stage_duration_seconds", "histogram",
            "Wall time of a finished job stage (fetch, probe, plan, encode, verify, publish, "
            "report).",
        )  # fmt: skip
        speed = Family(
            f"{PREFIX}encode_speed_ratio", "histogram",
            "Encode speed of a finished encode: seconds of media per second of wall time.",
        )  # fmt: skip
        fetched = Family(
            f"{PREFIX}fetched_bytes_total", "counter", "Source bytes downloaded, by origin."
        )
        published = Family(
            f"{PREFIX}published_bytes_total", "counter", "Bytes uploaded to publish targets."
        )
        with self._lock:
            self._stages.write(stages)
            self._speed.write(speed)
            for origin, n in sorted(self._fetched.items()):
                fetched.add(n, {"origin": origin})
            for target, n in sorted(self._published.items()):
                published.add(n, {"target": target})
        return [stages, speed, fetched, published]


#: The process-wide registry the pipeline reports to.
REGISTRY = Registry()


# --- node state, read at scrape time -----------------------------------------------------


class NodeLike(Protocol):
    """What :func:`collect_node` reads (the node's :class:`~speak_encoder.node.service.Service`)."""

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
