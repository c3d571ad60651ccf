"""The metrics the node writes as things happen: the event sink of the pipeline and the runner.

A :class:`Registry` (the process-wide one is :data:`REGISTRY`; every method is thread-safe and
never raises) counts what only the moment knows: ``observe_stage(stage, seconds)``,
``observe_encode(media_seconds, wall_seconds, encoder)``, ``add_fetched_bytes(n, origin)``,
``add_published_bytes(n, target)``. :meth:`Registry.families` hands them out as
:class:`Family` values; writing them as Prometheus text is the operator server's job
(:mod:`speak_encoder.web.metrics`, which also reads the node's state at scrape time).

It lives in ``node`` (not in ``web``) so that the layers below the operator server report
without importing it: dependencies point down.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

#: Prefix of every metric name.
PREFIX: Final = "speak_encoder_"
#: Histogram buckets (upper bounds) of a stage's duration, in seconds: 1 s … 4 h.
STAGE_BUCKETS_S: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
                          3600.0, 7200.0, 14400.0)  # fmt: skip
#: Histogram buckets of the encode speed (seconds of media encoded per second of wall time).
SPEED_BUCKETS: Final = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0, 16.0)

MetricType = Literal["counter", "gauge", "histogram", "summary", "untyped"]
Labels = tuple[tuple[str, str], ...]


# --- metric families (the data; the text format is web.metrics') ---------------------------


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


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


__all__ = [
    "PREFIX",
    "REGISTRY",
    "SPEED_BUCKETS",
    "STAGE_BUCKETS_S",
    "Family",
    "Labels",
    "MetricType",
    "Registry",
    "Sample",
    "format_value",
]
