"""Encode benchmark: the one-decode ladder against the per-rung baseline and bare ffmpeg.

On one generated 1080p30 source (``--seconds``, default 20) with the same libx264 preset/CRF
everywhere (default ``medium``, CRF 19), in one go:

* **(a) pipeline** — ``speak-encoder encode SRC --out DIR --json`` as a subprocess: fetch,
  probe, plan, ONE ffmpeg (decode once, ``split``, a scaler and an encoder per rung),
  master-playlist rewrite, the six validity checks. RSS of the Python process and of its
  ffmpeg child are sampled separately (``bench/rss.py``).
* **(b) per-rung baseline** — what the existing Node.js encoder does: three sequential
  ffmpeg runs (1080p, 720p, 480p), each decoding the source itself, ``-vf scale=-2:H``,
  capped CRF with the ladder's ``-maxrate/-bufsize``, AAC, HLS output, same GOP and
  ``hls_time`` as ours. Wall time is the sum of the three; peak RSS the largest run's.
* **(c) bare ffmpeg** — the exact command (a) runs, from ``build_command`` with the same plan
  (probe + ``plan_encode`` + ``tuning_from(settings)``), run directly: (a)/(c) is the cost of
  everything Python adds around ffmpeg.

Then (a) again under tuning variants (environment variables ``X264_THREADS``,
``X264_RC_LOOKAHEAD``) to show the speed–memory trade-off, and — when the ``imageio-ffmpeg``
package is installed or ``--alt-ffmpeg PATH`` is given — (a)/(b) with that ffmpeg binary
(Debian's ffprobe stays in use: imageio-ffmpeg ships no ffprobe).

The x264 settings each encoder really used (``threads``, ``lookahead_threads``,
``rc_lookahead``) are read back from the x264 SEI in the first segment of each rung.

Source: ``testsrc2`` (moving counters, colour bars, a sweeping gradient) with a
``mandelbrot`` zoom (fine detail that changes every frame) overlaid on a moving 960×540
window, light temporal noise (camera grain) and a 440 Hz tone; stored as
libx264 ``veryfast`` CRF 18 (~13 Mb/s). ``testsrc2`` alone compresses to almost nothing,
``mandelbrot`` alone barely moves; this mix makes every rung hit its VBV cap at CRF 19,
like busy real footage, and takes ~25 s to generate (cached in ``.cache/bench/``).

Targets (issue 2): a/b ≤ 0.80; a/c ≤ 1.03; Python RSS ≤ 100 MB; peak RSS of Python + ffmpeg
in (a) ≤ the per-rung baseline's peak. Timings are printed, never asserted: the exit code is
0 unless something failed to run. Results also go to ``bench/results/encode_ladder.json``.

Run: ``.venv/bin/python bench/encode_ladder.py [--seconds 20] [--preset medium]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rss import RssRun, measure
from speak_encoder.config import Settings, load_settings
from speak_encoder.pipeline.encode_job import tuning_from
from speak_encoder.pipeline.ffmpeg import EncoderTuning, build_command
from speak_encoder.pipeline.ffmpeg_run import ffmpeg_info
from speak_encoder.pipeline.ladder import load_ladder
from speak_encoder.pipeline.plan import EncodeOptions, EncodePlan, plan_encode
from speak_encoder.pipeline.probe import probe

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
RESULTS = ROOT / "bench" / "results" / "encode_ladder.json"

#: Targets of issue 2 (printed as ok/MISS, never asserted).
TARGET_A_OVER_B = 0.80
TARGET_A_OVER_C = 1.03
TARGET_PYTHON_MB = 100.0

#: Tuning variants of (a): name → Settings fields, passed as environment variables. Both knobs
#: are explicit so a variant means the same thing whatever the configured defaults are:
#: "t2" = X264_THREADS=2 (0 = x264's choice, 1.5 × CPUs), "la20" = X264_RC_LOOKAHEAD=20
#: (40 is the ``medium`` preset's own value). "default" is (a) itself: the config defaults.
VARIANTS: dict[str, dict[str, int]] = {
    "t2": {"x264_threads": 2, "x264_rc_lookahead": 40},
    "la20": {"x264_threads": 0, "x264_rc_lookahead": 20},
    "t2+la20": {"x264_threads": 2, "x264_rc_lookahead": 20},
    "t2+la15": {"x264_threads": 2, "x264_rc_lookahead": 15},
    "t2+la10": {"x264_threads": 2, "x264_rc_lookahead": 10},
    "la10": {"x264_threads": 0, "x264_rc_lookahead": 10},
    "t0+la40": {"x264_threads": 0, "x264_rc_lookahead": 40},
}
#: (a) runs with the config defaults (X264_THREADS=2, X264_RC_LOOKAHEAD=10, chosen from these
#: measurements); "t0+la40" is x264's own choice (the defaults before that).
DEFAULT_VARIANTS = "t0+la40,t2,la20,t2+la15"

#: The generated source (see the module doc): video graph and audio, lavfi syntax.
SOURCE_GRAPH = (
    "mandelbrot=size=960x540:rate=30[m];"
    "testsrc2=size=1920x1080:rate=30[t];"
    "[t][m]overlay=x='mod(t*240,960)':y='270+200*sin(t)',noise=alls=2:allf=t+u[out0];"
    "sine=frequency=440:sample_rate=48000,volume=0.5[out1]"
)
SOURCE_CODEC = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
SOURCE_AUDIO = ["-c:a", "aac", "-b:a", "128k"]

_X264_SEI = re.compile(rb"x264 - core (\d+)[^\x00]*? options: ([^\x00]+)")


# --- source ------------------------------------------------------------------------------


def make_source(seconds: float, ffmpeg: str) -> tuple[Path, float]:
    """The cached benchmark source (generated on first use); returns (path, seconds spent)."""
    recipe = repr((SOURCE_GRAPH, SOURCE_CODEC, SOURCE_AUDIO, seconds))
    key = hashlib.sha256(recipe.encode()).hexdigest()[:10]
    path = CACHE / f"ladder-source-{seconds:g}s-{key}.mp4"
    if path.exists():
        return path, 0.0
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", SOURCE_GRAPH, "-t", f"{seconds:g}"]
    argv += [*SOURCE_CODEC, *SOURCE_AUDIO, "-movflags", "+faststart", "-f", "mp4", str(partial)]
    print(f"generating the {seconds:g} s 1080p30 source (cached in {CACHE}) …", flush=True)
    started = time.monotonic()
    try:
        subprocess.run(argv, check=True, timeout=900)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path, time.monotonic() - started


# --- the three contenders ---------------------------------------------------------------


def settings_for(ffmpeg: str, ffprobe: str, preset: str, crf: int, **fields: Any) -> Settings:
    """Settings as the CLI builds them: environment, then these values (no env file)."""
    return load_settings(
        env_file="",
        ffmpeg_path=ffmpeg,
        ffprobe_path=ffprobe,
        encoder_preset=preset,
        encoder_crf=crf,
        **fields,
    )


def baseline_commands(
    plan: EncodePlan, source: Path, out_dir: Path, ffmpeg: str, preset: str, crf: int
) -> list[tuple[str, list[str]]]:
    """(b): one ffmpeg per rung, as the Node.js encoder runs them (each decodes the source)."""
    gop = str(plan.gop_frames)
    commands = []
    for rung in plan.renditions:
        spec = rung.spec
        folder = out_dir / rung.name
        folder.mkdir(parents=True, exist_ok=True)
        argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats", "-y"]
        argv += ["-i", str(source), "-vf", f"scale=-2:{rung.height}"]
        argv += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf)]
        argv += ["-maxrate", f"{spec.max_kbps}k", "-bufsize", f"{spec.buffer_kbps}k"]
        argv += ["-profile:v", spec.profile, "-level", spec.level, "-pix_fmt", "yuv420p"]
        argv += ["-g", gop, "-keyint_min", gop, "-sc_threshold", "0"]
        argv += ["-c:a", "aac", "-b:a", f"{spec.audio_kbps}k", "-ac", "2", "-ar", "48000"]
        argv += [
            "-f", "hls",
            "-hls_time", str(plan.segment_seconds),
            "-hls_playlist_type", "vod",
            "-hls_list_size", "0",
            "-hls_segment_filename", str(folder / f"{rung.name}_%d.ts"),
            str(folder / "index.m3u8"),
        ]  # fmt: skip
        commands.append((rung.name, argv))
    return commands


def x264_options(folder: Path, ffmpeg: str) -> dict[str, dict[str, str]]:
    """Per rung folder: the x264 options written in the SEI of its first segment."""
    found: dict[str, dict[str, str]] = {}

    def height(path: Path) -> int:
        digits = re.match(r"\d+", path.name)
        return -int(digits.group()) if digits else 0

    for rung_dir in sorted((p for p in folder.iterdir() if p.is_dir()), key=height):
        segments = sorted(rung_dir.glob("*.ts"), key=lambda p: (len(p.name), p.name))
        if not segments:
            continue
        argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(segments[0])]
        argv += ["-map", "0:v:0", "-c", "copy", "-frames:v", "1", "-f", "h264", "-"]
        raw = subprocess.run(argv, capture_output=True, timeout=60).stdout
        match = _X264_SEI.search(raw)
        if match is None:
            continue
        options = dict(
            item.split("=", 1) for item in match.group(2).decode("ascii", "replace").split()
        )
        keep = ("threads", "lookahead_threads", "sliced_threads", "rc_lookahead", "bframes")
        found[rung_dir.name] = {k: options[k] for k in keep if k in options}
    return found


# --- runs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PipelineRun:
    """(a): one ``speak-encoder encode`` subprocess."""

    name: str
    env: dict[str, str]
    tuning: EncoderTuning
    run: RssRun
    result: dict[str, Any] | None
    x264: dict[str, dict[str, str]]

    @property
    def ffmpeg_peak_bytes(self) -> int:
        return self.run.peak_largest_child_bytes


@dataclass(frozen=True, slots=True)
class BaselineRun:
    """(b): the three per-rung ffmpeg runs."""

    runs: list[tuple[str, RssRun]]
    x264: dict[str, dict[str, str]]

    @property
    def wall_seconds(self) -> float:
        return sum(r.wall_seconds for _, r in self.runs)

    @property
    def cpu_seconds(self) -> float:
        return sum(r.cpu_seconds for _, r in self.runs)

    @property
    def other_load(self) -> float:
        capacity = sum(r.wall_seconds for _, r in self.runs) * (os.cpu_count() or 1)
        other = sum(r.other_cpu_seconds for _, r in self.runs)
        return min(1.0, other / capacity) if capacity > 0 else 0.0

    @property
    def peak_bytes(self) -> int:
        return max((r.peak_total_bytes for _, r in self.runs), default=0)

    @property
    def ok(self) -> bool:
        return all(r.ok for _, r in self.runs)


@dataclass(frozen=True, slots=True)
class Context:
    source: Path
    plan: EncodePlan
    work: Path
    ffmpeg: str
    ffprobe: str
    preset: str
    crf: int
    failures: list[str]


def run_pipeline(ctx: Context, name: str, fields: dict[str, int], ffmpeg: str = "") -> PipelineRun:
    """(a) with the settings ``fields`` set as environment variables (``x264_threads=2`` →
    ``X264_THREADS=2``)."""
    ffmpeg = ffmpeg or ctx.ffmpeg
    out = ctx.work / f"a-{name}"
    overrides = {key.upper(): str(value) for key, value in fields.items()}
    env = {**os.environ, **overrides, "FFMPEG_PATH": ffmpeg, "FFPROBE_PATH": ctx.ffprobe}
    env["TEMP_DIR"] = str(ctx.work / "jobs")  # same filesystem as --out: the move is a rename
    tuning = tuning_from(settings_for(ffmpeg, ctx.ffprobe, ctx.preset, ctx.crf, **fields))
    cli = str(Path(sys.executable).with_name("speak-encoder"))
    argv = [cli, "encode", str(ctx.source), "--out", str(out), "--json"]
    argv += ["--preset", ctx.preset, "--crf", str(ctx.crf)]
    print(f"  (a) speak-encoder encode [{name}] …", end="", flush=True)
    run = measure(argv, env=env, cwd=ctx.work)  # cwd: no stray .env file is read
    _done(run)
    result = None
    if run.ok:
        try:
            result = json.loads(run.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = None
    else:
        ctx.failures.append(_failure(f"(a) [{name}]", run))
    x264 = x264_options(out, ffmpeg) if run.ok else {}
    shutil.rmtree(out, ignore_errors=True)
    return PipelineRun(name, overrides, tuning, run, result, x264)


def run_baseline(ctx: Context, ffmpeg: str = "") -> BaselineRun:
    ffmpeg = ffmpeg or ctx.ffmpeg
    out = ctx.work / "b"
    runs = []
    for rung, argv in baseline_commands(ctx.plan, ctx.source, out, ffmpeg, ctx.preset, ctx.crf):
        print(f"  (b) per-rung {rung} …", end="", flush=True)
        run = measure(argv)
        _done(run)
        runs.append((rung, run))
        if not run.ok:
            ctx.failures.append(_failure(f"(b) {rung}", run))
    x264 = x264_options(out, ffmpeg)
    shutil.rmtree(out, ignore_errors=True)
    return BaselineRun(runs, x264)


def run_bare(ctx: Context, argv: list[str], out: Path) -> tuple[RssRun, dict[str, dict[str, str]]]:
    out.mkdir(parents=True, exist_ok=True)
    print("  (c) bare ffmpeg …", end="", flush=True)
    run = measure(argv)
    _done(run)
    if not run.ok:
        ctx.failures.append(_failure("(c) bare ffmpeg", run))
    x264 = x264_options(out, ctx.ffmpeg)
    shutil.rmtree(out, ignore_errors=True)
    return run, x264


def _done(run: RssRun) -> None:
    busy = (
        f", other processes used {run.other_load:.0%} of the CPUs" if run.other_load > 0.05 else ""
    )
    print(f" {run.wall_seconds:.1f} s{busy}", flush=True)


# --- report ------------------------------------------------------------------------------


def _mb(value: float) -> str:
    return f"{value / 1_000_000:.0f} MB"


def _ok(good: bool) -> str:
    return "ok" if good else "MISS"


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _x264_text(x264: dict[str, dict[str, str]]) -> str:
    parts = []
    for rung, options in x264.items():
        parts.append(
            f"{rung} threads={options.get('threads', '?')} "
            f"lookahead_threads={options.get('lookahead_threads', '?')} "
            f"rc_lookahead={options.get('rc_lookahead', '?')}"
        )
    return "; ".join(parts) or "?"


def _run_json(run: RssRun) -> dict[str, Any]:
    return {
        "returncode": run.returncode,
        "wall_seconds": round(run.wall_seconds, 2),
        "cpu_seconds": round(run.cpu_seconds, 2),
        "other_load": round(run.other_load, 3),
        "peak_self_mb": round(run.peak_self_mb, 1),
        "peak_children_mb": round(run.peak_children_mb, 1),
        "peak_largest_child_mb": round(run.peak_largest_child_mb, 1),
        "peak_total_mb": round(run.peak_total_mb, 1),
        "samples": run.samples,
    }


def _failure(label: str, run: RssRun) -> str:
    tail = run.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
    return f"{label} failed (exit {run.returncode}): " + " | ".join(tail)


def _walls(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def _row(label: str, wall: float, cpu: float, other: float, py: str, ff: str, total: str) -> str:
    return f"{label:<32}{wall:>7.1f}s{cpu:>7.1f}s{other:>7.0%}{py:>9}{ff:>9}{total:>9}"


# --- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0, help="source length (≥ 20)")
    parser.add_argument("--preset", default="medium", help="libx264 preset for every run")
    parser.add_argument("--crf", type=int, default=19, help="libx264 CRF for every run")
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="rounds of (a), (b), (c), interleaved; the fastest round of each counts",
    )
    parser.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help=f"comma list of extra (a) tunings, or 'none' (known: {', '.join(VARIANTS)})",
    )
    parser.add_argument(
        "--alt-ffmpeg",
        default="auto",
        help="second ffmpeg binary for an (a)/(b) comparison: a path, 'auto' (imageio-ffmpeg "
        "if installed) or 'none'",
    )
    parser.add_argument(
        "--source", type=Path, help="benchmark this video file instead of the generated one"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    return parser.parse_args(argv)


def alt_ffmpeg(choice: str) -> str | None:
    """The ffmpeg a ``--*-ffmpeg`` option names: ``none``, a path, or ``auto`` (the static
    build of imageio-ffmpeg, with libvmaf, if installed)."""
    if choice == "none":
        return None
    if choice != "auto":
        return choice
    try:
        import imageio_ffmpeg  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variant_names = [v for v in args.variants.split(",") if v and v not in ("none", "default")]
    unknown = [v for v in variant_names if v not in VARIANTS]
    if unknown:
        print(f"unknown variant(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    ffmpeg = os.environ.get("FFMPEG_PATH", "ffmpeg")
    ffprobe = os.environ.get("FFPROBE_PATH", "ffprobe")
    bench_started = time.monotonic()

    if args.source is not None:
        source, generated_in = args.source.resolve(), 0.0
    else:
        source, generated_in = make_source(args.seconds, ffmpeg)
    info = asyncio.run(probe(source, ffprobe=ffprobe))
    ffinfo = asyncio.run(ffmpeg_info(ffmpeg))
    # Tuning variables already in the environment (X264_THREADS, …) apply to every run.
    settings = settings_for(ffmpeg, ffprobe, args.preset, args.crf)
    plan = plan_encode(info, EncodeOptions(), load_ladder(settings.ladder_file))
    cpus = os.cpu_count() or 1
    print(
        f"source {source.name}: {info.video.width}x{info.video.height} "
        f"{float(info.video.fps):g} fps, {info.duration:.1f} s, {info.size / 1e6:.1f} MB; "
        f"rungs {', '.join(plan.names)}; ffmpeg {ffinfo.version}; {cpus} CPUs",
        flush=True,
    )

    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="encode-ladder-", dir=CACHE))
    ctx = Context(source, plan, work, ffmpeg, ffprobe, args.preset, args.crf, [])
    c_out = work / "c"
    c_cmd = build_command(
        plan, source, c_out, tuning_from(settings), tonemap_available=ffinfo.has_zscale
    )
    a_runs: list[PipelineRun] = []
    b_runs: list[BaselineRun] = []
    c_runs: list[tuple[RssRun, dict[str, dict[str, str]]]] = []
    variants: list[PipelineRun] = []
    alt: dict[str, Any] | None = None
    try:
        for round_no in range(1, max(1, args.repeat) + 1):
            print(f"round {round_no}:", flush=True)
            a_runs.append(run_pipeline(ctx, "default", {}))
            b_runs.append(run_baseline(ctx))
            c_runs.append(run_bare(ctx, c_cmd, c_out))
        if variant_names:
            print("tuning variants of (a):", flush=True)
        for name in variant_names:
            variants.append(run_pipeline(ctx, name, VARIANTS[name]))
        alt_path = alt_ffmpeg(args.alt_ffmpeg)
        if alt_path is not None:
            alt = run_alt(ctx, alt_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total_seconds = time.monotonic() - bench_started

    # Fastest round of each (least disturbed); memory: the highest peak seen in any round.
    a = min(a_runs, key=lambda r: r.run.wall_seconds)
    b = min(b_runs, key=lambda r: r.wall_seconds)
    c, c_x264 = min(c_runs, key=lambda r: r[0].wall_seconds)
    python_peak = max(r.run.peak_self_bytes for r in a_runs)
    a_ffmpeg_peak = max(r.ffmpeg_peak_bytes for r in a_runs)
    a_total_peak = max(r.run.peak_total_bytes for r in a_runs)
    b_peak = max(r.peak_bytes for r in b_runs)
    c_peak = max(r.peak_total_bytes for r, _ in c_runs)
    a_over_b = _ratio(a.run.wall_seconds, b.wall_seconds)
    a_over_c = _ratio(a.run.wall_seconds, c.wall_seconds)
    targets = {
        "a_over_b<=0.80": a_over_b is not None and a_over_b <= TARGET_A_OVER_B,
        "a_over_c<=1.03": a_over_c is not None and a_over_c <= TARGET_A_OVER_C,
        "python_rss<=100MB": python_peak / 1e6 <= TARGET_PYTHON_MB,
        "a_total_rss<=b_peak": a_total_peak <= b_peak,
    }

    # --- print ---
    print()
    print(
        f"Encode ladder — {source.name} ({info.duration:.0f} s), libx264 {args.preset} CRF "
        f"{args.crf}, ffmpeg {ffinfo.version}, {cpus} CPUs, fastest of {len(a_runs)} round(s)"
    )
    print(f"{'run':<32}{'wall':>8}{'CPU':>8}{'other':>7}{'python':>9}{'ffmpeg':>9}{'total':>9}")
    print("-" * 82)
    print(
        _row(
            "(a) speak-encoder encode",
            a.run.wall_seconds,
            a.run.cpu_seconds,
            a.run.other_load,
            _mb(python_peak),
            _mb(a_ffmpeg_peak),
            _mb(a_total_peak),
        )
    )
    for rung, run in b.runs:
        peak = _mb(run.peak_total_bytes)
        print(
            _row(
                f"(b) per-rung {rung}",
                run.wall_seconds,
                run.cpu_seconds,
                run.other_load,
                "",
                peak,
                peak,
            )
        )
    print(_row("(b) per-rung: sum / largest", b.wall_seconds, b.cpu_seconds, b.other_load,
               "", _mb(b_peak), _mb(b_peak)))  # fmt: skip
    print(_row("(c) bare ffmpeg, same command", c.wall_seconds, c.cpu_seconds, c.other_load,
               "", _mb(c_peak), _mb(c_peak)))  # fmt: skip
    print(
        "CPU = user+system seconds of the process tree; other = share of the CPUs used by "
        "other processes meanwhile (wall times are only comparable when it is ~0); "
        "RSS peaks sampled every 50 ms, highest of all rounds."
    )
    a_walls = _walls([r.run.wall_seconds for r in a_runs])
    b_walls = _walls([r.wall_seconds for r in b_runs])
    c_walls = _walls([r.wall_seconds for r, _ in c_runs])
    print(f"all rounds (wall s): a {a_walls}; b {b_walls}; c {c_walls}")
    print()
    met_b, met_c = targets["a_over_b<=0.80"], targets["a_over_c<=1.03"]
    print(f"a/b = {_fmt_ratio(a_over_b)}  (target ≤ {TARGET_A_OVER_B:.2f})  {_ok(met_b)}")
    print(f"a/c = {_fmt_ratio(a_over_c)}  (target ≤ {TARGET_A_OVER_C:.2f})  {_ok(met_c)}")
    print(
        f"Python RSS {_mb(python_peak)} (target ≤ {TARGET_PYTHON_MB:.0f} MB)  "
        f"{_ok(targets['python_rss<=100MB'])}"
    )
    print(
        f"Python + ffmpeg (a) {_mb(a_total_peak)} vs per-rung peak {_mb(b_peak)}  "
        f"{_ok(targets['a_total_rss<=b_peak'])}"
    )
    print()
    print("x264 settings read back from the bitstream (SEI of each rung's first segment):")
    print(f"  (a) {_x264_text(a.x264)}")
    print(f"  (b) {_x264_text(b.x264)}")
    print(f"  (c) {_x264_text(c_x264)}")

    print()
    print("Speed–memory trade-off of (a), tuned with environment variables (one run each):")
    print(
        f"{'variant':<9}{'env':<38}{'wall':>7}{'other':>7}{'a/b':>6}{'ffmpeg':>8}{'total':>8}  both"
    )
    variant_rows = []
    for v in [a, *variants]:
        ratio = _ratio(v.run.wall_seconds, b.wall_seconds)
        total = a_total_peak if v is a else v.run.peak_total_bytes
        ff_peak = a_ffmpeg_peak if v is a else v.ffmpeg_peak_bytes
        meets = bool(
            v.run.ok and ratio is not None and ratio <= TARGET_A_OVER_B and total <= b_peak
        )
        env_text = " ".join(f"{k}={val}" for k, val in v.env.items()) or "(defaults)"
        print(
            f"{v.name:<9}{env_text:<38}{v.run.wall_seconds:>6.1f}s{v.run.other_load:>7.0%}"
            f"{_fmt_ratio(ratio):>6}{_mb(ff_peak):>8}{_mb(total):>8}  {'yes' if meets else '-'}"
        )
        variant_rows.append(
            {
                "name": v.name,
                "env": v.env,
                "tuning": {
                    "filter_threads": v.tuning.filter_threads,
                    "x264_threads": v.tuning.x264_threads,
                    "rc_lookahead": v.tuning.rc_lookahead,
                },
                "a_over_b": None if ratio is None else round(ratio, 3),
                "ffmpeg_peak_mb": round(ff_peak / 1e6, 1),
                "total_peak_mb": round(total / 1e6, 1),
                "meets_speed_and_memory": meets,
                "x264": v.x264,
                "run": _run_json(v.run),
            }
        )
    print(f"(“both”: a/b ≤ {TARGET_A_OVER_B:.2f} and total ≤ the per-rung peak {_mb(b_peak)})")
    if alt is not None:
        print()
        print(
            f"Other ffmpeg {alt['version']}: a {alt['a_wall']:.1f} s, b {alt['b_wall']:.1f} s, "
            f"a/b = {_fmt_ratio(alt['a_over_b'])}; peak a (Python + ffmpeg) "
            f"{alt['a_total_peak_mb']:.0f} MB vs b {alt['b_peak_mb']:.0f} MB; "
            f"other processes {alt['other_load']:.0%}"
        )
    print(f"\nbenchmark took {total_seconds:.0f} s (source generation {generated_in:.0f} s)")

    doc = {
        "benchmark": "encode_ladder",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": cpus,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "ffmpeg_version": ffinfo.version,
        "ffmpeg_version_reported_by_a": (a.result or {}).get("ffmpeg_version"),
        "source": {
            "file": source.name,
            "seconds": round(info.duration, 3),
            "generated": args.source is None,
            "bytes": info.size,
            "graph": SOURCE_GRAPH,
            "codec": " ".join(SOURCE_CODEC),
        },
        "preset": args.preset,
        "crf": args.crf,
        "rungs": plan.names,
        "rounds": len(a_runs),
        "a": {
            "fastest": _run_json(a.run),
            "all_wall_seconds": [round(r.run.wall_seconds, 2) for r in a_runs],
            "python_peak_mb": round(python_peak / 1e6, 1),
            "ffmpeg_peak_mb": round(a_ffmpeg_peak / 1e6, 1),
            "total_peak_mb": round(a_total_peak / 1e6, 1),
            "x264": a.x264,
        },
        "b": {
            "wall_seconds": round(b.wall_seconds, 2),
            "cpu_seconds": round(b.cpu_seconds, 2),
            "other_load": round(b.other_load, 3),
            "all_wall_seconds": [round(r.wall_seconds, 2) for r in b_runs],
            "peak_mb": round(b_peak / 1e6, 1),
            "runs": {rung: _run_json(run) for rung, run in b.runs},
            "command_1080p": b.runs[0][1].argv if b.runs else None,
            "x264": b.x264,
        },
        "c": {
            "fastest": _run_json(c),
            "all_wall_seconds": [round(r.wall_seconds, 2) for r, _ in c_runs],
            "peak_mb": round(c_peak / 1e6, 1),
            "command": c.argv,
            "x264": c_x264,
        },
        "summary": {
            "a_over_b": None if a_over_b is None else round(a_over_b, 3),
            "a_over_c": None if a_over_c is None else round(a_over_c, 3),
            "python_peak_mb": round(python_peak / 1e6, 1),
            "a_total_peak_mb": round(a_total_peak / 1e6, 1),
            "b_peak_mb": round(b_peak / 1e6, 1),
        },
        "targets_met": targets,
        "variants": variant_rows,
        "alt_ffmpeg": alt,
        "failures": ctx.failures,
        "total_seconds": round(total_seconds, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"results: {args.output}")
    for failure in ctx.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if ctx.failures else 0


def run_alt(ctx: Context, alt: str) -> dict[str, Any]:
    """(a) and (b) once more with another ffmpeg binary (Debian's ffprobe kept)."""
    version = asyncio.run(ffmpeg_info(alt)).version
    print(f"other ffmpeg {version} ({alt}):", flush=True)
    a = run_pipeline(ctx, "alt-ffmpeg", {}, ffmpeg=alt)
    b = run_baseline(ctx, ffmpeg=alt)
    capacity = (a.run.wall_seconds + b.wall_seconds) * (os.cpu_count() or 1)
    other = a.run.other_cpu_seconds + sum(r.other_cpu_seconds for _, r in b.runs)
    return {
        "path": alt,
        "version": version,
        "a_wall": round(a.run.wall_seconds, 2),
        "b_wall": round(b.wall_seconds, 2),
        "a_over_b": _ratio(a.run.wall_seconds, b.wall_seconds),
        "a_python_peak_mb": round(a.run.peak_self_bytes / 1e6, 1),
        "a_ffmpeg_peak_mb": round(a.ffmpeg_peak_bytes / 1e6, 1),
        "a_total_peak_mb": round(a.run.peak_total_bytes / 1e6, 1),
        "b_peak_mb": round(b.peak_bytes / 1e6, 1),
        "other_load": round(min(1.0, other / capacity) if capacity else 0.0, 3),
        "x264": a.x264,
    }


if __name__ == "__main__":
    sys.exit(main())
