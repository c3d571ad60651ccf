"""Hardware encoders without a GPU (docs/encoding.md §8), against ffmpeg.

* The option names and named values of the NVENC / QSV / VA-API lists are checked against the
  installed ffmpeg's own help (the lists themselves, as data: tests/unit/test_hardware_args.py).
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
from collections.abc import Callable
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
)
from speak_encoder.pipeline.hardware import (
    choose_encoder,
    detect,
    encode_with_fallback,
)
from speak_encoder.pipeline.hardware_cache import (
    DeviceScan,
    HardwareReport,
    load_cached,
    scan_devices,
)
from speak_encoder.pipeline.hls import write_master_playlist
from speak_encoder.pipeline.ladder import load_ladder
from speak_encoder.pipeline.plan import EncodeOptions, plan_encode
from speak_encoder.pipeline.probe import probe
from speak_encoder.pipeline.verify import validate_folder
from tests.support.fake_ffmpeg import FakeFfmpeg, install
from tests.support.hardware_args import commands, make_plan, option, sections

EVERYTHING = DeviceScan(
    render_nodes=("/dev/dri/renderD128",),
    nvidia_devices=("/dev/nvidia0",),
    nvidia_driver="NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.54.03",
)
LOGGER = "speak_encoder.pipeline.hardware"


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
@pytest.mark.timeout(60)  # the hang guard: the fake encoder itself never ends
def test_a_hanging_test_encode_is_stopped(fake: FakeFfmpeg, tmp_path: Path) -> None:
    fake.configure(encoders=[NVENC], hang=[NVENC])
    report = run_detect(fake, tmp_path / "cache", timeout=2.0)
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
