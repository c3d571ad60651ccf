"""The validator and the master-playlist writer on long ladders: time per segment, and memory.

A multi-hour source gives a rung of thousands of segments; the six validity checks
(``validate_folder``) and the master-playlist measurement (``write_master_playlist``) read each
segment's head, so their cost must stay linear and small. This builds one-rung ladders of
``--counts`` hard links to one real 2 s segment (made once with ffmpeg: 320×180 x264 + AAC, an
IDR at its start) and prints, per size: wall time of master-playlist writing + validation,
milliseconds per segment, the Python process's peak RSS, and the time ratio against the
smallest size (a linear validator gives ratio ≈ size ratio).

Run: ``.venv/bin/python bench/verify_bench.py [--counts 500,2000,8000]``.
Figures go to ``bench/results/verify_bench.json``. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rss import own_peak_bytes, reset_own_peak  # noqa: E402
from speak_encoder.pipeline.hls import write_master_playlist  # noqa: E402
from speak_encoder.pipeline.verify import format_report, validate_folder  # noqa: E402
from speak_encoder.testing.long_rung import link_rung  # noqa: E402

SEGMENT_SECONDS = 2.0


def make_segment(folder: Path) -> Path:
    """One 2 s HLS segment (the second of a 6 s encode: it starts on a forced IDR)."""
    argv = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "6",
        "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60",
        "-sc_threshold", "0", "-c:a", "aac", "-b:a", "64k",
        "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
        "-hls_segment_filename", str(folder / "seg_%d.ts"), str(folder / "index.m3u8"),
    ]  # fmt: skip
    subprocess.run(argv, check=True, timeout=120)
    return folder / "seg_1.ts"


def measure(segment: Path, count: int, work: Path) -> dict[str, float]:
    folder = work / f"n{count}"
    link_rung(folder, segment, count, SEGMENT_SECONDS)
    reset_own_peak()  # this count's peak, not the highest of the run so far
    started = time.perf_counter()
    asyncio.run(write_master_playlist(folder))
    report = asyncio.run(validate_folder(folder, expected_duration=count * SEGMENT_SECONDS))
    wall = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(format_report(report))
    rss_mb = own_peak_bytes() / 2**20
    return {"segments": count, "wall_s": wall, "ms_per_segment": wall * 1000 / count,
            "peak_rss_mb": rss_mb}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="500,2000,8000")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/verify_bench.json")
    args = parser.parse_args(argv)
    counts = sorted(int(c) for c in args.counts.split(","))
    rows = []
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as tmp:
        work = Path(tmp)
        (work / "seg").mkdir()
        segment = make_segment(work / "seg")
        for count in counts:
            rows.append(measure(segment, count, work))
    base = rows[0]
    print(f"{'segments':>8} {'wall s':>8} {'ms/seg':>7} {'time ratio':>10} {'size ratio':>10} "
          f"{'peak RSS MB':>11}")  # fmt: skip
    for row in rows:
        time_ratio = row["wall_s"] / base["wall_s"]
        size_ratio = row["segments"] / base["segments"]
        print(f"{row['segments']:>8} {row['wall_s']:>8.2f} {row['ms_per_segment']:>7.2f} "
              f"{time_ratio:>10.1f} {size_ratio:>10.1f} {row['peak_rss_mb']:>11.0f}")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
