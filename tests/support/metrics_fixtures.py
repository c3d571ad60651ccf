"""The metrics tests' shared parts: the exposition text read back by ``prometheus_client``'s own
text parser (the oracle: what Prometheus' client library reads is what a scraper reads) with the
invariants of the format, and a started node service (SQLite store) to read figures from.

The fixtures have generic names, so this is no global plugin: a module imports the ones it uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from speak_encoder.config import Settings
from speak_encoder.service import Service


@dataclass
class ParsedFamily:
    name: str  # as written (a counter keeps its ``_total``)
    type: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, **labels: str) -> float:
        found = [v for n, lab, v in self.samples if n == self.name and lab == labels]
        assert len(found) == 1, (self.name, labels, self.samples)
        return found[0]


def parse(text: str) -> dict[str, ParsedFamily]:
    """The families of ``text`` as Prometheus' client library reads them, plus the invariants
    the format asks of each (HELP and TYPE given, counters never negative, histograms whole)."""
    assert text.endswith("\n"), "the exposition ends with a line feed"
    families: dict[str, ParsedFamily] = {}
    for metric in text_string_to_metric_families(text):
        # the library names a counter without its ``_total`` (its samples keep it)
        name = f"{metric.name}_total" if metric.type == "counter" else metric.name
        assert name not in families, f"{name} written twice"
        family = ParsedFamily(name, metric.type, metric.documentation)
        family.samples = [(s.name, dict(s.labels), float(s.value)) for s in metric.samples]
        families[name] = family
    for family in families.values():
        assert family.type in {"counter", "gauge", "histogram"}, f"{family.name}: TYPE"
        assert family.help, f"{family.name}: HELP"
        if family.type == "counter":
            assert all(v >= 0 for _, _, v in family.samples), family.name
        if family.type == "histogram":
            _check_histogram(family)
    return families


def _check_histogram(family: ParsedFamily) -> None:
    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for name, labels, value in family.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        if name.endswith("_bucket"):
            series.setdefault(key, []).append((float(labels["le"]), value))
        elif name.endswith("_count"):
            counts[key] = value
    for key, buckets in series.items():
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf, "le ascending, +Inf last"
        values = [v for _, v in buckets]
        assert values == sorted(values), "buckets are cumulative"
        assert values[-1] == counts[key], "+Inf bucket == _count"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        node_name="metrics-node",
        max_concurrent_jobs=2,
        publish_targets="",
        ipfs_api_addr="",
        hardware_acceleration=False,
    )


@pytest.fixture
def service(settings: Settings) -> Service:
    node = Service(settings)
    node.startup()
    return node
