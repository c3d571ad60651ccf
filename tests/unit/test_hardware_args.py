"""The argument lists of the hardware encoders (NVENC / QSV / VA-API), as data, and the device
scan (docs/encoding.md §8) — no GPU and no ffmpeg needed.

The lists are checked against libx264's: same rungs, GOP, rate caps, audio and HLS options; the
upload comes after every software conversion. tests/integration/test_hardware.py checks their
option names against the installed ffmpeg and runs detection and the fallback.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from speak_encoder.pipeline.ffmpeg import (
    HARDWARE_ENCODERS,
    NVENC,
    QSV,
    VAAPI,
    EncoderTuning,
    build_command,
    filter_graph,
    level_idc,
)
from speak_encoder.pipeline.hardware import needs_device
from speak_encoder.pipeline.hardware_cache import DeviceScan, scan_devices
from speak_encoder.pipeline.ladder import parse_ladder
from tests.support.hardware_args import PLANS, commands, make_plan, option, sections

#: Input options only the hardware paths have, each with one value.
HW_INPUT_OPTIONS = {"-hwaccel", "-vaapi_device", "-init_hw_device", "-filter_hw_device"}


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
