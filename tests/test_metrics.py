"""Prometheus /metrics, /health and /ready of the operator server.

The exposition text is checked by parsing it (a small parser of the 0.0.4 text format below,
strict about HELP/TYPE lines, names, label escaping and histogram invariants), and the server
is scraped over real HTTP, served by :func:`serve_web` around a real node service (SQLite job
store, monitor sample, pending-pin queue).
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from speak_encoder.config import Settings
from speak_encoder.node.models import NewJob, SourceKind
from speak_encoder.service import Service
from speak_encoder.web.app import bind_web_socket, create_web_app, readiness, serve_web
from speak_encoder.web.metrics import (
    CONTENT_TYPE,
    Family,
    Registry,
    escape_label_value,
    format_value,
    render,
)

# --- a strict little parser of the text format ---------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^(?P<name>{_NAME})(?:\{{(?P<labels>.*)\}})? (?P<value>\S+)$")
_LABEL = re.compile(r'\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"\s*(,|$)')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


@dataclass
class ParsedFamily:
    name: str
    type: str = ""
    help: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, **labels: str) -> float:
        found = [v for n, lab, v in self.samples if n == self.name and lab == labels]
        assert len(found) == 1, (self.name, labels, self.samples)
        return found[0]


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], text)


def _labels(text: str | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    text = text or ""
    while pos < len(text):
        match = _LABEL.match(text, pos)
        assert match, f"bad label syntax at {text[pos:]!r}"
        assert match["name"] not in labels, f"label {match['name']} twice"
        labels[match["name"]] = _unescape(match["value"])
        pos = match.end()
    return labels


def _family_of(sample: str, families: dict[str, ParsedFamily]) -> ParsedFamily:
    if sample in families:
        return families[sample]
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and base in families and families[base].type == "histogram":
            return families[base]
    raise AssertionError(f"sample {sample} has no TYPE line before it")


def parse(text: str) -> dict[str, ParsedFamily]:
    assert text.endswith("\n"), "the exposition ends with a line feed"
    families: dict[str, ParsedFamily] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name)
            family = families.setdefault(name, ParsedFamily(name))
            assert family.help is None and not family.samples, f"HELP of {name} late or twice"
            family.help = _unescape(help_text)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in _TYPES, line
            family = families.setdefault(name, ParsedFamily(name))
            assert not family.type and not family.samples, f"TYPE of {name} late or twice"
            family.type = kind
        elif line.startswith("#") or not line.strip():
            continue
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            value = match["value"]
            number = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}.get(value)
            family = _family_of(match["name"], families)
            family.samples.append(
                (
                    match["name"],
                    _labels(match["labels"]),
                    float(value) if number is None else number,
                )
            )
    for family in families.values():
        assert family.type and family.help is not None, f"{family.name}: HELP and TYPE"
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


# --- the format itself -------------------------------------------------------------------------


def test_label_values_and_help_are_escaped_and_parse_back() -> None:
    nasty = 'a "quoted" \\ back\nslash'
    family = Family("t_metric", "gauge", "help with \\ and\nnewline")
    family.add(1.5, {"reason": nasty, "other": "x"})
    parsed = parse(render([family]))["t_metric"]
    assert parsed.help == "help with \\ and\nnewline"
    assert parsed.value(reason=nasty, other="x") == 1.5
    assert escape_label_value(nasty) == 'a \\"quoted\\" \\\\ back\\nslash'


@pytest.mark.parametrize(
    ("value", "text"),
    [(3.0, "3"), (0.25, "0.25"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN")],
)
def test_values_are_written_in_the_format(value: float, text: str) -> None:
    assert format_value(value) == text


def test_registry_histograms_and_counters() -> None:
    registry = Registry()
    for seconds in (0.5, 3, 40, 40, 100000):
        registry.observe_stage("encode", seconds)
    registry.observe_stage("fetch", 2)
    registry.observe_stage("fetch", -1)  # nonsense is ignored, never raised
    registry.observe_encode(60, 30, "libx264")
    registry.observe_encode(0, 30, "libx264")
    registry.add_fetched_bytes(1000, "http")
    registry.add_fetched_bytes(500, "http")
    registry.add_published_bytes(2048, "local")
    families = parse(render(registry.families()))
    stages = families["speak_encoder_stage_duration_seconds"]
    assert stages.type == "histogram"
    buckets = {
        lab["le"]: v
        for n, lab, v in stages.samples
        if n.endswith("_bucket") and lab["stage"] == "encode"
    }
    assert buckets["1"] == 1 and buckets["5"] == 2 and buckets["60"] == 4 and buckets["+Inf"] == 5
    count = [v for n, lab, v in stages.samples if n.endswith("_count") and lab["stage"] == "fetch"]
    assert count == [1]
    speed = families["speak_encoder_encode_speed_ratio"]
    assert speed.samples[-1][2] == 1  # one observation (the zero-length one was ignored)
    assert [v for n, _, v in speed.samples if n.endswith("_sum")] == [2.0]
    assert families["speak_encoder_fetched_bytes_total"].value(origin="http") == 1500
    assert families["speak_encoder_published_bytes_total"].value(target="local") == 2048


# --- a real node, scraped over HTTP --------------------------------------------------------------


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


Scenario = Callable[[str, Registry], Awaitable[None]]


def run_served(service: Service, scenario: Scenario) -> None:
    """Serve the operator app of ``service`` on a free loopback port while ``scenario`` runs."""

    async def main() -> None:
        registry = Registry()
        app = create_web_app(service, registry=registry, stopping=service.stop.is_set)
        sock = bind_web_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        stop = asyncio.Event()
        task = asyncio.create_task(serve_web(app, stop=stop, sock=sock))
        try:
            await scenario(f"http://127.0.0.1:{port}", registry)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    try:
        asyncio.run(main())
    finally:
        service.store.close()


def _seed(service: Service, settings: Settings) -> None:
    store = service.store
    for i, kind in enumerate([SourceKind.LOCAL, SourceKind.LOCAL, SourceKind.DIRECT]):
        store.submit(NewJob(source=f"clip{i}.mp4", kind=kind), queue_max=100)
    store.submit(NewJob(source="g.mp4", kind=SourceKind.GATEWAY), queue_max=100)
    claimed = store.claim("metrics-node", lease_seconds=60)
    assert claimed is not None
    store.fail(claimed.id, "metrics-node", error="bad media", kind="MediaError")
    store.pin_queue(settings).add("QmTest", "cluster", None, "cluster down")
    service.monitor.check()
    service.scheduler.stats["watchdog_kills"] = 2
    service.scheduler.stats["retried"] = 3


async def _scrape(base: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        return await client.get(path)


def test_scrape_over_http(service: Service, settings: Settings) -> None:
    _seed(service, settings)
    run_served(service, lambda base, registry: _scrape_and_check(service, base, registry))


async def _scrape_and_check(service: Service, base: str, registry: Registry) -> None:
    registry.observe_stage("fetch", 1.25)
    registry.add_published_bytes(4096, "cluster")
    hardware = sys.modules.get("speak_encoder.pipeline.hardware")

    response = await _scrape(base, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    assert response.headers["x-content-type-options"] == "nosniff"
    families = parse(response.text)

    jobs = families["speak_encoder_jobs"]
    assert jobs.type == "gauge"
    assert jobs.value(state="queued", source="local") == 1  # the other one was claimed, failed
    assert jobs.value(state="failed", source="local") == 1
    assert jobs.value(state="queued", source="direct") == 1
    assert jobs.value(state="queued", source="gateway") == 1
    assert jobs.value(state="complete", source="embed") == 0  # every pair, zeros included
    assert families["speak_encoder_store_up"].value() == 1
    assert families["speak_encoder_watchdog_kills_total"].value() == 2
    assert families["speak_encoder_job_retries_total"].value() == 3
    assert families["speak_encoder_job_slots"].value() == 2
    assert families["speak_encoder_pending_pins"].value(status="pending") == 1
    assert families["speak_encoder_outbox_reports"].value(state="pending") == 0
    rss = families["speak_encoder_memory_rss_bytes"]
    assert rss.value(process="encoder") > 10 * 1024 * 1024
    assert rss.value(process="ffmpeg") >= 0
    assert families["speak_encoder_disk_free_bytes"].value() > 0
    assert families["speak_encoder_uptime_seconds"].value() >= 0
    build = families["speak_encoder_build_info"].samples[0][1]
    assert re.match(r"\d", build["ffmpeg_version"]), build  # the real ffmpeg answered
    assert families["speak_encoder_stage_duration_seconds"].samples
    assert families["speak_encoder_published_bytes_total"].value(target="cluster") == 4096
    fallbacks = families["speak_encoder_hardware_fallbacks_total"]
    if hardware is None:
        assert fallbacks.samples == []  # the scrape did not import the pipeline
        assert "speak_encoder.pipeline.hardware" not in sys.modules
    assert families["speak_encoder_ready"].value() == 0


def test_hardware_fallbacks_are_exported(service: Service) -> None:
    from speak_encoder.pipeline import hardware

    async def scenario(base: str, _registry: Registry) -> None:
        families = parse((await _scrape(base, "/metrics")).text)
        fallbacks = families["speak_encoder_hardware_fallbacks_total"]
        assert fallbacks.type == "counter"
        assert fallbacks.value(encoder="h264_vaapi") >= 1

    hardware.FALLBACKS["h264_vaapi"] += 1
    try:
        run_served(service, scenario)
    finally:
        hardware.FALLBACKS["h264_vaapi"] -= 1


def test_health_and_readiness(service: Service) -> None:
    run_served(service, lambda base, _registry: _health_and_readiness(service, base))


async def _health_and_readiness(service: Service, base: str) -> None:
    health = await _scrape(base, "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"

    starting = await _scrape(base, "/ready")
    assert starting.status_code == 503
    assert starting.json()["checks"]["running"] == "starting"

    service.ready = True
    ready = await _scrape(base, "/ready")
    assert ready.status_code == 200, ready.json()
    assert ready.json() == {
        "ready": True,
        "checks": {"store": "ok", "scheduler": "ok", "running": "ok"},
    }

    service.scheduler.pause("memory above MEMORY_CRITICAL_MB")
    paused = await _scrape(base, "/ready")
    assert paused.status_code == 503
    assert "memory" in paused.json()["checks"]["scheduler"]
    service.scheduler.resume("memory above MEMORY_CRITICAL_MB")

    service.stop.set()
    stopping = await _scrape(base, "/ready")
    assert stopping.status_code == 503 and stopping.json()["checks"]["running"] == "stopping"
    assert (await _scrape(base, "/health")).status_code == 200  # alive while stopping
    assert (await _scrape(base, "/docs")).status_code == 404


def test_readiness_when_the_store_is_down_or_every_slot_is_busy(service: Service) -> None:
    service.ready = True
    down = readiness(service, store_ok=False, stopping=False)
    assert down["ready"] is False and down["checks"]["store"] != "ok"
    # Every slot taken: busy, still ready (the node is working, not broken).
    service.scheduler.running.update({"a": object(), "b": object()})  # type: ignore[dict-item]
    try:
        assert service.scheduler.free_slots == 0
        assert readiness(service, store_ok=True, stopping=False)["ready"] is True
    finally:
        service.scheduler.running.clear()
        service.store.close()


def test_serve_web_refuses_a_taken_port() -> None:
    from speak_encoder.errors import ConfigError

    first = bind_web_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        first.listen()
        with pytest.raises(ConfigError, match="DASHBOARD_HOST/DASHBOARD_PORT"):
            bind_web_socket("127.0.0.1", port)
    finally:
        first.close()
