"""Running the encode stage's ffmpeg command: progress, failures explained, capabilities.

:func:`run_ffmpeg` runs a command built by :func:`speak_encoder.pipeline.ffmpeg.build_command`
in its own process group, turns its ``-progress`` lines into :class:`EncodeProgress`
snapshots, watches its resident memory (``FFMPEG_MEMORY_MAX_MB``) and kills it on cancel or
failure; a failed exit becomes an error of the tree with the most useful stderr lines
(:func:`explain_failure`). :func:`ffmpeg_info` says what the installed build can do; the
answers of ``ffmpeg -version``/``-filters``/``-encoders`` are asked once per process and binary
(:func:`tool_output`: the hardware detection reuses them instead of starting ffmpeg again).
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from speak_encoder.config import DEFAULT_MAX_SOURCE_PIXELS
from speak_encoder.errors import EncodeError, MediaError, MemoryLimitExceeded, ResourceError
from speak_encoder.pipeline.ffmpeg_answers import binary_identity, read_answers, write_answers
from speak_encoder.pipeline.probe import oversized_frame, pixels_error
from speak_encoder.proc import Completed, run_capture, start, stop, watch_memory

#: Lines of ffmpeg's stderr kept to explain a failure (bounded: corrupt input floods it).
STDERR_TAIL_LINES = 40


# --- progress --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncodeProgress:
    out_seconds: float
    fraction: float  # 0..1
    speed: float | None  # × real time
    fps: float | None
    eta_seconds: float | None
    done: bool


class ProgressParser:
    """Turns ffmpeg ``-progress`` key=value lines into :class:`EncodeProgress` snapshots."""

    def __init__(self, duration: float) -> None:
        self.duration = max(duration, 0.001)
        self._block: dict[str, str] = {}

    def feed(self, line: str) -> EncodeProgress | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        self._block[key] = value.strip()
        if key != "progress":
            return None
        block, self._block = self._block, {}
        out_us = _number(block.get("out_time_us")) or _number(block.get("out_time_ms")) or 0.0
        seconds = max(0.0, out_us / 1_000_000)
        speed = _number(block.get("speed", "").rstrip("x"))
        fraction = min(1.0, seconds / self.duration)
        done = value.strip() == "end"
        eta = None
        if speed and speed > 0 and not done:
            eta = max(0.0, (self.duration - seconds) / speed)
        return EncodeProgress(
            out_seconds=seconds,
            fraction=1.0 if done else fraction,
            speed=speed,
            fps=_number(block.get("fps")),
            eta_seconds=0.0 if done else eta,
            done=done,
        )


def _number(text: str | None) -> float | None:
    if not text or text == "N/A":
        return None
    try:
        return float(text)
    except ValueError:
        return None


# --- running ---------------------------------------------------------------------------

_NOISE = re.compile(r"^\s*(\[.*?\]\s*)?(Last message repeated|frame=|size=)")


def explain_failure(
    returncode: int, stderr_tail: list[str], *, max_pixels: int = DEFAULT_MAX_SOURCE_PIXELS
) -> EncodeError | ResourceError | MediaError:
    """Map an ffmpeg exit into the error tree with the most useful stderr lines."""
    oversized = oversized_frame("\n".join(stderr_tail))
    if oversized is not None:  # a frame bigger than the probe saw (e.g. PNG frames that grow)
        return pixels_error(*oversized, max_pixels, later=True)
    if returncode < 0:
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return ResourceError(
            f"ffmpeg was killed by {name} (not by speak-encoder): out of memory or stopped "
            "by the system"
        )
    lines = [line for line in stderr_tail if line.strip() and not _NOISE.match(line)]
    detail = " | ".join(lines[-4:])[:600] or "no error output"
    return EncodeError(f"ffmpeg failed (exit code {returncode}): {detail}")


async def run_ffmpeg(
    argv: list[str],
    *,
    duration: float,
    on_progress: Callable[[EncodeProgress], None] | None = None,
    memory_max_mb: int = 0,
    max_pixels: int = DEFAULT_MAX_SOURCE_PIXELS,
) -> None:
    """Run ffmpeg, report progress, and kill its process group on cancel or failure.

    Above ``memory_max_mb`` MiB of resident memory (0: no limit) ffmpeg is killed and the job
    fails for good (:class:`MemoryLimitExceeded`). The limit is on RSS, sampled every
    :data:`~speak_encoder.proc.MEMORY_POLL_S`: an address-space limit (RLIMIT_AS) would kill
    honest encodes, whose virtual size is several times their RSS (x264 threads, malloc
    arenas); ``-max_pixels`` already stops a decoder before it allocates a giant frame.
    """
    proc = await start(
        argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    parser = ProgressParser(duration)

    async def read_progress() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            snapshot = parser.feed(raw.decode("utf-8", "replace"))
            if snapshot is not None and on_progress is not None:
                on_progress(snapshot)

    async def read_stderr() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            tail.append(raw.decode("utf-8", "replace").rstrip()[:500])

    limit = memory_max_mb * 1024 * 1024 if memory_max_mb > 0 else None
    watcher = asyncio.ensure_future(watch_memory(proc, limit))
    try:
        await asyncio.gather(read_progress(), read_stderr())
        returncode = await proc.wait()
    finally:
        try:
            await stop(proc)
            hit = watcher.result() if watcher.done() and not watcher.cancelled() else None
        finally:  # (also when cancelled again while stopping: no memory watcher left pending)
            watcher.cancel()
            await asyncio.wait({watcher})  # finished before the process object goes
    if hit is not None:
        raise MemoryLimitExceeded(
            f"ffmpeg used {hit / 1024 / 1024:.0f} MB of memory on this source, more than "
            f"FFMPEG_MEMORY_MAX_MB ({memory_max_mb} MB): stopped, the job fails for good"
        )
    oversized = oversized_frame("\n".join(tail))
    if oversized is not None:  # ffmpeg skips such frames and goes on: the source is refused
        raise pixels_error(*oversized, max_pixels, later=True)
    if returncode != 0:
        raise explain_failure(returncode, list(tail), max_pixels=max_pixels)


# --- capabilities -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FfmpegInfo:
    version: str
    has_zscale: bool
    has_libx264: bool


_INFO_CACHE: dict[str, FfmpegInfo] = {}
#: Successful answers of ``ffmpeg -hide_banner <flag>`` by (binary, flag); bounded (a process
#: knows one or two binaries and asks three flags).
_ANSWERS: dict[tuple[str, str], Completed] = {}
MAX_ANSWERS = 16
#: Seconds one such query may take.
QUERY_TIMEOUT_S = 30.0


#: The questions :func:`ffmpeg_info` asks.
_QUERIES = ("-version", "-filters", "-encoders")


def _remember(key: tuple[str, str], done: Completed) -> None:
    if len(_ANSWERS) >= MAX_ANSWERS:
        _ANSWERS.clear()
    _ANSWERS[key] = done


async def tool_output(ffmpeg: str, flag: str) -> Completed:
    """``ffmpeg -hide_banner <flag>`` (``-version``, ``-filters``, ``-encoders``), run once per
    process and binary: a successful answer is kept. A timeout (:data:`QUERY_TIMEOUT_S`) raises
    :class:`TimeoutError` for the caller to translate."""
    key = (ffmpeg, flag)
    known = _ANSWERS.get(key)
    if known is not None:
        return known
    done = await run_capture([ffmpeg, "-hide_banner", flag], timeout=QUERY_TIMEOUT_S)
    if done.returncode == 0:
        _remember(key, done)
    return done


async def ffmpeg_info(ffmpeg: str = "ffmpeg", *, cache_dir: Path | None = None) -> FfmpegInfo:
    """Version and the features the encoder depends on (cached per binary path). With
    ``cache_dir`` (DATA_DIR) the answers of the previous run are used while the binary is the
    same, and what had to be asked is kept for the next (:mod:`.ffmpeg_answers`)."""
    cached = _INFO_CACHE.get(ffmpeg)
    if cached is not None:
        return cached
    identity = binary_identity(ffmpeg) if cache_dir is not None else None
    kept = read_answers(cache_dir, identity) if cache_dir is not None and identity else {}
    for flag in _QUERIES:
        if flag in kept and (ffmpeg, flag) not in _ANSWERS:
            _remember((ffmpeg, flag), Completed(0, kept[flag], b""))
    version_out, filters, encoders = answers = await asyncio.gather(
        *(tool_output(ffmpeg, flag) for flag in _QUERIES)
    )
    asked = {
        flag: done.stdout
        for flag, done in zip(_QUERIES, answers, strict=True)
        if flag not in kept and done.returncode == 0
    }
    if asked and cache_dir is not None and identity is not None:
        write_answers(cache_dir, identity, asked)
    first = version_out.stdout.decode("utf-8", "replace").splitlines()[:1]
    match = re.search(r"ffmpeg version (\S+)", first[0] if first else "")
    info = FfmpegInfo(
        version=match.group(1) if match else "unknown",
        has_zscale=b" zscale " in filters.stdout and b" tonemap " in filters.stdout,
        has_libx264=b" libx264 " in encoders.stdout,
    )
    _INFO_CACHE[ffmpeg] = info
    return info


__all__ = [
    "QUERY_TIMEOUT_S",
    "STDERR_TAIL_LINES",
    "EncodeProgress",
    "FfmpegInfo",
    "ProgressParser",
    "explain_failure",
    "ffmpeg_info",
    "run_ffmpeg",
    "tool_output",
]
