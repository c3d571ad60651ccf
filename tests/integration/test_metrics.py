"""Prometheus /metrics, /health and /ready of the operator server.

The exposition text is checked by parsing it with ``prometheus_client``'s own text parser (the
oracle: what Prometheus' client library reads is what a scraper reads), plus the invariants of
the format (HELP/TYPE lines, counters never negative, cumulative histograms), and the server
is scraped over real HTTP, served by :func:`serve_web` around a real node service (SQLite job
store, monitor sample, pending-pin queue).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

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

# --- the text format, read back by prometheus_client's own parser (the oracle) ----------------


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
    counted = dict(hardware.FALLBACKS) if hardware is not None else {}
    assert {labels["encoder"]: v for _, labels, v in fallbacks.samples} == counted
    # the scrape did not import the pipeline (a fresh process: test_a_scrape_loads_no_pipeline)
    assert ("speak_encoder.pipeline.hardware" in sys.modules) == (hardware is not None)
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


_SCRAPE_IN_A_FRESH_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys
    import httpx
    from speak_encoder.config import Settings
    from speak_encoder.service import Service
    from speak_encoder.web.app import create_web_app

    async def scrape(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return (await c.get("/metrics")).text

    settings = Settings(data_dir=sys.argv[1], publish_targets="", ipfs_api_addr="",
                        hardware_acceleration=False)
    node = Service(settings)
    node.startup()
    text = asyncio.run(scrape(create_web_app(node)))
    node.store.close()
    print(json.dumps({"text": text, "loaded": sorted(m for m in sys.modules
                                                     if m.startswith("speak_encoder.pipeline"))}))
    """
)


def test_a_scrape_loads_no_pipeline(tmp_path: Path) -> None:
    """An idle node's scrape imports no pipeline module: no hardware fallback, a small node."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRAPE_IN_A_FRESH_PROCESS, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert "speak_encoder.pipeline.hardware" not in answer["loaded"]
    fallbacks = parse(answer["text"])["speak_encoder_hardware_fallbacks_total"]
    assert fallbacks.type == "counter" and fallbacks.samples == []


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
