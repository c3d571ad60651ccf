"""Hostile clients and hostile files (issue 11): what they cost a node now.

**(a) `/health` under a slowloris.** A real ``speak-encoder run`` (Direct API on, both servers
on loopback) under a ``--fd-limit`` (256) descriptor limit. ``GET /health`` of the operator
server and of the Direct API is timed ``--requests`` times, one after another, first with no
other client, then while ``--sockets`` (300) idle sockets are *held*: each sends only the
start of a request (two in three half a head, one in three a head announcing a 60 kB body),
and a holder thread re-opens the sockets the servers closed every ``--reconnect-every``
seconds (1 s, as slowloris tools do), so 300 stay in flight for the whole measurement
(bounded: ``--max-reconnects``). ``--reconnect-every 0`` re-opens each at once: a connection
flood (the 20 000 re-opens then take a few seconds). Printed:
p50/p99/max per phase, the p99 ratio, failed requests, how many sockets the servers closed,
the node's peak file descriptors and how much its log grew.

**(b) ffmpeg on the 16000×16000 rgb48 PNG bomb** (4.5 MB, three frames of 1.5 GB each): the
peak RSS of the whole ``speak-encoder encode`` process tree (Python + ffprobe/ffmpeg) and the
time to its refusal — for the bomb (refused on the probe) and for its variant whose first
frame is 64×64 (refused by ffmpeg's ``-max_pixels`` mid-stream) — next to plain
``ffmpeg -i bomb.mkv -frames:v 1 -f null -`` (what decoding it costs, unguarded; skip with
``--no-unguarded``).

Run: ``.venv/bin/python bench/security_bench.py [--sockets 300] [--requests 300]``.
Figures go to ``bench/results/security_bench.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rss import measure  # noqa: E402
from speak_encoder.testing.hostile import growing_png_mkv, png_bomb_mkv  # noqa: E402
from speak_encoder.testing.ipfs_node import free_port  # noqa: E402

CLI = [sys.executable, "-m", "speak_encoder"]
RESULTS = ROOT / "bench" / "results" / "security_bench.json"
CACHE = ROOT / ".cache" / "test-media" / "hostile"
API_KEY = "bench-security-key-0123456789"
MB = 1_000_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- (a) slowloris -----------------------------------------------------------------------------


@dataclass
class Holder:
    """Keeps ``count`` half-sent requests open against ``ports``, re-opening closed ones."""

    ports: list[int]
    count: int
    max_reconnects: int
    closed_by_server: int = 0
    reconnects: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    _socks: dict[int, tuple[socket.socket, int]] = field(default_factory=dict)

    def _open(self, i: int) -> None:
        sock = socket.create_connection(("127.0.0.1", self.ports[i % len(self.ports)]), timeout=10)
        if i % 3 == 2:
            sock.sendall(b"POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 60000\r\n\r\n{")  # fmt: skip
        else:
            sock.sendall(b"POST /encode HTTP/1.1\r\nHost: x\r\n")
        self._socks[sock.fileno()] = (sock, i)

    def fill(self) -> None:
        for i in range(self.count):
            self._open(i)

    def run(self, every: float) -> None:
        lost: list[int] = []
        next_round = time.monotonic() + every
        while not self.stop.is_set():
            ready, _, _ = select.select([s for s, _ in self._socks.values()], [], [], 0.05)
            for sock in ready:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    continue  # an answer (503/400): the close follows
                _, i = self._socks.pop(sock.fileno())
                sock.close()
                self.closed_by_server += 1
                lost.append(i)
            if lost and time.monotonic() >= next_round:
                next_round = time.monotonic() + every
                for i in lost:
                    if self.reconnects >= self.max_reconnects or self.stop.is_set():
                        break
                    self.reconnects += 1
                    with contextlib.suppress(OSError):
                        self._open(i)
                lost = []

    def close(self) -> None:
        """Close every socket (after :meth:`run` returned)."""
        for sock, _ in self._socks.values():
            sock.close()
        self._socks.clear()


#: Why /health requests failed, by kind (filled by time_health).
FAILURES: dict[str, int] = {}


def time_health(urls: list[str], requests: int) -> tuple[list[float], int]:
    """Time ``requests`` GETs of /health, alternating ``urls``, over keep-alive connections
    (a client the servers answered before: the harder case for eviction)."""
    times: list[float] = []
    failed = 0
    with httpx.Client(timeout=10) as client:
        for i in range(requests):
            url = urls[i % len(urls)]
            started = time.monotonic()
            try:
                status = client.get(f"{url}/health").status_code
                why = None if status == 200 else f"HTTP {status}"
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            times.append((time.monotonic() - started) * 1000)
            if why is not None:
                failed += 1
                FAILURES[why] = FAILURES.get(why, 0) + 1
    return times, failed


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def slowloris(args: argparse.Namespace, work: Path) -> dict[str, object]:
    api_port, web_port = free_port(), free_port()
    env = dict(os.environ)
    env.update({
        "DATA_DIR": str(work / "data"), "TEMP_DIR": str(work / "data" / "work"),
        "IPFS_API_ADDR": "", "IPFS_GATEWAYS": "", "PUBLISH_TARGETS": "", "DISK_RESERVE_MB": "0",
        "HARDWARE_ACCELERATION": "false", "DASHBOARD_PORT": str(web_port),
        "DIRECT_API_ENABLED": "true", "DIRECT_API_PORT": str(api_port), "DIRECT_API_KEY": API_KEY,
        "SPEAK_ENCODER_ENV_FILE": "", "LOG_LEVEL": "INFO",
    })  # fmt: skip
    limit = args.fd_limit

    def lowered() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    log_path = work / "node.log"
    with log_path.open("wb") as log:
        node = subprocess.Popen([*CLI, "run"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=lowered)  # fmt: skip
    urls = [f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{api_port}"]
    try:
        deadline = time.monotonic() + 60
        while time_health(urls, 2)[1] and time.monotonic() < deadline:
            time.sleep(0.2)
        FAILURES.clear()  # the start-up wait's refused connections are not failures
        quiet, quiet_failed = time_health(urls, args.requests)
        log_before = log_path.stat().st_size
        holder = Holder([web_port, api_port], args.sockets, args.max_reconnects)
        holder.fill()
        thread = threading.Thread(target=holder.run, args=(args.reconnect_every,), daemon=True)
        thread.start()
        peak_fds = 0
        fds_stop = threading.Event()

        def watch_fds() -> None:
            nonlocal peak_fds
            while not fds_stop.is_set():
                peak_fds = max(peak_fds, _fd_count(node.pid))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch_fds, daemon=True)
        watcher.start()
        try:
            attacked, attacked_failed = time_health(urls, args.requests)
        finally:
            holder.stop.set()
            thread.join(10)
            holder.close()
            fds_stop.set()
            watcher.join(5)
        alive = node.poll() is None
        log_growth = log_path.stat().st_size - log_before
    finally:
        node.terminate()
        try:
            node.wait(60)
        except subprocess.TimeoutExpired:
            node.kill()
    return {
        "fd_limit": limit,
        "sockets": args.sockets,
        "reconnect_every_s": args.reconnect_every,
        "requests": args.requests,
        "quiet_ms": _summary(quiet),
        "attacked_ms": _summary(attacked),
        "p99_ratio": round(percentile(attacked, 0.99) / max(percentile(quiet, 0.99), 1e-6), 2),
        "quiet_failed": quiet_failed,
        "attacked_failed": attacked_failed,
        "closed_by_server": holder.closed_by_server,
        "reconnects": holder.reconnects,
        "node_peak_fds": peak_fds,
        "node_alive": alive,
        "log_growth_bytes": log_growth,
        "failures": dict(FAILURES),
    }


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(times), 2),
        "p99": round(percentile(times, 0.99), 2),
        "max": round(max(times), 2),
    }


# --- (b) decompression bomb ----------------------------------------------------------------


def bombs(args: argparse.Namespace, work: Path) -> dict[str, object]:
    env = dict(os.environ)
    env.update({
        "DATA_DIR": str(work / "data"), "TEMP_DIR": str(work / "data" / "work"),
        "IPFS_API_ADDR": "", "IPFS_GATEWAYS": "", "PUBLISH_TARGETS": "", "DISK_RESERVE_MB": "0",
        "HARDWARE_ACCELERATION": "false", "SPEAK_ENCODER_ENV_FILE": "",
    })  # fmt: skip
    figures: dict[str, object] = {}
    cases = {"bomb": png_bomb_mkv(CACHE), "growing": growing_png_mkv(CACHE)}
    for name, source in cases.items():
        run = measure([*CLI, "encode", str(source), "--out", str(work / f"out-{name}"), "--json"],
                      env=env, timeout=600)  # fmt: skip
        try:
            error = json.loads(run.stdout.decode()).get("error", "")
        except ValueError:
            error = run.stderr.decode()[-200:]
        figures[name] = {
            "size_mb": round(source.stat().st_size / MB, 1),
            "returncode": run.returncode,
            "seconds": round(run.wall_seconds, 2),
            "peak_total_mb": round(run.peak_total_mb, 1),
            "peak_ffmpeg_ffprobe_mb": round(run.peak_children_mb, 1),
            "error": error[:160],
        }
    if args.unguarded:
        bare = measure(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i",
                        str(cases["bomb"]), "-frames:v", "1", "-f", "null", "-"],
                       timeout=900)  # fmt: skip
        figures["unguarded_ffmpeg"] = {
            "returncode": bare.returncode,
            "seconds": round(bare.wall_seconds, 2),
            "peak_total_mb": round(bare.peak_total_mb, 1),
        }
        guarded = figures["bomb"]["peak_total_mb"]  # type: ignore[index]
        figures["unguarded_over_guarded_rss"] = round(bare.peak_total_mb / max(guarded, 1), 1)
    return figures


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=300)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--fd-limit", type=int, default=256)
    parser.add_argument("--max-reconnects", type=int, default=20_000)
    parser.add_argument("--reconnect-every", type=float, default=1.0)
    parser.add_argument("--no-unguarded", dest="unguarded", action="store_false")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.sockets + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.sockets + 256), hard))
    with tempfile.TemporaryDirectory(prefix="speak-security-bench-") as tmp:
        work = Path(tmp)
        (work / "a").mkdir()
        (work / "b").mkdir()
        loris = slowloris(args, work / "a")
        bomb = bombs(args, work / "b")
    results = {"slowloris": loris, "bombs": bomb, "cpus": psutil.cpu_count()}
    print_tables(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if loris["node_alive"] else 1


def print_tables(results: dict[str, object]) -> None:
    loris = results["slowloris"]
    assert isinstance(loris, dict)
    print(f"\n(a) /health, {loris['requests']} requests per phase, node under a "
          f"{loris['fd_limit']}-fd limit")  # fmt: skip
    print(f"{'phase':<34}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'failed':>8}")
    for label, key, failed in (("quiet", "quiet_ms", "quiet_failed"),
                               (f"{loris['sockets']} idle sockets held", "attacked_ms",
                                "attacked_failed")):  # fmt: skip
        row = loris[key]
        print(f"{label:<34}{row['p50']:>9.1f}{row['p99']:>9.1f}{row['max']:>9.1f}"
              f"{loris[failed]:>8}")  # fmt: skip
    print(
        f"p99 ratio (held / quiet): {loris['p99_ratio']}x; sockets closed by the servers: "
        f"{loris['closed_by_server']} (re-opened {loris['reconnects']}); node peak fds "
        f"{loris['node_peak_fds']}; log grew {loris['log_growth_bytes'] / 1000:.1f} kB"
    )
    bomb = results["bombs"]
    assert isinstance(bomb, dict)
    print("\n(b) 16000×16000 rgb48 PNG in Matroska (3 frames, 1.5 GB each decoded)")
    print(f"{'case':<44}{'seconds':>9}{'peak RSS MB':>13}  outcome")
    for label, key in (("speak-encoder encode: bomb", "bomb"),
                       ("speak-encoder encode: 64×64 first frame", "growing"),
                       ("plain ffmpeg decode of one frame", "unguarded_ffmpeg")):  # fmt: skip
        row = bomb.get(key)
        if not isinstance(row, dict):
            continue
        outcome = row.get("error") or f"exit {row['returncode']}"
        print(f"{label:<44}{row['seconds']:>9.2f}{row['peak_total_mb']:>13.1f}  {outcome}")
    if "unguarded_over_guarded_rss" in bomb:
        print(f"unguarded / guarded peak RSS: {bomb['unguarded_over_guarded_rss']}x")


if __name__ == "__main__":
    sys.exit(main())
