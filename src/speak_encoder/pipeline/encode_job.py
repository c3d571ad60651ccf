"""One encode from SOURCE to a validated HLS folder: fetch → probe → plan → encode → verify.

Everything happens inside a per-job work folder under the configured work directory, which is
always removed (success, failure, Ctrl-C). Only a folder that passes every validity check is
moved to its destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from speak_encoder.config import Settings
from speak_encoder.errors import OutputInvalid, UsageError
from speak_encoder.pipeline import events
from speak_encoder.pipeline.events import Reporter, StageEvent
from speak_encoder.pipeline.fetch import FetchProgress, fetch_source
from speak_encoder.pipeline.ffmpeg import (
    MASTER_NAME,
    EncodeProgress,
    EncoderTuning,
    FfmpegInfo,
    ffmpeg_info,
)
from speak_encoder.pipeline.hardware import HardwareReport, detect, encode_with_fallback
from speak_encoder.pipeline.hls import RenditionStats, write_master_playlist
from speak_encoder.pipeline.ladder import load_ladder
from speak_encoder.pipeline.plan import EncodeOptions, EncodePlan, plan_encode
from speak_encoder.pipeline.probe import (
    TRUNCATION_TOLERANCE_FRACTION,
    TRUNCATION_TOLERANCE_S,
    MediaInfo,
    ProbeLimits,
    probe,
)
from speak_encoder.pipeline.source import SourceRef, parse_source
from speak_encoder.pipeline.verify import ValidationReport, format_report, validate_folder
from speak_encoder.private_files import make_work_dir
from speak_encoder.storage.local_store import keep_folder
from speak_encoder.storage.unixfs import import_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RenditionResult:
    name: str
    width: int
    height: int
    bandwidth: int
    average_bandwidth: int
    codecs: str
    frame_rate: float
    segments: int


@dataclass(frozen=True, slots=True)
class EncodeResult:
    folder: Path
    manifest: Path
    duration: float
    renditions: list[RenditionResult]
    cid: str | None
    ffmpeg_version: str
    elapsed_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": str(self.manifest),
            "folder": str(self.folder),
            "duration": round(self.duration, 3),
            "renditions": [asdict(r) for r in self.renditions],
            "cid": self.cid,
            "ffmpeg_version": self.ffmpeg_version,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }


def default_destination(ref: SourceRef, cwd: Path | None = None) -> Path:
    return (cwd or Path.cwd()) / f"{ref.display_name}-hls"


def check_destination(dest: Path) -> None:
    """Refuse to overwrite anything: the destination must not exist or be an empty folder."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise UsageError(f"output path {str(dest)!r} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()):
        raise UsageError(
            f"output folder {str(dest)!r} already exists and is not empty: remove it or "
            "choose another with --out"
        )
    if not dest.parent.is_dir():
        raise UsageError(f"the parent folder of {str(dest)!r} does not exist")


def tuning_from(settings: Settings) -> EncoderTuning:
    return EncoderTuning(
        ffmpeg=settings.ffmpeg_path,
        preset=settings.encoder_preset,
        crf=settings.encoder_crf,
        filter_threads=settings.filter_threads,
        max_muxing_queue=settings.max_muxing_queue,
        x264_threads=settings.x264_threads,
        rc_lookahead=settings.x264_rc_lookahead,
        max_pixels=settings.max_source_pixels,
        memory_max_mb=settings.ffmpeg_memory_max_mb,
    )


def _fetch_reporter(report: Reporter) -> Any:
    started = time.monotonic()

    def on_progress(p: FetchProgress) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = p.done_bytes / elapsed
        fraction = p.done_bytes / p.total_bytes if p.total_bytes else None
        eta = (p.total_bytes - p.done_bytes) / rate if p.total_bytes and rate > 0 else None
        report(
            StageEvent(
                "fetch",
                fraction,
                f"{rate / 1e6:.1f} MB/s",
                eta,
                f"{p.done_bytes / 1e6:.1f} MB from {p.origin}",
            )
        )

    return on_progress


def _encode_reporter(report: Reporter, plan: EncodePlan) -> Any:
    detail = ", ".join(f"{r.name} {r.width}x{r.height}" for r in plan.renditions)

    def on_progress(p: EncodeProgress) -> None:
        speed = f"{p.speed:.2f}x" if p.speed else None
        report(StageEvent("encode", p.fraction, speed, p.eta_seconds, detail))

    return on_progress


#: Output this much shorter than the source announces (seconds, or the fraction of its length
#: if larger) means the source was cut short: a partial upload must not pass as a video. The
#: probe applies the same rule to the source's own streams (pipeline.probe).


def _truncation_error(renditions: list[RenditionStats], plan: EncodePlan) -> OutputInvalid | None:
    covered = min((r.duration for r in renditions), default=0.0)
    allowed = max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRACTION * plan.duration)
    if covered >= plan.duration - allowed:
        return None
    return OutputInvalid(
        f"the encoded video covers {covered:.1f} s of the {plan.duration:.1f} s the source "
        "announces: the source is truncated or corrupt"
    )


def _verification_error(report: ValidationReport, plan: EncodePlan) -> OutputInvalid:
    violations = [f"[check {v.check}] {v.where}: {v.message}" for v in report.violations]
    truncated = _truncation_error(report.renditions, plan)
    if truncated is not None and all(v.check == 3 for v in report.violations):
        return OutputInvalid(truncated.message, violations)
    return OutputInvalid(
        "the encoded output fails the HLS validity checks:\n" + format_report(report), violations
    )


def _move_into_place(folder: Path, dest: Path) -> None:
    """Move ``folder`` to ``dest`` so that ``dest`` never holds a half-copied ladder."""
    staging = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        shutil.move(str(folder), str(staging))
        if dest.is_dir():
            dest.rmdir()  # checked empty before the job started
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


async def encode(
    source: str,
    settings: Settings,
    *,
    options: EncodeOptions | None = None,
    out: Path | None = None,
    store: bool = False,
    report: Reporter = events.ignore,
) -> EncodeResult:
    """Encode ``source`` into a validated HLS ladder and compute its root CID.

    The folder goes to ``out``, or with ``store`` into the local CID store
    (``DATA_DIR/store/<CID>/``), else to ``./<source-name>-hls``.
    """
    started = time.monotonic()
    options = options or EncodeOptions()
    ref = parse_source(source)
    if store and out is not None:
        raise UsageError("--store and --out are exclusive: the store names folders by CID")
    dest = None if store else (out or default_destination(ref)).absolute()
    if dest is not None:
        check_destination(dest)
    ladder = load_ladder(settings.ladder_file)
    if options.rungs:
        ladder.select(list(options.rungs))  # unknown names fail before any work
    # What the encode needs to know about ffmpeg and the hardware is found out meanwhile.
    tools = asyncio.ensure_future(_inspect_tools(settings))
    job_dir = settings.work_dir / f"job-{uuid.uuid4().hex}"
    try:
        make_work_dir(job_dir)
        report(StageEvent("fetch", 0.0, detail=ref.kind))
        fetched = await fetch_source(ref, job_dir, settings, on_progress=_fetch_reporter(report))
        report(StageEvent("fetch", 1.0, detail=f"{fetched.size / 1e6:.1f} MB", done=True))

        report(StageEvent("probe"))
        info: MediaInfo = await probe(
            fetched.path, ffprobe=settings.ffprobe_path, limits=ProbeLimits.from_settings(settings)
        )
        report(StageEvent("probe", 1.0, detail=describe_media(info), done=True))

        plan = plan_encode(info, options, ladder)
        report(StageEvent("plan", 1.0, detail=", ".join(plan.names), done=True))

        ffmpeg = await tools
        out_dir = job_dir / "out"
        report(StageEvent("encode", 0.0))
        await encode_ladder(
            plan, fetched.path, out_dir, settings, on_progress=_encode_reporter(report, plan)
        )
        report(StageEvent("encode", 1.0, done=True))

        report(StageEvent("verify"))
        validation = await verify_ladder(out_dir, plan, settings)
        report(StageEvent("verify", 1.0, detail="6 checks passed", done=True))

        report(StageEvent("store", detail="computing the root CID"))
        cid = await root_cid(out_dir)
        if dest is None:
            stored = await asyncio.to_thread(keep_folder, out_dir, settings, cid=cid)
            dest = stored.path
        else:
            await asyncio.to_thread(_move_into_place, out_dir, dest)
        report(StageEvent("store", 1.0, detail=f"{cid} at {dest}", done=True))
    finally:
        if not tools.done():
            tools.cancel()
        with contextlib.suppress(BaseException):
            await tools  # let its subprocesses be reaped inside this event loop
        with contextlib.suppress(OSError):
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, job_dir, True))
    return EncodeResult(
        folder=dest,
        manifest=dest / MASTER_NAME,
        duration=plan.duration,
        renditions=renditions_of(validation),
        cid=cid,
        ffmpeg_version=ffmpeg.version,
        elapsed_seconds=time.monotonic() - started,
    )


# --- the stages, shared by `encode` and the node's job runner ---------------------------------


async def encode_ladder(
    plan: EncodePlan,
    source: Path,
    out_dir: Path,
    settings: Settings,
    *,
    on_progress: Callable[[EncodeProgress], None] | None = None,
) -> str:
    """Run the one-decode ffmpeg ladder into ``out_dir``; returns the video encoder used.

    The best working hardware encoder is tried first (detected once per process, cached in
    DATA_DIR); a failure falls back to libx264 for this job (see :mod:`.hardware`).
    """
    ffmpeg = await ffmpeg_info(settings.ffmpeg_path)
    tuning = tuning_from(settings)
    report = await hardware_report(settings) if settings.hardware_acceleration else None
    return await encode_with_fallback(
        plan,
        source,
        out_dir,
        tuning,
        hardware=report,
        hardware_enabled=settings.hardware_acceleration,
        cache_dir=settings.data_dir,
        on_progress=on_progress,
        tonemap_available=ffmpeg.has_zscale,
        broken_after=settings.hw_broken_after,
    )


async def _inspect_tools(settings: Settings) -> FfmpegInfo:
    info = await ffmpeg_info(settings.ffmpeg_path)
    if settings.hardware_acceleration:
        await hardware_report(settings)
    return info


_HARDWARE: dict[tuple[str, Path], HardwareReport] = {}


async def hardware_report(settings: Settings, *, redetect: bool = False) -> HardwareReport:
    """Hardware encoders of this ffmpeg and machine (detected once per process and binary)."""
    key = (settings.ffmpeg_path, settings.data_dir)
    if redetect or key not in _HARDWARE:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        _HARDWARE[key] = await detect(
            settings.ffmpeg_path,
            settings.data_dir,
            redetect=redetect,
            ffprobe=settings.ffprobe_path,
            render_node=settings.vaapi_device,
            tuning=tuning_from(settings),
            timeout=settings.hw_detect_timeout,
        )
    return _HARDWARE[key]


async def verify_ladder(out_dir: Path, plan: EncodePlan, settings: Settings) -> ValidationReport:
    """Write the measured master playlist, then refuse any folder that fails a check."""
    await write_master_playlist(out_dir, ffprobe=settings.ffprobe_path)
    validation = await validate_folder(
        out_dir, expected_duration=plan.duration, ffprobe=settings.ffprobe_path
    )
    if not validation.ok:
        raise _verification_error(validation, plan)
    truncated = _truncation_error(validation.renditions, plan)
    if truncated is not None:
        raise truncated
    return validation


async def root_cid(folder: Path) -> str:
    """The CIDv0 of ``folder`` as the network's wrapped upload gives it (streaming hash)."""
    return str(await asyncio.to_thread(import_folder, folder))


def renditions_of(validation: ValidationReport) -> list[RenditionResult]:
    return [
        RenditionResult(
            r.name, r.width, r.height, r.bandwidth, r.average_bandwidth, r.codecs,
            r.frame_rate, r.segments,
        )
        for r in validation.renditions
    ]  # fmt: skip


def describe_media(info: MediaInfo) -> str:
    video = info.video
    width, height = (round(v) for v in video.display_size)
    audio = "no audio" if info.audio is None else f"audio {info.audio.codec}"
    return (
        f"{video.codec} {width}x{height} {float(video.fps):.3g} fps {video.pix_fmt}, "
        f"{audio}, {info.duration:.1f} s"
    )


__all__ = ["EncodeResult", "RenditionResult", "encode"]
