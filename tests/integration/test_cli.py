"""The `speak-encoder` command as a user runs it: real subprocesses, real ffmpeg."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from speak_encoder.testing.http_faults import BytesPayload, FaultServer
from tests.support.node_fixtures import ffmpeg_children

CLI = [sys.executable, "-m", "speak_encoder"]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "TEMP_DIR": str(tmp_path / "work"),
            "DATA_DIR": str(tmp_path / "data"),
            "ENCODER_PRESET": "veryfast",
            "IPFS_API_ADDR": "",
            "IPFS_GATEWAYS": "",
            "DISK_RESERVE_MB": "0",
        }
    )
    env.update(extra)
    return env


def test_encode_json_output_shape(sample: Callable[[str], Path], tmp_path: Path) -> None:
    out = tmp_path / "ladder"
    done = run_cli("encode", str(sample("portrait_rotated")), "--out", str(out), "--json",
                   env=cli_env(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["manifest"] == str(out / "manifest.m3u8")
    assert result["cid"].startswith("Qm") and len(result["cid"]) == 46
    assert result["duration"] == pytest.approx(3.0, abs=0.1)
    assert result["ffmpeg_version"]
    assert [(r["name"], r["width"], r["height"]) for r in result["renditions"]] == [
        ("720p", 720, 1280),
        ("480p", 480, 854),
    ]
    for rendition in result["renditions"]:
        assert set(rendition) == {"name", "width", "height", "bandwidth", "average_bandwidth",
                                  "codecs", "frame_rate", "segments"}  # fmt: skip
        assert rendition["bandwidth"] >= rendition["average_bandwidth"] > 0
    assert "Traceback" not in done.stderr
    assert list((tmp_path / "work").iterdir()) == []


def test_default_output_folder_is_named_after_the_source(
    sample: Callable[[str], Path], tmp_path: Path
) -> None:
    source = tmp_path / "My Holiday Clip.mp4"
    shutil.copy(sample("landscape"), source)
    done = run_cli("encode", str(source), "-q", env=cli_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folders = [p.name for p in tmp_path.iterdir() if p.name.endswith("-hls")]
    assert len(folders) == 1 and "Holiday" in folders[0] and " " not in folders[0]
    assert "HLS ladder ready" in done.stdout and "ffplay" in done.stdout


def test_encode_from_http_url(sample: Callable[[str], Path], tmp_path: Path) -> None:
    with FaultServer() as server:
        server.add("/videos/clip.mp4", BytesPayload(sample("no_audio").read_bytes()))
        done = run_cli("encode", server.url("/videos/clip.mp4"), "--out", str(tmp_path / "o"),
                       "--json", env=cli_env(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [r["name"] for r in json.loads(done.stdout)["renditions"]] == ["360p"]


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["encode", "/nonexistent/video.mp4"], "not found", 1),
        (["encode", "ftp://example.org/x.mp4"], "ftp", 1),
        (["encode", "ipfs://QmNotAValidCid"], "not a valid CID", 1),
        (["encode", "x.mp4", "--rungs", "4k"], "unknown rung", 1),
        (["encode", "x.mp4", "--premium", "--rungs", "480p"], "not allowed with", 2),
    ],
)
def test_errors_are_one_readable_line(
    args: list[str], message: str, code: int, tmp_path: Path
) -> None:
    done = run_cli(*args, env=cli_env(tmp_path), cwd=tmp_path)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    done = run_cli("encode", "x.mp4", env=cli_env(tmp_path, ENCODER_CRF="high"), cwd=tmp_path)
    assert done.returncode == 1
    assert "ENCODER_CRF" in done.stderr and "Traceback" not in done.stderr


def test_json_error_object(sample: Callable[[str], Path], tmp_path: Path) -> None:
    done = run_cli("encode", str(sample("audio_only")), "--json", env=cli_env(tmp_path),
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["kind"] == "MediaError" and error["retryable"] is False
    assert "no video stream" in error["error"]


def test_validate_command(sample: Callable[[str], Path], tmp_path: Path) -> None:
    out = tmp_path / "ok"
    assert run_cli("encode", str(sample("landscape")), "--out", str(out), "-q",
                   env=cli_env(tmp_path)).returncode == 0  # fmt: skip
    good = run_cli("validate", str(out), "--duration", "3")
    assert good.returncode == 0, good.stdout
    (out / "stray.log").write_text("oops")
    (out / "360p" / "seg_0.ts").unlink()
    bad = run_cli("validate", str(out))
    assert bad.returncode == 1
    assert "stray.log" in bad.stdout and "seg_0.ts" in bad.stdout
    as_json = json.loads(run_cli("validate", str(out), "--json").stdout)
    assert as_json["ok"] is False and {v["check"] for v in as_json["violations"]} == {6}


def test_ctrl_c_kills_ffmpeg_and_removes_the_work_folder(tmp_path: Path) -> None:
    # A source slow enough to still be encoding when the signal comes.
    source = tmp_path / "slow.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=1920x1080:rate=30:duration=30", "-c:v", "libx264", "-preset",
         "ultrafast", str(source)],
        check=True,
    )  # fmt: skip
    env = cli_env(tmp_path, ENCODER_PRESET="slow")
    out = tmp_path / "never"
    proc = subprocess.Popen(
        [*CLI, "encode", str(source), "--out", str(out), "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    ffmpeg: list[psutil.Process] = []
    while time.monotonic() < deadline and not ffmpeg:
        time.sleep(0.2)
        ffmpeg = ffmpeg_children(proc.pid)
    assert ffmpeg, "the encoder never started ffmpeg"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "cancelled" in stderr and "Traceback" not in stderr
    _, alive = psutil.wait_procs(ffmpeg, timeout=5)
    assert not alive, "ffmpeg survived the cancel"
    assert not out.exists()
    assert list((tmp_path / "work").iterdir()) == []


def test_store_keeps_the_ladder_by_cid_and_the_cid_matches_the_cid_command(
    sample: Callable[[str], Path], tmp_path: Path
) -> None:
    done = run_cli("encode", str(sample("landscape")), "--store", "--json", env=cli_env(tmp_path))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    folder = Path(result["folder"])
    assert folder == tmp_path / "data" / "store" / result["cid"]
    assert (folder / "manifest.m3u8").is_file()
    recomputed = run_cli("cid", str(folder), env=cli_env(tmp_path))
    assert recomputed.stdout.strip() == result["cid"]


def test_data_dir_and_verbose_go_before_or_after_the_command(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    after = run_cli("jobs", "list", "--data-dir", str(tmp_path / "after"), "-v", env=env)
    assert after.returncode == 0, after.stderr
    assert (tmp_path / "after" / "jobs.sqlite3").is_file()
    assert "migration 1" in after.stderr  # -v after the command: debug logging
    before = run_cli("--data-dir", str(tmp_path / "before"), "jobs", "list", env=env)
    assert before.returncode == 0 and (tmp_path / "before" / "jobs.sqlite3").is_file()
    both = run_cli("--data-dir", str(tmp_path / "x"), "jobs", "--data-dir", str(tmp_path / "y"),
                   env=env)  # fmt: skip
    assert both.returncode == 0 and (tmp_path / "y" / "jobs.sqlite3").is_file()
    assert not (tmp_path / "x").exists()  # the one after the command wins
