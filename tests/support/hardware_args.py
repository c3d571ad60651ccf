"""Encode plans of every shape and readers of ffmpeg argument lists, for the hardware tests
(tests/unit/test_hardware_args.py checks the lists as data; tests/integration/test_hardware.py
runs them)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from speak_encoder.pipeline.ffmpeg import EncoderTuning, build_command
from speak_encoder.pipeline.ladder import Ladder, load_ladder
from speak_encoder.pipeline.plan import EncodeOptions, EncodePlan, plan_encode
from speak_encoder.pipeline.probe import AudioStream, MediaInfo, VideoStream


def make_plan(
    width: int = 1920,
    height: int = 1080,
    *,
    rotation: int = 0,
    sar: Fraction = Fraction(1),
    pix_fmt: str = "yuv420p",
    bit_depth: int = 8,
    hdr: bool = False,
    audio: bool = True,
    short: bool = False,
    fps: Fraction = Fraction(30),
    ladder: Ladder | None = None,
) -> EncodePlan:
    transfer, primaries = ("smpte2084", "bt2020") if hdr else ("bt709", "bt709")
    codec = "hevc" if hdr else "h264"
    video = VideoStream(0, codec, width, height, sar, rotation, fps, pix_fmt, bit_depth,
                        transfer, primaries)  # fmt: skip
    sound = AudioStream(1, "aac", 2, 44100) if audio else None
    info = MediaInfo("mov,mp4", 125.0, 1, video, sound, int(audio), 0)
    # The ladder's structure (extras are tested in test_ffmpeg_command.py).
    return plan_encode(info, EncodeOptions(short=short, extras=False), ladder or load_ladder())


PLANS: dict[str, Callable[[], EncodePlan]] = {
    "landscape": make_plan,
    "portrait_rotated": lambda: make_plan(rotation=90),
    "10bit": lambda: make_plan(1280, 720, pix_fmt="yuv420p10le", bit_depth=10),
    "hdr": lambda: make_plan(3840, 2160, pix_fmt="yuv420p10le", bit_depth=10, hdr=True),
    "no_audio": lambda: make_plan(audio=False),
    "short": lambda: make_plan(short=True),
    "non_square": lambda: make_plan(720, 480, sar=Fraction(32, 27)),
    "60fps": lambda: make_plan(fps=Fraction(120)),
}


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def sections(args: list[str]) -> dict[str, list[str]]:
    """inputs | graph | maps | video codec | audio + muxer."""
    graph, video, audio = args.index("-filter_complex"), args.index("-c:v"), args.index("-c:a")
    return {
        "inputs": args[:graph],
        "graph": [args[graph + 1]],
        "maps": args[graph + 2 : video],
        "video": args[video:audio],
        "rest": args[audio:],
    }


def commands(plan: EncodePlan, encoder: str, **kwargs: bool) -> tuple[list[str], list[str]]:
    tuning = EncoderTuning()
    src, out = Path("/in/src.mp4"), Path("/w/out")
    software = build_command(plan, src, out, tuning, **kwargs)  # type: ignore[arg-type]
    hw = build_command(plan, src, out, tuning, encoder=encoder, **kwargs)  # type: ignore[arg-type]
    return software, hw
