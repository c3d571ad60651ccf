"""Hardware encoders without a GPU (docs/encoding.md §8).

* The argument lists of NVENC / QSV / VA-API are checked as data against libx264's: same rungs,
  GOP, rate caps, audio and HLS options; the upload comes after every software conversion.
  Their option names and named values are checked against the installed ffmpeg's own help.
* Detection, the cache and the per-job fallback run against a fake ``ffmpeg`` (see
  ``tests/support/fake_ffmpeg.py``) that lists hardware encoders and fails on demand, and
  otherwise runs the real ffmpeg with the hardware parts swapped for software ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

from speak_encoder.errors import EncodeError, OutputInvalid
from speak_encoder.pipeline import hardware
from speak_encoder.pipeline.ffmpeg import (
    HARDWARE_ENCODERS,
    NVENC,
    QSV,
    SOFTWARE_ENCODER,
    VAAPI,
    EncoderTuning,
    build_command,
    filter_graph,
    level_idc,
)
from speak_encoder.pipeline.hardware import (
    choose_encoder,
    detect,
    encode_with_fallback,
    needs_device,
)
from speak_encoder.pipeline.hardware_cache import (
    DeviceScan,
    HardwareReport,
    load_cached,
    scan_devices,
)
from speak_encoder.pipeline.hls import write_master_playlist
from speak_encoder.pipeline.ladder import Ladder, load_ladder, parse_ladder
from speak_encoder.pipeline.plan import EncodeOptions, EncodePlan, plan_encode
from speak_encoder.pipeline.probe import AudioStream, MediaInfo, VideoStream, probe
from speak_encoder.pipeline.verify import validate_folder
from tests.support.fake_ffmpeg import FakeFfmpeg, install

EVERYTHING = DeviceScan(
    render_nodes=("/dev/dri/renderD128",),
    nvidia_devices=("/dev/nvidia0",),
    nvidia_driver="NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.54.03",
)
LOGGER = "speak_encoder.pipeline.hardware"

# --- the argument lists, as data ----------------------------------------------------------


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
#: Input options only the hardware paths have, each with one value.
HW_INPUT_OPTIONS = {"-hwaccel", "-vaapi_device", "-init_hw_device", "-filter_hw_device"}


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


def without_hw_inputs(inputs: list[str]) -> list[str]:
    out, skip = [], False
    for arg in inputs:
        if skip:
            skip = False
        elif arg in HW_INPUT_OPTIONS:
            skip = True
        else:
            out.append(arg)
    return out


def scaler_sizes(graph: str) -> list[tuple[int, int]]:
    sizes = re.findall(r"\[s\d+\]scale(?:_\w+)?=(?:w=)?(\d+):(?:h=)?(\d+)", graph)
    return [(int(w), int(h)) for w, h in sizes]


def commands(plan: EncodePlan, encoder: str, **kwargs: bool) -> tuple[list[str], list[str]]:
    tuning = EncoderTuning()
    src, out = Path("/in/src.mp4"), Path("/w/out")
    software = build_command(plan, src, out, tuning, **kwargs)  # type: ignore[arg-type]
    hw = build_command(plan, src, out, tuning, encoder=encoder, **kwargs)  # type: ignore[arg-type]
    return software, hw


@pytest.mark.parametrize("encoder", HARDWARE_ENCODERS)
@pytest.mark.parametrize("case", sorted(PLANS))
def test_hardware_lists_match_software_except_the_video_encoder(encoder: str, case: str) -> None:
    plan = PLANS[case]()
    software, hw = commands(plan, encoder)
    sw, hd = sections(software), sections(hw)
    # audio, metadata, muxing queue and every HLS option: identical, byte for byte
    assert hd["rest"] == sw["rest"]
    assert option(hw, "-var_stream_map") == option(software, "-var_stream_map")
    assert option(hw, "-master_pl_name") == "manifest.m3u8"
    # the same inputs (source, -t for shorts, the bounded silent track), plus device set-up
    # placed before them
    assert without_hw_inputs(hd["inputs"]) == sw["inputs"]
    assert hw.index("file:/in/src.mp4") == software.index("file:/in/src.mp4") + (
        len(hd["inputs"]) - len(sw["inputs"])
    )
    assert hd["maps"] == sw["maps"]
    # same rungs, same order, same sizes
    assert scaler_sizes(hd["graph"][0]) == scaler_sizes(sw["graph"][0])
    assert [(r.width, r.height) for r in plan.renditions] == scaler_sizes(hd["graph"][0])
    # audio chain identical
    assert hd["graph"][0].split(";")[-1] == sw["graph"][0].split(";")[-1]
    # GOP and forced keyframes: a fixed 2 s GOP (libx264 aligns IDRs to the segments and adds
    # scene cuts, measured in bench/quality.py; hardware encoders were not measured)
    gop = str(round(plan.fps * 2))
    assert option(hw, "-g") == gop and option(hw, "-keyint_min") == gop
    assert option(hw, "-force_key_frames") == "expr:gte(t,n_forced*2)"
    assert "-sc_threshold" not in hw  # libx264-only in ffmpeg 5.1: ignored by the others
    # rate caps, profile and level per rung
    for i, rung in enumerate(plan.renditions):
        assert option(hw, f"-maxrate:v:{i}") == option(software, f"-maxrate:v:{i}")
        assert option(hw, f"-bufsize:v:{i}") == option(software, f"-bufsize:v:{i}")
        assert option(hw, f"-profile:v:{i}") == rung.spec.profile
        level = rung.spec.level if encoder == NVENC else level_idc(rung.spec.level)
        assert option(hw, f"-level:v:{i}") == level
        if encoder != NVENC:  # VBR: the table's average as the target
            assert option(hw, f"-b:v:{i}") == f"{rung.spec.video_kbps}k"
    assert option(hw, "-c:v") == encoder
    assert "-pix_fmt" not in hw  # hardware frames: the 8-bit format is set before the upload


@pytest.mark.parametrize("encoder", HARDWARE_ENCODERS)
@pytest.mark.parametrize("case", sorted(PLANS))
@pytest.mark.parametrize("tonemap_available", [True, False])
def test_upload_comes_after_every_software_step(
    encoder: str, case: str, tonemap_available: bool
) -> None:
    plan = PLANS[case]()
    graph = filter_graph(plan, tonemap_available=tonemap_available, encoder=encoder)
    software = filter_graph(plan, tonemap_available=tonemap_available)
    head = graph.split(";")[0]
    # the software part (tone-mapping, frame rate) is the same, then 8-bit 4:2:0, upload, split
    sw_head = software.split(";")[0]
    assert head.startswith(sw_head.split("split=")[0] + "format=nv12,hwupload")
    assert head.index("hwupload") > head.index("fps=")
    if plan.tonemap and tonemap_available:
        assert head.index("hwupload") > head.index("tonemap=")
    else:
        assert "tonemap" not in head
    assert f"split={len(plan.renditions)}" in head
    # rotation is honoured once, by ffmpeg's auto-rotation before the graph: frames must reach
    # the graph in system memory, and nothing may rotate a second time
    args = build_command(plan, Path("s"), Path("o"), EncoderTuning(), encoder=encoder)
    assert "transpose" not in graph and "-autorotate" not in args and "-noautorotate" not in args
    assert "-hwaccel_output_format" not in args
    rung_chains = graph.split(";")[1:-1]
    assert len(rung_chains) == len(plan.renditions)
    assert all(chain.endswith(f",setsar=1[v{i}]") for i, chain in enumerate(rung_chains))
    assert "format=yuv420p" not in graph  # no software conversion after the upload


def test_rotated_plan_keeps_portrait_sizes() -> None:
    _, hw = commands(PLANS["portrait_rotated"](), NVENC)
    graph = option(hw, "-filter_complex")
    assert "[s0]scale_cuda=w=1080:h=1920" in graph and "[s2]scale_cuda=w=480:h=854" in graph


def test_no_audio_keeps_the_silent_track() -> None:
    for encoder in HARDWARE_ENCODERS:
        software, hw = commands(PLANS["no_audio"](), encoder)
        assert hw.count("-i") == 2
        silence = "anullsrc=channel_layout=stereo:sample_rate=48000"
        at_hw, at_sw = hw.index(silence), software.index(silence)
        assert hw[at_hw - 5 : at_hw + 1] == software[at_sw - 5 : at_sw + 1]
        assert hw[at_hw - 3 : at_hw - 1] == ["-t", "125.000"]  # bounded, never endless
        assert "[1:a]aresample" in option(hw, "-filter_complex")


def test_device_options() -> None:
    plan = make_plan()
    nvenc = build_command(plan, Path("s"), Path("o"), EncoderTuning(), encoder=NVENC)
    assert nvenc[nvenc.index("-hwaccel") : nvenc.index("-hwaccel") + 2] == ["-hwaccel", "cuda"]
    assert option(nvenc, "-rc") == "vbr" and option(nvenc, "-cq") == "19"
    assert option(nvenc, "-b:v") == "0" and option(nvenc, "-forced-idr") == "1"
    vaapi = build_command(plan, Path("s"), Path("o"), EncoderTuning(), encoder=VAAPI,
                          device="/dev/dri/renderD129")  # fmt: skip
    assert option(vaapi, "-vaapi_device") == "/dev/dri/renderD129"
    assert option(vaapi, "-rc_mode") == "VBR"
    qsv = build_command(plan, Path("s"), Path("o"), EncoderTuning(), encoder=QSV)
    assert option(qsv, "-init_hw_device") == "vaapi=va:/dev/dri/renderD128"
    assert option(qsv, "-filter_hw_device") == "qs" and option(qsv, "-forced_idr") == "1"
    with pytest.raises(ValueError, match="unknown encoder"):
        build_command(plan, Path("s"), Path("o"), EncoderTuning(), encoder="h264_magic")


def test_baseline_rungs_get_no_b_frames() -> None:
    ladder = parse_ladder(
        '[[rung]]\nname = "360p"\nheight = 360\nvideo_kbps = 800\nmax_kbps = 856\n'
        'buffer_kbps = 1200\nprofile = "baseline"\nlevel = "3.0"\naudio_kbps = 64\n'
    )
    plan = make_plan(640, 360, ladder=ladder)
    nvenc = build_command(plan, Path("s"), Path("o"), EncoderTuning(), encoder=NVENC)
    assert option(nvenc, "-bf:v:0") == "0" and option(nvenc, "-level:v:0") == "3.0"
    vaapi = build_command(plan, Path("s"), Path("o"), EncoderTuning(), encoder=VAAPI)
    assert option(vaapi, "-profile:v:0") == "constrained_baseline"
    assert option(vaapi, "-level:v:0") == "30" and option(vaapi, "-bf:v:0") == "0"
    main = build_command(make_plan(), Path("s"), Path("o"), EncoderTuning(), encoder=QSV)
    assert option(main, "-bf:v:2") == "2"


def _help(*args: str) -> str:
    return subprocess.run(
        ["ffmpeg", "-hide_banner", *args], capture_output=True, text=True, check=True
    ).stdout


def _options(text: str) -> dict[str, set[str]]:
    """``-name <type>`` lines and the named constants listed under each."""
    found: dict[str, set[str]] = {}
    last: set[str] | None = None
    for line in text.splitlines():
        opt = re.match(r"^\s{1,3}-?([\w-]+)\s+<\w+>", line)
        const = re.match(r"^\s{4,}([\w.-]+)\s+(-?\d+)?\s+[E.]", line)
        if opt:
            last = found.setdefault(opt.group(1), set())
        elif const and last is not None:
            last.add(const.group(1))
    return found


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("encoder", HARDWARE_ENCODERS)
def test_options_and_values_are_known_to_this_ffmpeg(encoder: str) -> None:
    """Without a GPU ffmpeg stops at the device, before it reads the codec options: check the
    names and named values against the build's own help instead. (A bad named value is a fatal
    error; an option the encoder does not have is silently dropped with a warning, e.g. a
    misspelt -forced-idr would leave segments without IDR frames.)"""
    if encoder not in _help("-encoders"):
        pytest.skip(f"this ffmpeg has no {encoder}")
    private = _options(_help("-h", f"encoder={encoder}"))
    full = _help("-h", "full")
    codec_context = full[full.index("AVCodecContext AVOptions:") :].split("\n", 1)[1]
    generic = _options(re.split(r"\n\S.*AVOptions:", codec_context)[0])  # up to the next block
    assert {"b", "bf", "maxrate", "bufsize", "g", "keyint_min", "level"} <= set(generic)
    video = sections(commands(make_plan(), encoder)[1])["video"]
    cli_options = {"c:v", "force_key_frames"}  # options of the ffmpeg tool itself
    for name, value in zip(video[::2], video[1::2], strict=True):
        base = name.lstrip("-").split(":")[0]
        if name.lstrip("-") in cli_options:
            continue
        known = private.get(base, generic.get(base))
        assert known is not None, f"{encoder} has no option {name}"
        if known and not re.fullmatch(r"-?[\d.]+k?", value):
            assert value in known, f"{encoder} {name} {value!r} not in {sorted(known)}"
    graph = option(commands(make_plan(), encoder)[1], "-filter_complex")
    filters = _help("-filters")
    for used in set(re.findall(r"(scale_\w+|hwupload\w*)=?", graph)):
        assert f" {used} " in filters, used
        params = re.findall(rf"{used}=([^,;\[]*)", graph)
        names = {p.split("=")[0] for arg in params for p in arg.split(":")}
        declared = _options(_help("-h", f"filter={used}"))
        assert names <= set(declared) | {"extra_hw_frames"}, (used, names)


# --- devices ------------------------------------------------------------------------------


def test_scan_devices(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    (dev / "dri").mkdir(parents=True)
    for name in ("renderD129", "renderD128", "card0", "by-path"):
        (dev / "dri" / name).touch()
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia1"):
        (dev / name).touch()
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX Kernel Module  535.54.03\nGCC version: 12\n")
    scan = scan_devices(dev, version)
    assert scan.render_nodes == (f"{dev}/dri/renderD128", f"{dev}/dri/renderD129")
    assert scan.nvidia_devices == (f"{dev}/nvidia0", f"{dev}/nvidia1") and scan.nvidia
    assert scan.nvidia_driver.endswith("535.54.03")
    empty = scan_devices(tmp_path / "nothing", tmp_path / "missing")
    assert empty == DeviceScan() and not empty.nvidia


def test_a_listed_encoder_needs_its_device() -> None:
    only_render = DeviceScan(render_nodes=("/dev/dri/renderD128",))
    assert needs_device(NVENC, only_render, None) == "no NVIDIA device (/dev/nvidia0)"
    assert needs_device(VAAPI, only_render, None) is None
    assert needs_device(QSV, only_render, None) is None
    assert needs_device(VAAPI, only_render, "/dev/dri/renderD129") is not None
    assert needs_device(NVENC, DeviceScan(nvidia_devices=("/dev/nvidia0",)), None) is None
    # a loaded driver without a device node (a container without the GPU passed in) is not enough
    assert needs_device(NVENC, DeviceScan(nvidia_driver="NVRM 535"), None) is not None


# --- detection with a fake ffmpeg ---------------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path) -> FakeFfmpeg:
    return install(tmp_path / "fake-bin")


@pytest.fixture
def small_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-rung, one-segment test clip where the clip's shape is not the point (speed)."""
    monkeypatch.setattr(hardware, "TEST_CLIP_SIZE", "320x180")
    monkeypatch.setattr(hardware, "TEST_CLIP_SECONDS", 2)


def made_report(*working: str) -> HardwareReport:
    """A detection result as :func:`detect` would return it (for the per-job tests)."""
    return HardwareReport(
        ffmpeg_version="5.1-fake",
        fingerprint="0" * 64,
        devices=EVERYTHING,
        render_node=None,
        listed=HARDWARE_ENCODERS,
        candidates=HARDWARE_ENCODERS,
        working=working,
    )


def run_detect(fake: FakeFfmpeg, cache: Path, **kwargs: object) -> HardwareReport:
    kwargs.setdefault("devices", EVERYTHING)
    return asyncio.run(detect(fake.path, cache, **kwargs))  # type: ignore[arg-type]


def test_no_hardware_encoder_in_the_build_means_software(fake: FakeFfmpeg, tmp_path: Path) -> None:
    fake.configure(encoders=[])
    report = run_detect(fake, tmp_path / "cache")
    assert report.listed == () and report.working == () and report.best == SOFTWARE_ENCODER
    assert fake.ladder_encodes() == []
    assert not any("testsrc2" in " ".join(call) for call in fake.calls())  # no test clip made
    assert "no hardware encoder" in report.summary()


def test_listed_encoders_without_devices_are_not_candidates(
    fake: FakeFfmpeg, tmp_path: Path
) -> None:
    fake.configure(encoders=list(HARDWARE_ENCODERS))
    report = run_detect(fake, tmp_path / "cache", devices=DeviceScan())
    assert report.listed == HARDWARE_ENCODERS and report.candidates == ()
    assert report.best == SOFTWARE_ENCODER and fake.ladder_encodes() == []
    assert "NVIDIA" in report.detect_failures[NVENC]
    assert "render node" in report.detect_failures[VAAPI]


def test_detection_encodes_through_the_production_chain_and_keeps_what_works(
    fake: FakeFfmpeg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.configure(encoders=list(HARDWARE_ENCODERS), fail=[QSV])
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        report = run_detect(fake, cache)
    assert fake.ladder_encodes() == [NVENC, QSV, VAAPI]  # each candidate, best first
    assert report.working == (NVENC, VAAPI) and report.best == NVENC
    assert "Failed to initialise the device" in report.detect_failures[QSV]
    assert any(r.levelno == logging.WARNING and QSV in r.message for r in caplog.records)
    # the test encode is the production command: upload, one scaler per rung, the HLS ladder
    nvenc_call = next(c for c in fake.calls() if "h264_nvenc" in c)
    graph = option(nvenc_call, "-filter_complex")
    assert "hwupload_cuda,split=2" in graph
    assert "scale_cuda=w=1280:h=720" in graph and "scale_cuda=w=854:h=480" in graph
    assert option(nvenc_call, "-var_stream_map") == "v:0,a:0,name:720p v:1,a:1,name:480p"
    assert option(nvenc_call, "-hls_time") == "2" and option(nvenc_call, "-g") == "60"
    assert option(nvenc_call, "-hwaccel") == "cuda"
    # cached, with nothing else left behind
    assert sorted(p.name for p in cache.iterdir()) == ["hardware.json"]
    assert json.loads((cache / "hardware.json").read_text())["working"] == [NVENC, VAAPI]


@pytest.mark.usefixtures("small_clip")
def test_cache_is_reused_and_invalidated(fake: FakeFfmpeg, tmp_path: Path) -> None:
    fake.configure(encoders=[VAAPI], version="5.1.4")
    cache = tmp_path / "cache"
    first = run_detect(fake, cache)
    assert first.working == (VAAPI,) and not first.from_cache

    def detected_again(**kwargs: object) -> bool:
        fake.reset_calls()
        report = run_detect(fake, cache, **kwargs)
        assert report.working == (VAAPI,)
        again = fake.ladder_encodes() == [VAAPI]
        assert again != report.from_cache
        return again

    assert not detected_again()  # same ffmpeg, same devices: only `-version` was run
    assert [c[-1] for c in fake.calls()] == ["-version"]
    fake.configure(encoders=[VAAPI], version="5.1.5")
    assert detected_again()  # another ffmpeg build
    assert not detected_again()
    assert detected_again(devices=DeviceScan(render_nodes=("/dev/dri/renderD128", "/x/renderD129")))
    assert detected_again(redetect=True)
    (cache / "hardware.json").write_text("{not json")
    assert load_cached(cache) is None
    assert detected_again()


@pytest.mark.usefixtures("small_clip")
def test_a_hanging_test_encode_is_stopped(fake: FakeFfmpeg, tmp_path: Path) -> None:
    fake.configure(encoders=[NVENC], hang=[NVENC])
    started = time.monotonic()
    report = run_detect(fake, tmp_path / "cache", timeout=2.0)
    assert time.monotonic() - started < 20
    assert report.working == () and "did not finish within 2 s" in report.detect_failures[NVENC]


def test_detection_on_this_machine_uses_the_real_build(tmp_path: Path) -> None:
    report = asyncio.run(detect("ffmpeg", tmp_path / "cache"))
    assert report.ffmpeg_version != "unknown"
    scan = scan_devices()
    if not scan.nvidia and not scan.render_nodes:  # no GPU here nor in CI
        assert report.candidates == () and report.best == SOFTWARE_ENCODER


# --- per job: fallback and broken-codec memory --------------------------------------------


@pytest.fixture
def job(sample: Callable[[str], Path], tmp_path: Path) -> Callable[..., tuple[str, Path]]:
    """Run one job of the small landscape sample through ``encode_with_fallback``."""
    source = sample("landscape")
    plan = plan_encode(asyncio.run(probe(source)), EncodeOptions(extras=False), load_ladder())
    counter = iter(range(1000))

    def run(fake: FakeFfmpeg, report: HardwareReport | None, **kwargs: object) -> tuple[str, Path]:
        out = tmp_path / f"job-{next(counter)}" / "out"
        kwargs.setdefault("hardware_enabled", True)
        kwargs.setdefault("cache_dir", tmp_path / "cache")
        tuning = EncoderTuning(ffmpeg=fake.path, preset="ultrafast")
        used = asyncio.run(
            encode_with_fallback(plan, source, out, tuning, hardware=report, **kwargs)  # type: ignore[arg-type]
        )
        return used, out

    return run


def assert_valid(out: Path) -> None:
    asyncio.run(write_master_playlist(out))
    report = asyncio.run(validate_folder(out, expected_duration=3.0))
    assert report.ok, report.violations


def test_a_working_hardware_encoder_is_used(
    fake: FakeFfmpeg, tmp_path: Path, job: Callable[..., tuple[str, Path]]
) -> None:
    used, out = job(fake, made_report(NVENC, VAAPI))
    assert used == NVENC and fake.ladder_encodes() == [NVENC]
    assert_valid(out)


def test_a_failed_hardware_job_is_encoded_again_with_libx264(
    fake: FakeFfmpeg,
    tmp_path: Path,
    job: Callable[..., tuple[str, Path]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "cache"
    report = made_report(VAAPI)
    fake.configure(encoders=[VAAPI], fail=[VAAPI])  # it broke after start-up
    before = hardware.FALLBACKS[VAAPI]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        used, out = job(fake, report)
    assert used == SOFTWARE_ENCODER
    assert fake.ladder_encodes() == [VAAPI, SOFTWARE_ENCODER]
    assert not (out / "junk").exists()  # the failed attempt's files were wiped
    assert_valid(out)  # exactly the files the playlists name (check 6 included)
    assert hardware.FALLBACKS[VAAPI] == before + 1
    cached = load_cached(cache)
    assert cached is not None and cached.job_failures == {VAAPI: 1} and not cached.broken
    assert any("encoding it again with libx264" in r.message for r in caplog.records)


@pytest.mark.usefixtures("small_clip")
def test_n_failures_in_a_row_mark_a_codec_broken_until_redetection(
    fake: FakeFfmpeg,
    tmp_path: Path,
    job: Callable[..., tuple[str, Path]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.configure(encoders=[NVENC, VAAPI])
    cache = tmp_path / "cache"
    report = run_detect(fake, cache)
    fake.configure(encoders=[NVENC, VAAPI], fail=[NVENC])
    fake.reset_calls()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(hardware.DEFAULT_BROKEN_AFTER):
            assert job(fake, report)[0] == SOFTWARE_ENCODER
    assert fake.ladder_encodes() == [NVENC, SOFTWARE_ENCODER] * 3
    marked = [r for r in caplog.records if "marked broken" in r.message]
    assert len(marked) == 1 and NVENC in marked[0].message
    cached = load_cached(cache)
    assert cached is not None and NVENC in cached.broken
    assert "Failed to initialise" in cached.broken[NVENC]
    # the next job goes straight to the next-best encoder (the report in memory is stale;
    # the cache is the memory)
    fake.reset_calls()
    assert choose_encoder(report, hardware_enabled=True, cache_dir=cache) == VAAPI
    assert job(fake, report)[0] == VAAPI and fake.ladder_encodes() == [VAAPI]
    # a detection after a restart keeps the memory; re-detection forgets it
    assert NVENC in run_detect(fake, cache).broken
    fake.configure(encoders=[NVENC, VAAPI])
    fresh = run_detect(fake, cache, redetect=True)
    assert fresh.broken == {} and fresh.best == NVENC
    fake.reset_calls()
    assert job(fake, fresh)[0] == NVENC


def test_a_success_restarts_the_count(
    fake: FakeFfmpeg, tmp_path: Path, job: Callable[..., tuple[str, Path]]
) -> None:
    cache = tmp_path / "cache"
    report = made_report(VAAPI)
    for fails in (True, True, False, True, True):
        fake.configure(encoders=[VAAPI], fail=[VAAPI] if fails else [])
        job(fake, report)
    cached = load_cached(cache)
    assert cached is not None and cached.job_failures == {VAAPI: 2} and not cached.broken


def test_hardware_acceleration_false_never_tries_hardware(
    fake: FakeFfmpeg, tmp_path: Path, job: Callable[..., tuple[str, Path]]
) -> None:
    report = made_report(NVENC)
    used, out = job(fake, report, hardware_enabled=False)
    assert used == SOFTWARE_ENCODER and fake.ladder_encodes() == [SOFTWARE_ENCODER]
    assert choose_encoder(report, hardware_enabled=False, cache_dir=tmp_path / "cache") == (
        SOFTWARE_ENCODER
    )
    assert job(fake, None)[0] == SOFTWARE_ENCODER  # no detection at all: software
    assert_valid(out)


def test_a_bad_source_is_not_blamed_on_the_hardware(fake: FakeFfmpeg, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    report = made_report(VAAPI)
    not_media = tmp_path / "text.mp4"
    not_media.write_text("not a video\n" * 100)
    plan = make_plan(640, 360)
    with pytest.raises(EncodeError):
        asyncio.run(
            encode_with_fallback(
                plan,
                not_media,
                tmp_path / "out",
                EncoderTuning(ffmpeg=fake.path),
                hardware=report,
                hardware_enabled=True,
                cache_dir=cache,
            )
        )
    assert fake.ladder_encodes() == [VAAPI, SOFTWARE_ENCODER]
    assert load_cached(cache) is None  # no failure recorded against the hardware


def test_output_rejected_by_verify_falls_back(
    fake: FakeFfmpeg, tmp_path: Path, job: Callable[..., tuple[str, Path]]
) -> None:
    cache = tmp_path / "cache"
    report = made_report(VAAPI)
    seen: list[Path] = []

    async def verify(out: Path) -> None:
        seen.append(out)
        if len(seen) == 1:
            raise OutputInvalid("segment 3 does not start with a keyframe")

    used, _ = job(fake, report, verify=verify)
    assert used == SOFTWARE_ENCODER and len(seen) == 2
    assert fake.ladder_encodes() == [VAAPI, SOFTWARE_ENCODER]
    cached = load_cached(cache)
    assert cached is not None and cached.job_failures == {VAAPI: 1}
