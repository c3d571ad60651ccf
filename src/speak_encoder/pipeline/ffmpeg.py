"""The encode stage's ffmpeg command: a pure builder (running it: :mod:`.ffmpeg_run`).

One ffmpeg process per job decodes the source once and feeds every rung (docs/encoding.md §4)::

    [0:v] (tonemap) fps ─ split ─┬─ scale ─ setsar ─► libx264 (rung 1) ─┐
                                 ├─ scale ─ setsar ─► libx264 (rung 2) ─┼─► HLS muxer
                                 └─ …                                   │   (-var_stream_map)
    [0:a] or silence ─ aresample ─ asplit ───► aac (one per rung) ──────┘

Hardware encoders (docs/encoding.md §8) use the same graph with the per-rung scaler on the GPU.
Every software step that depends on the source (auto-rotation, which ffmpeg inserts before the
graph; HDR tone-mapping; the frame rate; 10-bit → 8-bit) runs *before* one upload, so the GPU
only scales and encodes::

    [0:v] (tonemap) fps ─ format=nv12 ─ upload ─ split ─┬─ scale_cuda|scale_vaapi|scale_qsv ─►
                                                        └─ …      h264_nvenc|h264_vaapi|h264_qsv

Rungs, rate caps, audio and HLS options are identical to libx264's. Keyframes (the ladder's
``[x264]`` table, chosen by measured quality per bit, bench/README.md): libx264 gets an IDR
forced at every segment boundary (``-force_key_frames``, the same frames on every rung) and
places scene-cut IDRs in between on its own; hardware encoders keep a forced IDR every
:data:`~speak_encoder.pipeline.plan.GOP_SECONDS` without scene cuts (not measured here).

With extras (:mod:`speak_encoder.pipeline.extras`) two more branches leave the same ``split``
(before any upload) for the poster candidates and the storyboard sprite, written as JPEGs by
two more outputs of the same process (``-fps_mode passthrough``: only the selected frames). The
poster branch also measures each candidate (``signalstats``, ``blurdetect``) into a small text
file next to them, so choosing the poster needs no ffmpeg run of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from speak_encoder.config import DEFAULT_FFMPEG_MEMORY_MAX_MB, DEFAULT_MAX_SOURCE_PIXELS
from speak_encoder.pipeline.extras import (
    POSTER_CANDIDATE_PATTERN,
    POSTER_STATS_NAME,
    STORYBOARD_THUMB_PATTERN,
    ExtrasPlan,
)
from speak_encoder.pipeline.ladder import RungSpec
from speak_encoder.pipeline.plan import GOP_SECONDS, EncodePlan, gop_frames
from speak_encoder.pipeline.probe import source_input_options

#: Name of the master playlist the front ends load.
MASTER_NAME = "manifest.m3u8"
#: Media playlist of each rung, inside its folder.
MEDIA_NAME = "index.m3u8"
#: Segment file names inside a rung folder (ffmpeg 5.1 refuses %v in folder and file name).
SEGMENT_PATTERN = "seg_%d.ts"
#: HDR → SDR: linearise, tone-map (Hable), back to BT.709 (needs ffmpeg built with zimg).
TONEMAP_CHAIN = (
    "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
    "tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv"
)

#: The reference encoder, always available.
SOFTWARE_ENCODER = "libx264"
NVENC = "h264_nvenc"
QSV = "h264_qsv"
VAAPI = "h264_vaapi"
#: Hardware H.264 encoders, best first (the order a job tries them in).
HARDWARE_ENCODERS = (NVENC, QSV, VAAPI)
#: DRM render node used by VA-API and QSV when none is given.
DEFAULT_RENDER_NODE = "/dev/dri/renderD128"
#: B-frames per rung on hardware encoders (0 for the baseline profile, which has none).
HW_B_FRAMES = 2
#: With scene cuts, x264's keyint is this multiple of the forced-IDR interval (see
#: :func:`x264_keyframes`); the forced IDRs still bound every GOP.
X264_KEYINT_FACTOR = 2
#: Threads of each JPEG encoder (poster candidates, storyboard thumbnails): a dozen small
#: pictures need none, and mjpeg's automatic slice threads cost ~11 MB of RSS on a 720p ladder
#: (bench/README.md, "extras"), at no speed cost.
EXTRAS_ENCODER_THREADS = 1
#: JPEG quality of the poster and the storyboard thumbnails (mjpeg ``-q:v``: 2 best … 31).
POSTER_JPEG_QUALITY = 2
STORYBOARD_JPEG_QUALITY = 3
#: What the poster branch measures on each candidate (mean and 10th/90th percentile luma, blur)
#: before its JPEG encoder; :mod:`.poster` reads the printed values.
POSTER_ANALYSIS = "signalstats,blurdetect"
#: Frames the QSV upload pool keeps beyond the filter's needs (the encoder holds references).
QSV_EXTRA_HW_FRAMES = 64
#: libx264 speed preset → NVENC preset (p1 fastest … p7 best); NVENC leans to quality.
NVENC_PRESETS = {
    "ultrafast": "p1", "superfast": "p2", "veryfast": "p3", "faster": "p4", "fast": "p4",
    "medium": "p5", "slow": "p6", "slower": "p7", "veryslow": "p7", "placebo": "p7",
}  # fmt: skip
#: libx264 speed preset → QSV preset (QSV has veryfast … veryslow).
QSV_PRESETS = {
    "ultrafast": "veryfast", "superfast": "veryfast", "veryfast": "veryfast",
    "faster": "faster", "fast": "fast", "medium": "medium", "slow": "slow",
    "slower": "slower", "veryslow": "veryslow", "placebo": "veryslow",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class EncoderTuning:
    """Knobs that change speed and memory, not the output format."""

    ffmpeg: str = "ffmpeg"
    preset: str = "medium"
    crf: int = 19
    filter_threads: int = 2
    max_muxing_queue: int = 1024
    #: x264 threads per rung (0 = let x264 decide) and lookahead frames (None = preset's).
    x264_threads: int = 0
    rc_lookahead: int | None = None
    #: No decoded source frame above this many pixels (-max_pixels; MAX_SOURCE_PIXELS).
    max_pixels: int = DEFAULT_MAX_SOURCE_PIXELS
    #: ffmpeg is killed above this resident memory, MiB (FFMPEG_MEMORY_MAX_MB; 0 = no limit).
    memory_max_mb: int = DEFAULT_FFMPEG_MEMORY_MAX_MB


#: x264's own rc-lookahead per preset: a configured lookahead only ever lowers it (raising it
#: for fast presets would cost memory for nothing).
PRESET_LOOKAHEAD = {
    "ultrafast": 0, "superfast": 0, "veryfast": 10, "faster": 20, "fast": 30,
    "medium": 40, "slow": 50, "slower": 60, "veryslow": 60, "placebo": 60,
}  # fmt: skip


def effective_lookahead(tuning: EncoderTuning) -> int | None:
    """The -rc-lookahead to pass, or None to keep the preset's own (when it is not larger)."""
    if tuning.rc_lookahead is None:
        return None
    own = PRESET_LOOKAHEAD.get(tuning.preset)
    if own is not None and tuning.rc_lookahead >= own:
        return None
    return tuning.rc_lookahead


def _fps_text(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def check_encoder(encoder: str) -> str:
    """``encoder`` if the builder knows it, else a :class:`ValueError` (a programming error)."""
    if encoder != SOFTWARE_ENCODER and encoder not in HARDWARE_ENCODERS:
        known = ", ".join((SOFTWARE_ENCODER, *HARDWARE_ENCODERS))
        raise ValueError(f"unknown encoder {encoder!r} (known: {known})")
    return encoder


def _upload(encoder: str) -> str:
    """Software → GPU: 8-bit 4:2:0 first (10-bit sources are converted here), then upload."""
    if encoder == NVENC:
        return "format=nv12,hwupload_cuda"
    if encoder == QSV:
        return f"format=nv12,hwupload=extra_hw_frames={QSV_EXTRA_HW_FRAMES}"
    return "format=nv12,hwupload"


def _scaler(encoder: str, width: int, height: int) -> str:
    if encoder == SOFTWARE_ENCODER:
        return f"scale={width}:{height}:flags=bicubic,setsar=1,format=yuv420p"
    if encoder == NVENC:
        return f"scale_cuda=w={width}:h={height}:interp_algo=bicubic,setsar=1"
    if encoder == QSV:
        return f"scale_qsv=w={width}:h={height},setsar=1"
    return f"scale_vaapi=w={width}:h={height},setsar=1"


def filter_graph(
    plan: EncodePlan,
    *,
    tonemap_available: bool,
    encoder: str = SOFTWARE_ENCODER,
    out_dir: Path | None = None,
) -> str:
    """The -filter_complex text: decode once, split, one scaler per rung.

    On a hardware ``encoder`` the frames are uploaded once, after every software step
    (auto-rotation happens before the graph, then tone-mapping, fps and the 8-bit conversion),
    and each rung is scaled on the GPU. With extras, the poster branch prints its measurements
    to :data:`~speak_encoder.pipeline.extras.POSTER_STATS_NAME` in ``out_dir``
    (:func:`build_command` always gives it; without one the branch measures nothing and the
    poster is chosen by its own ffmpeg run).
    """
    check_encoder(encoder)
    count = len(plan.renditions)
    extras = plan.extras
    video = [f"[0:{plan.video_index}]"]
    if plan.tonemap and tonemap_available:
        video.append(TONEMAP_CHAIN + ",")
    video.append(f"fps={_fps_text(plan.fps)},")
    chains = []
    if extras is not None and encoder != SOFTWARE_ENCODER:
        # Extras leave in system memory, before the one upload.
        chains.append("".join(video) + "split=3[hw][xp][xs]")
        video = ["[hw]"]
    if encoder != SOFTWARE_ENCODER:
        video.append(_upload(encoder) + ",")
    if extras is not None and encoder == SOFTWARE_ENCODER:
        video.append(f"split={count + 2}")
        video.extend(f"[s{i}]" for i in range(count))
        video.append("[xp][xs]")
    else:
        video.append(f"split={count}")
        video.extend(f"[s{i}]" for i in range(count))
    chains.append("".join(video))
    if extras is not None:
        stats = out_dir / POSTER_STATS_NAME if out_dir is not None else None
        chains += extras_chains(extras, stats)
    for i, rung in enumerate(plan.renditions):
        chains.append(f"[s{i}]{_scaler(encoder, rung.width, rung.height)}[v{i}]")
    audio_in = f"[0:{plan.audio_index}]" if plan.audio_index is not None else "[1:a]"
    outs = "".join(f"[a{i}]" for i in range(count))
    chains.append(
        f"{audio_in}aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,"
        f"asplit={count}{outs}"
    )
    return ";".join(chains)


def filter_value(text: str) -> str:
    """``text`` as one option value inside a -filter_complex graph.

    ffmpeg unescapes twice: the graph parser (``\\ ' [ ] , ;``), then the filter's option
    parser (``\\ ' :``); a backslash before any character keeps it. Spaces are escaped too
    (the parsers trim them at either end).
    """

    def escape(value: str, specials: str) -> str:
        return "".join(f"\\{c}" if c in specials or c.isspace() else c for c in value)

    return escape(escape(text, "\\':"), "\\'[],;")


def extras_chains(extras: ExtrasPlan, stats: Path | None = None) -> list[str]:
    """Filter chains of the poster candidates (``[poster]``) and the storyboard thumbnails
    (``[story]``).

    Each selects its few frames first, so only those are scaled. The candidates are renumbered
    (``setpts=N``): ffmpeg's progress is the latest time stamp of any output, and candidates
    from the first 10 % must not make the encode look that far along at its start. With
    ``stats``, each candidate is measured (:data:`POSTER_ANALYSIS`) as it passes, on the frame
    its JPEG is encoded from, and printed there: one ``frame:N`` block per candidate N, in the
    order they are numbered (no frame is held).
    """
    poster, board = extras.poster, extras.storyboard
    picks = "+".join(f"eq(n\\,{n})" for n in poster.frames)
    limit = board.every_frames * board.count
    measure = ""
    if stats is not None:
        target = filter_value(f"file:{stats}")  # ours (the work folder), never a user string
        measure = f",{POSTER_ANALYSIS},metadata=mode=print:file={target}"
    return [
        f"[xp]select='{picks}',setpts=N,scale={poster.width}:{poster.height}:flags=bicubic,"
        f"setsar=1,format=yuvj420p{measure}[poster]",
        f"[xs]select='not(mod(n\\,{board.every_frames}))*lt(n\\,{limit})',"
        f"scale={board.tile_width}:{board.tile_height}:flags=bicubic,setsar=1,"
        "format=yuvj420p[story]",
    ]


def extras_outputs(extras: ExtrasPlan, out_dir: Path, max_muxing_queue: int) -> list[str]:
    """The two JPEG outputs: numbered poster candidates and storyboard thumbnails.

    Both written atomically (``<name>.tmp`` renamed when complete), so a file that exists is
    whole and can be looked at while ffmpeg still runs. Both get their first frame at the
    video's first frame, so ffmpeg 5.1 starts its progress reports at once. Each JPEG encoder
    runs on one thread (:data:`EXTRAS_ENCODER_THREADS`).
    """
    common = ["-fps_mode", "passthrough", "-c:v", "mjpeg", "-map_metadata", "-1"]
    common += ["-threads", str(EXTRAS_ENCODER_THREADS)]
    common += ["-max_muxing_queue_size", str(max_muxing_queue)]
    return [
        "-map", "[poster]", *common, "-q:v", str(POSTER_JPEG_QUALITY),
        "-frames:v", str(len(extras.poster.frames)),
        "-f", "image2", "-atomic_writing", "1", "-start_number", "0",
        str(out_dir / POSTER_CANDIDATE_PATTERN),
        "-map", "[story]", *common, "-q:v", str(STORYBOARD_JPEG_QUALITY),
        "-frames:v", str(extras.storyboard.count),
        "-f", "image2", "-atomic_writing", "1", "-start_number", "0",
        str(out_dir / STORYBOARD_THUMB_PATTERN),
    ]  # fmt: skip


def x264_keyframes(plan: EncodePlan) -> list[str]:
    """GOP and keyframe options of libx264: forced IDRs (aligned on every rung) + scene cuts."""
    gop = plan.gop_frames
    scenecut = plan.x264.scenecut
    if scenecut:
        # x264 may add an IDR at a scene change once 1 s has passed since the last. Its own
        # keyint is set past the forced interval: x264 makes scene cuts easier the closer a
        # GOP gets to keyint, which with keyint = the forced interval puts spurious IDRs one
        # frame before the forced ones (measured on noisy 720p).
        keyint, keyint_min = X264_KEYINT_FACTOR * gop, min(gop, max(1, round(plan.fps)))
    else:
        keyint, keyint_min = gop, gop
    args = ["-g", str(keyint), "-keyint_min", str(keyint_min), "-sc_threshold", str(scenecut)]
    args += ["-force_key_frames", f"expr:gte(t,n_forced*{plan.keyframe_seconds})"]
    return args


def x264_tuning(plan: EncodePlan) -> list[str]:
    """Tune, AQ and psy options of the ladder's ``[x264]`` table (None = the preset's own)."""
    x264, args = plan.x264, []
    if x264.tune is not None:
        args += ["-tune", x264.tune]
    if x264.aq_mode is not None:
        args += ["-aq-mode", str(x264.aq_mode)]
    if x264.aq_strength is not None:
        args += ["-aq-strength", f"{x264.aq_strength:g}"]
    if x264.psy_rd is not None:
        args += ["-psy-rd", x264.psy_rd]
    return args


def level_idc(level: str) -> str:
    """H.264 ``level_idc`` of a ladder level ("4.1" → "41", "4" → "40").

    VA-API and QSV take the level as an integer (VA-API's named levels have no "4.0"; QSV has no
    names at all, and "4.1" would be read as 4).
    """
    return str(round(float(level) * 10))


def _hardware_inputs(encoder: str, device: str | None) -> list[str]:
    """Device set-up (global) and decode options (for the source input) of ``encoder``.

    Decoding uses the GPU where it can (ffmpeg falls back to software decoding by itself for
    codecs the GPU cannot decode) but hands frames back in system memory: auto-rotation,
    tone-mapping and the 10-bit → 8-bit conversion need them there, and the plan does not say
    which sources need which.
    """
    node = device or DEFAULT_RENDER_NODE
    if encoder == NVENC:
        return ["-hwaccel", "cuda"]
    if encoder == VAAPI:
        return ["-vaapi_device", node, "-hwaccel", "vaapi"]
    # QSV on Linux runs on top of VA-API: derive the QSV device from the render node.
    return [
        "-init_hw_device", f"vaapi=va:{node}",
        "-init_hw_device", "qsv=qs@va",
        "-filter_hw_device", "qs",
    ]  # fmt: skip


def _hardware_video(encoder: str, plan: EncodePlan, tuning: EncoderTuning) -> list[str]:
    """Codec options of a hardware ``encoder`` (rate control ≈ capped CRF, fixed GOP)."""
    gop = str(gop_frames(plan.fps, GOP_SECONDS))
    args = ["-c:v", encoder]
    if encoder == NVENC:
        # Constant quality capped by each rung's -maxrate/-bufsize (-b:v 0: no average target).
        args += ["-preset", NVENC_PRESETS.get(tuning.preset, "p5"), "-tune", "hq"]
        args += ["-rc", "vbr", "-cq", str(tuning.crf), "-b:v", "0"]
    elif encoder == QSV:
        args += ["-preset", QSV_PRESETS.get(tuning.preset, "medium"), "-look_ahead", "0"]
    else:
        args += ["-rc_mode", "VBR"]
    # No -sc_threshold: in ffmpeg 5.1 it is a private option of libx264 (and the MPEG encoders);
    # other encoders ignore it with a warning. Scene-cut keyframes are off by -no-scenecut
    # (NVENC); the forced IDR every GOP keeps segments aligned on every encoder.
    args += ["-g", gop, "-keyint_min", gop]
    args += ["-force_key_frames", f"expr:gte(t,n_forced*{GOP_SECONDS})"]
    if encoder == NVENC:
        args += ["-forced-idr", "1", "-no-scenecut", "1"]
    elif encoder == QSV:
        args += ["-forced_idr", "1", "-idr_interval", "0"]
    else:
        args += ["-idr_interval", "0"]
    return args


def _hardware_rung(encoder: str, i: int, spec: RungSpec) -> list[str]:
    """Per-rung options of a hardware encoder: the same caps, profile and level as software."""
    args = []
    if encoder != NVENC:  # VBR with the table's average as target, capped like software
        args += [f"-b:v:{i}", f"{spec.video_kbps}k"]
    args += [f"-maxrate:v:{i}", f"{spec.max_kbps}k", f"-bufsize:v:{i}", f"{spec.buffer_kbps}k"]
    profile = spec.profile
    if encoder == VAAPI and profile == "baseline":
        profile = "constrained_baseline"  # the only baseline VA-API offers
    level = spec.level if encoder == NVENC else level_idc(spec.level)
    args += [f"-profile:v:{i}", profile, f"-level:v:{i}", level]
    args += [f"-bf:v:{i}", "0" if spec.profile == "baseline" else str(HW_B_FRAMES)]
    return args


def build_command(
    plan: EncodePlan,
    source: Path,
    out_dir: Path,
    tuning: EncoderTuning,
    *,
    tonemap_available: bool = True,
    encoder: str = SOFTWARE_ENCODER,
    device: str | None = None,
) -> list[str]:
    """The full ffmpeg argument list for ``plan`` (pure, tested as data).

    ``encoder`` is libx264 or one of :data:`HARDWARE_ENCODERS`; ``device`` is the DRM render
    node for VA-API/QSV (default :data:`DEFAULT_RENDER_NODE`; NVENC ignores it).
    """
    check_encoder(encoder)
    hardware = encoder != SOFTWARE_ENCODER
    args = [tuning.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats"]
    args += ["-progress", "pipe:1", "-filter_complex_threads", str(tuning.filter_threads)]
    if hardware:
        args += _hardware_inputs(encoder, device)
    args += source_input_options(plan.input_format, tuning.max_pixels)
    if plan.limit_seconds is not None:
        args += ["-t", f"{plan.limit_seconds:g}"]
    args += ["-i", f"file:{source}"]
    if plan.audio_index is None:
        # Silence exactly as long as the video (an endless lavfi source would never end:
        # -shortest does not stop a -filter_complex graph in ffmpeg 5.1).
        args += ["-f", "lavfi", "-t", f"{plan.duration:.3f}"]
        args += ["-i", "anullsrc=channel_layout=stereo:sample_rate=48000"]
    graph = filter_graph(
        plan, tonemap_available=tonemap_available, encoder=encoder, out_dir=out_dir
    )
    args += ["-filter_complex", graph]
    for i in range(len(plan.renditions)):
        args += ["-map", f"[v{i}]", "-map", f"[a{i}]"]
    if plan.limit_seconds is not None:
        args += ["-t", f"{plan.limit_seconds:g}"]
    if hardware:
        args += _hardware_video(encoder, plan, tuning)
        for i, rung in enumerate(plan.renditions):
            args += _hardware_rung(encoder, i, rung.spec)
    else:
        args += ["-c:v", "libx264", "-preset", tuning.preset, "-crf", str(tuning.crf)]
        args += x264_keyframes(plan)
        args += x264_tuning(plan)
        args += ["-pix_fmt", "yuv420p"]
        if tuning.x264_threads:
            args += ["-threads:v", str(tuning.x264_threads)]
        lookahead = effective_lookahead(tuning)
        if lookahead is not None:
            args += ["-rc-lookahead", str(lookahead)]
        for i, rung in enumerate(plan.renditions):
            spec = rung.spec
            args += [f"-maxrate:v:{i}", f"{spec.max_kbps}k"]
            args += [f"-bufsize:v:{i}", f"{spec.buffer_kbps}k"]
            args += [f"-profile:v:{i}", spec.profile, f"-level:v:{i}", spec.level]
    args += ["-c:a", "aac", "-ac", "2", "-ar", "48000"]
    for i, rung in enumerate(plan.renditions):
        args += [f"-b:a:{i}", f"{rung.spec.audio_kbps}k"]
    args += ["-map_metadata", "-1", "-map_chapters", "-1"]
    args += ["-max_muxing_queue_size", str(tuning.max_muxing_queue)]
    stream_map = " ".join(f"v:{i},a:{i},name:{r.name}" for i, r in enumerate(plan.renditions))
    args += [
        "-f", "hls",
        "-hls_time", str(plan.segment_seconds),
        "-hls_playlist_type", "vod",
        "-hls_list_size", "0",
        "-hls_flags", "independent_segments+temp_file",
        "-hls_segment_type", "mpegts",
        "-start_number", "0",
        "-hls_segment_filename", str(out_dir / "%v" / SEGMENT_PATTERN),
        "-master_pl_name", MASTER_NAME,
        "-var_stream_map", stream_map,
        str(out_dir / "%v" / MEDIA_NAME),
    ]  # fmt: skip
    if plan.extras is not None:
        args += extras_outputs(plan.extras, out_dir, tuning.max_muxing_queue)
    return args


__all__ = [
    "DEFAULT_RENDER_NODE",
    "EXTRAS_ENCODER_THREADS",
    "HARDWARE_ENCODERS",
    "HW_B_FRAMES",
    "MASTER_NAME",
    "MEDIA_NAME",
    "NVENC",
    "NVENC_PRESETS",
    "POSTER_ANALYSIS",
    "POSTER_JPEG_QUALITY",
    "PRESET_LOOKAHEAD",
    "QSV",
    "QSV_EXTRA_HW_FRAMES",
    "QSV_PRESETS",
    "SEGMENT_PATTERN",
    "SOFTWARE_ENCODER",
    "STORYBOARD_JPEG_QUALITY",
    "TONEMAP_CHAIN",
    "VAAPI",
    "X264_KEYINT_FACTOR",
    "EncoderTuning",
    "build_command",
    "check_encoder",
    "effective_lookahead",
    "extras_chains",
    "extras_outputs",
    "filter_graph",
    "filter_value",
    "level_idc",
    "x264_keyframes",
    "x264_tuning",
]
