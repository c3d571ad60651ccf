"""Hardware H.264 encoders (docs/encoding.md §8): detection and a per-job fallback.

libx264 is the reference and always available. NVENC, QSV and VA-API (best first) are used when

1. the ffmpeg build lists the encoder (``ffmpeg -encoders``),
2. the device exists (an NVIDIA ``/dev/nvidiaN`` for NVENC, a DRM render node
   ``/dev/dri/renderD*`` for VA-API and QSV), and
3. a short real encode of a generated clip **through the production command builder**
   (:func:`~speak_encoder.pipeline.ffmpeg.build_command` on a real plan of that clip: same
   upload, per-rung scaler, GOP, rate caps and HLS muxer) succeeds and the result passes the
   same validity checks as a job's output.

The result is cached in ``<cache_dir>/hardware.json``
(:mod:`speak_encoder.pipeline.hardware_cache`), keyed by the ffmpeg build (its ``-version``
text) and the device list; it is detected again when either changes or on ``redetect=True``.
The same file remembers failures during jobs: a hardware encoder that fails
:data:`~speak_encoder.pipeline.hardware_cache.DEFAULT_BROKEN_AFTER` jobs in a row (jobs that
libx264 then encoded fine, so the source is not to blame) is marked broken and not tried again
until the next detection::

    detect() ──► HardwareReport (working encoders) ──► encode_with_fallback(job)
                        ▲                                 │ hardware fails?
                        │ redetect / new ffmpeg / devices │   wipe out_dir, libx264 for this
                        └──── hardware.json ◄─────────────┘   job, count it (N in a row: broken)
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from speak_encoder.errors import (
    ConfigError,
    EncodeError,
    OutputInvalid,
    ResourceError,
    SpeakEncoderError,
)
from speak_encoder.pipeline.extras import (
    POSTER_CANDIDATE_GLOB,
    POSTER_STATS_NAME,
    STORYBOARD_THUMB_GLOB,
)
from speak_encoder.pipeline.ffmpeg import (
    DEFAULT_RENDER_NODE,
    HARDWARE_ENCODERS,
    NVENC,
    SOFTWARE_ENCODER,
    EncoderTuning,
    build_command,
)
from speak_encoder.pipeline.ffmpeg_run import QUERY_TIMEOUT_S, EncodeProgress, run_ffmpeg
from speak_encoder.pipeline.hardware_cache import (
    DEFAULT_BROKEN_AFTER,
    DeviceScan,
    HardwareReport,
    current,
    load_cached,
    record_failure,
    record_success,
    save_quietly,
    scan_devices,
)
from speak_encoder.pipeline.hls import write_master_playlist
from speak_encoder.pipeline.ladder import Ladder, load_ladder
from speak_encoder.pipeline.plan import GOP_SECONDS, EncodeOptions, EncodePlan, plan_encode
from speak_encoder.pipeline.probe import probe
from speak_encoder.pipeline.verify import format_report, validate_folder
from speak_encoder.proc import run_capture

log = logging.getLogger(__name__)

#: Seconds one detection test encode may take (a 4 s clip; the first CUDA/VA-API start-up
#: alone can take seconds). Jobs have no such limit: same budget as libx264.
DETECT_TIMEOUT_S = 60.0
#: The generated test clip: big enough for two rungs (720p, 480p) so the split and two scalers
#: run, long enough for two segments so a forced keyframe at a segment start is checked too.
TEST_CLIP_SIZE = "1280x720"
TEST_CLIP_FPS = 30
TEST_CLIP_SECONDS = 4
#: Making that clip (software, ultrafast: a fixed, small cost) — bounded on its own, apart from
#: the ``timeout`` of each hardware test encode.
CLIP_TIMEOUT_S = 60.0

#: Hardware encodes that failed and were redone with libx264, per encoder (for metrics).
FALLBACKS: collections.Counter[str] = collections.Counter()


# --- detection --------------------------------------------------------------------------


def needs_device(encoder: str, devices: DeviceScan, render_node: str | None) -> str | None:
    """Why ``encoder`` cannot run on ``devices`` (None = its device is there)."""
    if encoder == NVENC:
        return None if devices.nvidia else "no NVIDIA device (/dev/nvidia0)"
    node = render_node or DEFAULT_RENDER_NODE
    return None if node in devices.render_nodes else f"no render node {node}"


async def _query(ffmpeg: str, flag: str) -> str:
    try:
        done = await run_capture([ffmpeg, "-hide_banner", flag], timeout=QUERY_TIMEOUT_S)
    except TimeoutError:
        raise ConfigError(
            f"{ffmpeg!r} {flag} did not answer within {QUERY_TIMEOUT_S:.0f} s"
        ) from None
    if done.returncode != 0:
        raise ConfigError(f"{ffmpeg!r} {flag} failed (exit code {done.returncode})")
    return done.stdout.decode("utf-8", "replace")


def parse_version(text: str) -> str:
    match = re.search(r"ffmpeg version (\S+)", text)
    return match.group(1) if match else "unknown"


def parse_encoders(text: str) -> tuple[str, ...]:
    """The hardware H.264 encoders an ``ffmpeg -encoders`` listing has, best first."""
    names = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("V"):
            names.add(parts[1])
    return tuple(e for e in HARDWARE_ENCODERS if e in names)


async def _make_clip(ffmpeg: str, path: Path, timeout: float) -> None:
    argv = [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i",
        f"testsrc2=size={TEST_CLIP_SIZE}:rate={TEST_CLIP_FPS}:duration={TEST_CLIP_SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={TEST_CLIP_SECONDS}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k", "-f", "mp4", f"file:{path}",
    ]  # fmt: skip
    try:
        done = await run_capture(argv, timeout=timeout)
    except TimeoutError:
        raise EncodeError("generating the test clip timed out") from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise EncodeError(f"generating the test clip failed: {' '.join(tail) or 'no output'}")


async def clip_and_plan(
    ffmpeg: str, ffprobe: str, folder: Path, ladder: Ladder, timeout: float = CLIP_TIMEOUT_S
) -> tuple[Path, EncodePlan]:
    """A generated clip and the plan production makes of it.

    The one change: segments of one GOP (2 s instead of 6 s), so the 4 s test covers a segment
    boundary and the check that every segment starts with an IDR frame means something.
    """
    clip = folder / "clip.mp4"
    await _make_clip(ffmpeg, clip, timeout)
    info = await probe(clip, ffprobe=ffprobe)
    plan = plan_encode(info, EncodeOptions(), ladder)
    return clip, dataclasses.replace(plan, segment_seconds=GOP_SECONDS)


def _take_extras(out_dir: Path) -> str | None:
    """Remove the poster candidates and storyboard of a test encode; what is missing, if any."""
    candidates = list(out_dir.glob(POSTER_CANDIDATE_GLOB))
    thumbnails = list(out_dir.glob(STORYBOARD_THUMB_GLOB))
    missing = None if candidates else "poster candidates"
    if not thumbnails:
        missing = missing or "storyboard thumbnails"
    for path in [*candidates, *thumbnails, out_dir / POSTER_STATS_NAME]:
        path.unlink(missing_ok=True)
    return missing


async def try_encoder(
    encoder: str,
    clip: Path,
    plan: EncodePlan,
    out_dir: Path,
    tuning: EncoderTuning,
    *,
    ffprobe: str,
    render_node: str | None,
    timeout: float,
) -> str | None:
    """Encode ``clip`` with ``encoder`` as a job would and validate it (None = it works)."""
    argv = build_command(plan, clip, out_dir, tuning, encoder=encoder, device=render_node)
    try:
        await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
        await asyncio.wait_for(run_ffmpeg(argv, duration=plan.duration), timeout)
        if plan.extras is not None:
            missing = await asyncio.to_thread(_take_extras, out_dir)
            if missing:
                return f"the test encode made no {missing}"
        await write_master_playlist(out_dir, ffprobe=ffprobe)
        report = await validate_folder(out_dir, expected_duration=plan.duration, ffprobe=ffprobe)
    except TimeoutError:
        return f"the test encode did not finish within {timeout:g} s"
    except SpeakEncoderError as exc:
        return exc.message
    if not report.ok:
        return "the test output fails the HLS checks: " + format_report(report).replace("\n", " ")
    return None


async def detect(
    ffmpeg: str,
    cache_dir: Path,
    *,
    redetect: bool = False,
    devices: DeviceScan | None = None,
    ffprobe: str = "ffprobe",
    render_node: str | None = None,
    tuning: EncoderTuning | None = None,
    ladder: Ladder | None = None,
    timeout: float = DETECT_TIMEOUT_S,
    version_text: str | None = None,
) -> HardwareReport:
    """Which hardware encoders work here: from the cache when ffmpeg and devices are unchanged.

    ``version_text``: what ``ffmpeg -version`` printed, if the caller has just asked (the
    encode has: :func:`~speak_encoder.pipeline.ffmpeg_run.tool_output`), else it is asked here.

    ``devices`` None scans this machine; ``render_node`` is the VA-API/QSV device (None =
    :data:`~speak_encoder.pipeline.ffmpeg.DEFAULT_RENDER_NODE`); ``tuning`` gives the preset/
    CRF of the test encode (its ``ffmpeg`` is replaced by ``ffmpeg``); ``timeout`` bounds each
    test encode (making the clip is bounded by :data:`CLIP_TIMEOUT_S`). Raises
    :class:`ConfigError` only when ffmpeg itself cannot be run.
    """
    if version_text is None or redetect:
        version_text = await _query(ffmpeg, "-version")
    scan = devices if devices is not None else await asyncio.to_thread(scan_devices)
    fingerprint = hashlib.sha256(version_text.encode()).hexdigest()
    report = HardwareReport(
        ffmpeg_version=parse_version(version_text),
        fingerprint=fingerprint,
        devices=scan,
        render_node=render_node,
        listed=(),
        candidates=(),
        working=(),
    )
    cached = None if redetect else load_cached(cache_dir)
    if cached is not None and cached.key() == report.key():
        log.debug("hardware encoders (cached): %s", cached.summary())
        return cached

    listed = parse_encoders(await _query(ffmpeg, "-encoders"))
    failures: dict[str, str] = {}
    candidates = []
    for encoder in listed:
        missing = needs_device(encoder, scan, render_node)
        if missing is None:
            candidates.append(encoder)
        else:
            failures[encoder] = missing
    working = []
    if candidates:
        base = dataclasses.replace(tuning or EncoderTuning(), ffmpeg=ffmpeg)
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".hardware-test-") as tmp:
            folder = Path(tmp)
            try:
                clip, plan = await clip_and_plan(ffmpeg, ffprobe, folder, ladder or load_ladder())
            except SpeakEncoderError as exc:
                failures.update((e, f"no test clip: {exc.message}") for e in candidates)
            else:
                for encoder in candidates:
                    why = await try_encoder(
                        encoder, clip, plan, folder / encoder, base,
                        ffprobe=ffprobe, render_node=render_node, timeout=timeout,
                    )  # fmt: skip
                    if why is None:
                        working.append(encoder)
                    else:
                        failures[encoder] = why
    report = dataclasses.replace(
        report,
        listed=listed,
        candidates=tuple(candidates),
        working=tuple(working),
        detect_failures=failures,
        detected_at=time.time(),
    )
    for encoder in candidates:
        if encoder in failures:
            log.warning("hardware encoder %s is not used: %s", encoder, failures[encoder])
    log.info("hardware encoders detected: %s", report.summary())
    await asyncio.to_thread(save_quietly, cache_dir, report)
    return report


# --- per job ----------------------------------------------------------------------------


def choose_encoder(
    hardware: HardwareReport | None, *, hardware_enabled: bool, cache_dir: Path
) -> str:
    """The encoder a job tries first: the best working, unbroken hardware one, else libx264."""
    if not hardware_enabled or hardware is None:
        return SOFTWARE_ENCODER
    return current(hardware, cache_dir).best


async def encode_with_fallback(
    plan: EncodePlan,
    source: Path,
    out_dir: Path,
    tuning: EncoderTuning,
    *,
    hardware: HardwareReport | None,
    hardware_enabled: bool,
    cache_dir: Path,
    on_progress: Callable[[EncodeProgress], None] | None = None,
    tonemap_available: bool = True,
    broken_after: int = DEFAULT_BROKEN_AFTER,
    verify: Callable[[Path], Awaitable[None]] | None = None,
) -> str:
    """Encode ``plan`` into ``out_dir``; returns the encoder that produced it.

    Tries the best usable hardware encoder; if ffmpeg fails with it (:class:`EncodeError`,
    :class:`ResourceError`) or ``verify(out_dir)`` rejects its output (:class:`OutputInvalid`),
    ``out_dir`` is wiped and the job is encoded again with libx264. The hardware failure is
    counted only when libx264 then succeeds (else the source is to blame and libx264's error is
    raised). No time limit of its own: hardware gets the software budget.
    """
    encoder = await asyncio.to_thread(
        choose_encoder, hardware, hardware_enabled=hardware_enabled, cache_dir=cache_dir
    )
    if hardware is None or encoder == SOFTWARE_ENCODER:
        await _run(plan, source, out_dir, tuning, SOFTWARE_ENCODER, None, on_progress,
                   tonemap_available, verify)  # fmt: skip
        return SOFTWARE_ENCODER
    try:
        await _run(plan, source, out_dir, tuning, encoder, hardware.device, on_progress,
                   tonemap_available, verify)  # fmt: skip
    except (EncodeError, ResourceError, OutputInvalid) as exc:
        failure = exc
    else:
        await asyncio.to_thread(record_success, hardware, cache_dir, encoder)
        return encoder
    FALLBACKS[encoder] += 1
    log.warning("%s failed on this job, encoding it again with libx264: %s", encoder, failure)
    await asyncio.to_thread(shutil.rmtree, out_dir, True)
    try:
        await _run(plan, source, out_dir, tuning, SOFTWARE_ENCODER, None, on_progress,
                   tonemap_available, verify)  # fmt: skip
    except SpeakEncoderError:
        log.info("libx264 failed too: the source is at fault, %s's failure is not counted", encoder)
        raise
    await asyncio.to_thread(
        record_failure, hardware, cache_dir, encoder, failure.message, broken_after=broken_after
    )
    return SOFTWARE_ENCODER


async def _run(
    plan: EncodePlan,
    source: Path,
    out_dir: Path,
    tuning: EncoderTuning,
    encoder: str,
    device: str | None,
    on_progress: Callable[[EncodeProgress], None] | None,
    tonemap_available: bool,
    verify: Callable[[Path], Awaitable[None]] | None,
) -> None:
    argv = build_command(
        plan, source, out_dir, tuning,
        tonemap_available=tonemap_available, encoder=encoder, device=device,
    )  # fmt: skip
    log.debug("ffmpeg command (%s): %s", encoder, argv)
    # The poster/storyboard outputs may open before the HLS muxer creates the folder.
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    await run_ffmpeg(
        argv, duration=plan.duration, on_progress=on_progress,
        memory_max_mb=tuning.memory_max_mb, max_pixels=tuning.max_pixels,
    )  # fmt: skip
    if verify is not None:
        await verify(out_dir)


__all__ = [
    "DETECT_TIMEOUT_S",
    "FALLBACKS",
    "choose_encoder",
    "detect",
    "encode_with_fallback",
]
