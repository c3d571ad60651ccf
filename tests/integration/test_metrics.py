"""Prometheus /metrics, /health and /ready of the operator server.

The server is scraped over real HTTP, served by :func:`serve_web` around a real node service
(SQLite job store, monitor sample, pending-pin queue); the text is read back by
``prometheus_client``'s parser (tests/support/metrics_fixtures.py). The format and the registry
alone: tests/unit/test_metrics_units.py.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable

import httpx
import pytest

from speak_encoder.config import Settings
from speak_encoder.node.models import NewJob, SourceKind
from speak_encoder.service import Service
from speak_encoder.web.app import bind_web_socket, create_web_app, serve_web
from speak_encoder.web.metrics import CONTENT_TYPE, Registry
from tests.support.metrics_fixtures import parse, service, settings

__all__ = ["service", "settings"]  # fixtures used here

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
