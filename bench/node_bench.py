"""Memory of the node service (`speak-encoder run`), measured on real jobs.

1. **Idle RSS**: the node with an empty queue, a few seconds after start (target ≤ 80 MB).
2. **Soak**: ≥ 50 tiny jobs one after another; the node's RSS after each job and the slope of
   a least-squares line through jobs 10…N (target ≈ 0 MB/job: nothing accumulates).
3. **Big source**: a full job (fetch over loopback HTTP → probe → encode → verify → store) on
   a ≥ 2 GB source and on a 200 MB one: peak RSS of the Python process (target ≤ 100 MB and
   flat between the two sizes) and of its ffmpeg.

The big sources are raw 320×240 video in NUT (2 GB ≈ 10 min), so the encode is quick and the
job is dominated by moving bytes — which is what the memory claim is about. They are made in
``.cache/bench`` once and served by the project's HTTP server (``testing.http_faults``) from a
file, one range at a time.

Run: ``.venv/bin/python bench/node_bench.py [--big-mb 2048] [--small-mb 200] [--soak 50]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from speak_encoder.config import load_settings  # noqa: E402
from speak_encoder.node.store import JobStore  # noqa: E402
from speak_encoder.testing.http_faults import FaultServer, FilePayload  # noqa: E402
from speak_encoder.testing.ipfs_node import free_port  # noqa: E402
from speak_encoder.testing.media import generate  # noqa: E402

CLI = [sys.executable, "-m", "speak_encoder"]
MB = 1_000_000
FRAME_BYTES = 320 * 240 * 3 // 2  # yuv420p
RESULTS = ROOT / "bench" / "results" / "node_bench.json"


@dataclass
class Sampler:
    """Peak RSS of one process and of its descendants, sampled every 50 ms."""

    pid: int
    peak_self: int = 0
    peak_children: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)

    def sample(self) -> int:
        proc = psutil.Process(self.pid)
        own = proc.memory_info().rss
        children = 0
        for child in proc.children(recursive=True):
            try:
                children += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        self.peak_self = max(self.peak_self, own)
        self.peak_children = max(self.peak_children, children)
        self.samples.append((time.monotonic(), own))
        return own


class Node:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {
            **os.environ,
            "DATA_DIR": str(folder / "data"),
            "TEMP_DIR": str(folder / "data" / "work"),
            "NODE_NAME": "bench-node",
            "ENCODER_PRESET": "ultrafast",
            "IPFS_API_ADDR": "",
            "IPFS_GATEWAYS": "",
            "PUBLISH_TARGETS": "",
            "DISK_RESERVE_MB": "0",
            "LOG_LEVEL": "WARNING",
            "MAX_SOURCE_MB": "100000",
            "DASHBOARD_PORT": str(free_port()),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def submit(self, source: str) -> str:
        done = subprocess.run([*CLI, "submit", source], env=self.env, capture_output=True,
                              text=True, check=True)  # fmt: skip
        return done.stdout.strip()

    def start(self) -> Sampler:
        self.proc = subprocess.Popen([*CLI, "run"], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        return Sampler(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)

    def states(self, ids: list[str]) -> dict[str, str]:
        settings = load_settings(data_dir=self.folder / "data")
        store = JobStore.from_settings(settings)
        try:
            return {i: (j.state.value if (j := store.get(i)) else "?") for i in ids}
        finally:
            store.close()


def wait_all(node: Node, sampler: Sampler, ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        for _ in range(10):
            sampler.sample()
            time.sleep(0.05)
        states = node.states(ids)
        if all(s in ("complete", "failed", "cancelled") for s in states.values()):
            return states
    raise TimeoutError(f"jobs not finished: {states}")


def idle_rss(tmp: Path) -> float:
    node = Node(tmp / "idle")
    sampler = node.start()
    try:
        time.sleep(6)
        values = []
        for _ in range(30):
            values.append(sampler.sample())
            time.sleep(0.1)
    finally:
        node.stop()
    return max(values) / MB


def soak(tmp: Path, jobs: int) -> dict[str, object]:
    clip = generate("very_short", ROOT / ".cache" / "test-media")
    node = Node(tmp / "soak")
    ids = [node.submit(str(clip)) for _ in range(jobs)]
    sampler = node.start()
    after: list[float] = []
    try:
        done: set[str] = set()
        deadline = time.monotonic() + 30 * jobs
        while len(done) < jobs and time.monotonic() < deadline:
            time.sleep(0.25)
            states = node.states(ids)
            newly = [i for i in ids if states[i] != "queued" and states[i] != "running"
                     and i not in done]  # fmt: skip
            for _ in newly:
                after.append(sampler.sample() / MB)
            done.update(newly)
    finally:
        node.stop()
    tail = after[min(10, len(after) // 2) :]
    slope = _slope(tail)
    return {"jobs": jobs, "completed": len(done), "rss_after_first_mb": round(after[0], 1),
            "rss_after_last_mb": round(after[-1], 1), "rss_max_mb": round(max(after), 1),
            "slope_mb_per_job": round(slope, 4)}  # fmt: skip


def _slope(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    xs = list(range(len(values)))
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(values)
    num = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, values, strict=True))
    den = sum((x - mean_x) ** 2 for x in xs)
    return num / den


def raw_source(megabytes: int) -> Path:
    folder = ROOT / ".cache" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"raw-320x240-{megabytes}MB.nut"
    if path.exists():
        return path
    frames = megabytes * MB // FRAME_BYTES
    partial = path.with_suffix(".partial")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=320x240:rate=30", "-frames:v", str(frames), "-c:v", "rawvideo",
         "-pix_fmt", "yuv420p", "-f", "nut", str(partial)],
        check=True,
    )  # fmt: skip
    partial.replace(path)
    return path


def big_job(tmp: Path, megabytes: int) -> dict[str, object]:
    source = raw_source(megabytes)
    with FaultServer() as server:
        server.add("/source.nut", FilePayload(source))
        node = Node(tmp / f"big-{megabytes}")
        job_id = node.submit(server.url("/source.nut"))
        sampler = node.start()
        started = time.monotonic()
        try:
            states = wait_all(node, sampler, [job_id], timeout=1800)
        finally:
            node.stop()
    return {"source_mb": round(source.stat().st_size / MB), "state": states[job_id],
            "seconds": round(time.monotonic() - started, 1),
            "peak_python_mb": round(sampler.peak_self / MB, 1),
            "peak_ffmpeg_mb": round(sampler.peak_children / MB, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big-mb", type=int, default=2048)
    parser.add_argument("--small-mb", type=int, default=200)
    parser.add_argument("--soak", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="node-bench-") as folder:
        tmp = Path(folder)
        results: dict[str, object] = {"idle_rss_mb": round(idle_rss(tmp), 1)}
        print(f"idle RSS of `speak-encoder run`: {results['idle_rss_mb']} MB (target ≤ 80)")
        results["soak"] = soak(tmp, args.soak)
        print(f"soak: {json.dumps(results['soak'])}")
        small, big = big_job(tmp, args.small_mb), big_job(tmp, args.big_mb)
        results["small"], results["big"] = small, big
    print()
    print(f"{'source':>10} {'state':>9} {'seconds':>8} {'Python peak':>12} {'ffmpeg peak':>12}")
    for row in (small, big):
        print(f"{row['source_mb']:>7} MB {row['state']:>9} {row['seconds']:>8} "
              f"{row['peak_python_mb']:>9} MB {row['peak_ffmpeg_mb']:>9} MB")  # fmt: skip
    growth = float(big["peak_python_mb"]) - float(small["peak_python_mb"])  # type: ignore[arg-type]
    print(f"Python peak growth from {small['source_mb']} MB to {big['source_mb']} MB: "
          f"{growth:+.1f} MB (target: flat, ≤ 100 MB)")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
