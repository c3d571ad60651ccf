"""Load on the Direct API: a burst of concurrent ``POST /encode`` against a running node.

A real ``speak-encoder run`` (Direct API on, intake paused with MEMORY_CRITICAL_MB=1 so the
queue only fills) gets ``--requests`` concurrent submissions: distinct jobs mixed with
duplicates of them (same owner/permlink/input_cid), with a small QUEUE_MAX. Counted:
accepted (a new job id), deduplicated (an id already handed out), refused (429) and anything
else. Then the store is read back: every accepted id is there exactly once, no dedup key twice
— no job lost or doubled. Meanwhile ``GET /health`` is timed every 10 ms (p50/p95/p99/max) and
the node's RSS is read before and after.

Run: ``.venv/bin/python bench/api_load.py [--requests 200] [--distinct 120] [--queue-max 60]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from speak_encoder.config import load_settings  # noqa: E402
from speak_encoder.node.store import JobStore  # noqa: E402
from speak_encoder.storage.cid import CID  # noqa: E402
from speak_encoder.testing.ipfs_node import free_port  # noqa: E402

CLI = [sys.executable, "-m", "speak_encoder"]
API_KEY = "bench-api-key-0123456789abcdef"
RESULTS = ROOT / "bench" / "results" / "api_load.json"
MB = 1_000_000


def fake_cid(n: int) -> str:
    return str(CID.v0(n.to_bytes(32, "big")))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def burst(api: str, bodies: list[dict[str, object]]) -> list[tuple[int, dict[str, object]]]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(body: dict[str, object]) -> tuple[int, dict[str, object]]:
            r = await client.post(f"{api}/encode", json=body, headers={"X-API-Key": API_KEY})
            return r.status_code, r.json()

        return list(await asyncio.gather(*(one(b) for b in bodies)))


async def health_probe(api: str, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=10) as client:
        while not stop.is_set():
            began = time.perf_counter()
            await client.get(f"{api}/health")
            latencies.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(0.01)
    return latencies


async def run_load(
    api: str, bodies: list[dict[str, object]]
) -> tuple[list[tuple[int, dict[str, object]]], list[float]]:
    stop = asyncio.Event()
    probe = asyncio.create_task(health_probe(api, stop))
    await asyncio.sleep(0.2)
    answers = await burst(api, bodies)
    stop.set()
    return answers, await probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--distinct", type=int, default=120)
    parser.add_argument("--queue-max", type=int, default=60)
    args = parser.parse_args(argv)
    rng = random.Random(7)
    distinct = [
        {"owner": f"user{i}", "permlink": f"video-{i}", "input_cid": fake_cid(i + 1),
         "short": False, "webhook_url": "http://127.0.0.1:9/hook", "api_key": "k"}
        for i in range(args.distinct)
    ]  # fmt: skip
    bodies = distinct + [rng.choice(distinct) for _ in range(args.requests - args.distinct)]
    rng.shuffle(bodies)
    with tempfile.TemporaryDirectory(prefix="api-load-") as folder:
        data = Path(folder)
        port = free_port()
        env = {**os.environ, "DATA_DIR": str(data), "DIRECT_API_ENABLED": "true",
               "DIRECT_API_PORT": str(port), "DIRECT_API_KEY": API_KEY,
               "ALLOW_PRIVATE_URLS": "true", "QUEUE_MAX": str(args.queue_max),
               "MEMORY_CRITICAL_MB": "1", "IPFS_API_ADDR": "", "IPFS_GATEWAYS": "",
               "PUBLISH_TARGETS": "", "LOG_LEVEL": "WARNING",
               "DASHBOARD_PORT": str(free_port())}  # fmt: skip
        node = subprocess.Popen([*CLI, "run"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        api = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            time.sleep(1)
            rss_before = psutil.Process(node.pid).memory_info().rss / MB
            began = time.perf_counter()
            answers, health = asyncio.run(run_load(api, bodies))
            burst_s = time.perf_counter() - began
            rss_after = psutil.Process(node.pid).memory_info().rss / MB
        finally:
            node.terminate()
            node.wait(timeout=60)
        store = JobStore.from_settings(load_settings(data_dir=data))
        try:
            jobs = store.list_jobs(limit=10_000)
        finally:
            store.close()
    ids_seen: set[str] = set()
    accepted = deduplicated = refused = other = 0
    for status, body in answers:
        if status == 200:
            job_id = str(body["job_id"])
            if job_id in ids_seen:
                deduplicated += 1
            else:
                ids_seen.add(job_id)
                accepted += 1
        elif status == 429:
            refused += 1
        else:
            other += 1
    stored_ids = {job.id for job in jobs}
    keys = [job.dedup_key for job in jobs]
    results = {
        "requests": len(bodies), "distinct_jobs": args.distinct, "queue_max": args.queue_max,
        "accepted": accepted, "deduplicated": deduplicated, "refused_429": refused,
        "other": other, "stored_jobs": len(jobs),
        "lost": len(ids_seen - stored_ids), "doubled": len(keys) - len(set(keys)),
        "burst_seconds": round(burst_s, 2),
        "health_ms": {"samples": len(health), "p50": round(statistics.median(health), 1),
                      "p95": round(percentile(health, 0.95), 1),
                      "p99": round(percentile(health, 0.99), 1), "max": round(max(health), 1)},
        "node_rss_mb": {"before": round(rss_before, 1), "after": round(rss_after, 1)},
    }  # fmt: skip
    print(json.dumps(results, indent=2))
    print(
        f"{len(bodies)} concurrent POST /encode in {burst_s:.2f} s: {accepted} accepted, "
        f"{deduplicated} deduplicated, {refused} refused (429), {other} other; "
        f"{len(jobs)} jobs stored, {results['lost']} lost, {results['doubled']} doubled"
    )
    print(
        f"/health during the burst: p50 {results['health_ms']['p50']} ms, "  # type: ignore[index]
        f"p95 {results['health_ms']['p95']} ms, p99 {results['health_ms']['p99']} ms; "  # type: ignore[index]
        f"node RSS {rss_before:.1f} → {rss_after:.1f} MB"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["lost"] == 0 and results["doubled"] == 0 and other == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
