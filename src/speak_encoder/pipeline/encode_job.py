"""One encode from SOURCE to a validated HLS folder: fetch → probe → plan → encode → verify.

Everything happens inside a per-job work folder under the configured work directory, which is
always removed (success, failure, Ctrl-C). Only a folder that passes every validity check is
moved to its destination.

While ffmpeg runs, the finished segments are hashed and indexed (:mod:`.overlap`), so what
follows the encode is short: the I-frame playlists from the IDR index, the poster from its
candidates (measured by the encode itself: no ffmpeg run), the sprite (one tiny ffmpeg run over
the thumbnails) and its WebVTT, the measured master playlist, the validity checks (segments
already read are not read again) and the root CID (only files not hashed yet).
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
from speak_encoder.pipeline.extras import POSTER_NAME, STORYBOARD_IMAGE, STORYBOARD_VTT
from speak_encoder.pipeline.fetch import FetchProgress, fetch_source
from speak_encoder.pipeline.ffmpeg import MASTER_NAME, EncoderTuning
from speak_encoder.pipeline.ffmpeg_run import EncodeProgress, FfmpegInfo, ffmpeg_info, tool_output
from speak_encoder.pipeline.hardware import detect, encode_with_fallback
from speak_encoder.pipeline.hardware_cache import HardwareReport
from speak_encoder.pipeline.hls import (
    RenditionStats,
    load_media_playlist,
    write_master_playlist,
    write_text_atomic,
)
from speak_encoder.pipeline.iframes import IFRAME_PLAYLIST_NAME, entries_for, format_iframe_playlist
from speak_encoder.pipeline.ladder import load_ladder
from speak_encoder.pipeline.overlap import (
    LadderFacts,
    LadderWatcher,
    keep_facts,
    read_segment,
    take_facts,
)
from speak_encoder.pipeline.plan import EncodeOptions, EncodePlan, plan_encode
from speak_encoder.pipeline.poster import make_poster
from speak_encoder.pipeline.probe import (
    TRUNCATION_TOLERANCE_FRACTION,
    TRUNCATION_TOLERANCE_S,
    MediaInfo,
    ProbeLimits,
    probe,
)
from speak_encoder.pipeline.source import SourceRef, parse_source
from speak_encoder.pipeline.storyboard import format_storyboard, make_sprite, storyboard_cues
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
    #: Poster and storyboard file names in the folder (None = not made: ``--no-extras``).
    thumbnail: str | None = None
    storyboard: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": str(self.manifest),
            "folder": str(self.folder),
            "duration": round(self.duration, 3),
            "renditions": [asdict(r) for r in self.renditions],
            "cid": self.cid,
            "ffmpeg_version": self.ffmpeg_version,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "thumbnail": cid_path(self.cid, self.thumbnail),
            "storyboard": cid_path(self.cid, self.storyboard),
        }


def cid_path(cid: str | None, name: str | None) -> str | None:
    """``ipfs://<root CID>/<name>`` (how front ends address a file of the published folder)."""
    return f"ipfs://{cid}/{name}" if cid and name else None


def poster_of(folder: Path) -> str | None:
    """The poster's file name if ``folder`` has one."""
    return POSTER_NAME if (folder / POSTER_NAME).is_file() else None


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
        thumbnail = poster_of(out_dir)
        storyboard = STORYBOARD_VTT if (out_dir / STORYBOARD_VTT).is_file() else None
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
        thumbnail=thumbnail,
        storyboard=storyboard,
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
    ffmpeg = await ffmpeg_info(settings.ffmpeg_path, cache_dir=settings.data_dir)
    tuning = tuning_from(settings)
    report = await hardware_report(settings) if settings.hardware_acceleration else None
    watcher = LadderWatcher(out_dir, plan, settings.ffmpeg_path)
    watching = asyncio.ensure_future(watcher.run())
    try:
        encoder = await encode_with_fallback(
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
    except BaseException:
        watching.cancel()
        with contextlib.suppress(BaseException):
            await watching
        raise
    watcher.stop()
    await watching  # the segments written last, the poster candidates if not yet described
    keep_facts(watcher.facts)
    return encoder


async def _inspect_tools(settings: Settings) -> FfmpegInfo:
    info = await ffmpeg_info(settings.ffmpeg_path, cache_dir=settings.data_dir)
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
            version_text=None if redetect else await _version_text(settings.ffmpeg_path),
        )
    return _HARDWARE[key]


async def _version_text(ffmpeg: str) -> str | None:
    """``ffmpeg -version`` as :func:`ffmpeg_info` got it a moment ago (one ffmpeg start less
    before the encode); None if it failed (the detection asks and explains)."""
    try:
        done = await tool_output(ffmpeg, "-version")
    except TimeoutError:
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


async def finish_outputs(out_dir: Path, plan: EncodePlan, settings: Settings) -> LadderFacts:
    """I-frame playlists, poster and storyboard WebVTT from what the encode left in ``out_dir``.

    Uses the facts gathered while ffmpeg ran; after a restart (no facts) the segments are read
    now. Without extras in the plan nothing is added.
    """
    facts = take_facts(out_dir)
    if plan.extras is None:
        return facts
    durations = []
    for rung in plan.names:
        uri = f"{rung}/index.m3u8"
        playlist = load_media_playlist(out_dir, uri)
        frames = []
        for segment in playlist.segments:
            relative = f"{rung}/{segment.uri}"
            known = facts.segment(relative)
            if known is None:
                known = await asyncio.to_thread(read_segment, out_dir / rung / segment.uri)
                if known is None:
                    raise OutputInvalid(f"{relative} is not a readable MPEG-TS segment")
                facts.segments[relative] = known
            frames.append(known.idr_frames)
        text = format_iframe_playlist(entries_for(playlist.segments, frames), playlist.duration)
        await asyncio.to_thread(write_text_atomic, out_dir / rung / IFRAME_PLAYLIST_NAME, text)
        durations.append(playlist.duration)
    await make_poster(out_dir, settings.ffmpeg_path)
    tiles = await make_sprite(out_dir, plan.extras.storyboard, settings.ffmpeg_path)
    if (out_dir / STORYBOARD_IMAGE).is_file() and durations:  # (tiled by an earlier run: 0)
        cues = storyboard_cues(plan.extras.storyboard, max(durations), tiles or None)
        await asyncio.to_thread(
            write_text_atomic, out_dir / STORYBOARD_VTT, format_storyboard(cues)
        )
    return facts


async def verify_ladder(out_dir: Path, plan: EncodePlan, settings: Settings) -> ValidationReport:
    """Add the extras, write the measured master playlist, then refuse any folder that fails a
    check."""
    facts = await finish_outputs(out_dir, plan, settings)
    await write_master_playlist(out_dir, ffprobe=settings.ffprobe_path)
    validation = await validate_folder(
        out_dir, expected_duration=plan.duration, ffprobe=settings.ffprobe_path, known=facts
    )
    if not validation.ok:
        raise _verification_error(validation, plan)
    truncated = _truncation_error(validation.renditions, plan)
    if truncated is not None:
        raise truncated
    keep_facts(facts)  # for root_cid: the segments are hashed already
    return validation


async def root_cid(folder: Path) -> str:
    """The CIDv0 of ``folder`` as the network's wrapped upload gives it (streaming hash).

    Segments hashed while ffmpeg ran (and unchanged since) are not read again.
    """
    facts = take_facts(folder)
    return str(await asyncio.to_thread(import_folder, folder, known=facts.entry_of))


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
