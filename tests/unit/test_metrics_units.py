"""Prometheus exposition (web.metrics) and readiness, without a server: the text format read back
by ``prometheus_client``'s parser, the registry's histograms and counters, an idle node's scrape
in a fresh process (over ASGI, no socket). Over real HTTP: tests/integration/test_metrics.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from speak_encoder.service import Service
from speak_encoder.web.app import readiness
from speak_encoder.web.metrics import (
    Family,
    Registry,
    escape_label_value,
    format_value,
    render,
)
from tests.support.metrics_fixtures import parse, service, settings

__all__ = ["service", "settings"]  # fixtures used here

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
