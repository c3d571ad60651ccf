"""One owner per data folder, and no process outlives its node (real `run`/`encode` processes).

* ``run`` holds an exclusive lock on DATA_DIR: a second ``run`` exits 1 at once naming the
  first one's pid; read-only commands work beside it; a ``kill -9`` releases the lock.
* ffmpeg dies with its parent: ``kill -9`` of ``run`` mid-encode, SIGTERM of ``encode``; and a
  node starting up kills whatever a crashed run's jobs left behind (recorded pid + start time).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from speak_encoder.errors import ConfigError
from speak_encoder.node.children import CHILDREN_FILE, kill_leftovers, recorder
from speak_encoder.node.lock import DataDirLock
from speak_encoder.node.models import JobState
from tests.support.node_fixtures import CLI, NodeProcess, ffmpeg_children, wait_gone

MakeNode = Callable[..., NodeProcess]


def wait_ffmpeg(pid: int, timeout: float = 60) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ffmpeg_children(pid, flag="-var_stream_map")
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("ffmpeg never started")


def test_the_lock_refuses_a_second_owner_and_is_released(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path).acquire()
    assert (tmp_path / "node.lock").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match=rf"another node \(pid {os.getpid()}\) owns DATA_DIR"):
        DataDirLock(tmp_path).acquire()
    first.release()
    with DataDirLock(tmp_path):
        pass


@pytest.mark.slow
def test_a_second_run_on_one_data_dir_exits_at_once(make_node: MakeNode) -> None:
    node = make_node("owner").start()
    node.wait_log("ready")
    second = node.cli("run", timeout=30)
    assert second.returncode == 1
    assert f"another node (pid {node.pid}) owns DATA_DIR" in second.stderr
    assert "Traceback" not in second.stderr
    assert "resumed after a crash" not in second.stderr + second.stdout
    listing = node.cli("jobs", "list")  # read-only commands work beside the running node
    assert listing.returncode == 0 and "queued: 0" in listing.stdout
    doctor = node.cli("doctor", "--json")
    assert "owns DATA_DIR" not in doctor.stdout + doctor.stderr
    node.kill9()  # the kernel releases the lock with the process
    again = node.start()
    again.wait_log("ready")
    assert again.alive()


@pytest.mark.slow
def test_ffmpeg_dies_with_a_killed_node_and_the_job_resumes(
    make_node: MakeNode, sample: Callable[[str], Path]
) -> None:
    node = make_node(ENCODER_PRESET="veryslow", MAX_ATTEMPTS="5")
    job_id = node.submit(str(sample("fullhd")))
    node.start()
    [ffmpeg] = wait_ffmpeg(node.pid)
    record = node.data_dir / "work" / job_id / CHILDREN_FILE
    deadline = time.monotonic() + 10  # recorded just after the spawn returns
    while f"{ffmpeg.pid} " not in record.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"{ffmpeg.pid} " in record.read_text()  # recorded for the next start
    assert ffmpeg.pid in node.kill9()  # kill9 asserts that no child outlived the node
    node.start(ENCODER_PRESET="ultrafast")
    done = node.wait_for(job_id, lambda j: j.state is JobState.COMPLETE, timeout=300,
                         what="the resumed job")  # fmt: skip
    assert done.interruptions == 1
    # PR_SET_PDEATHSIG had already stopped it: the next start found nothing left to kill
    assert node.log().count(", 0 leftover process(es) killed") == 2


@pytest.mark.slow
def test_sigterm_of_encode_stops_ffmpeg_and_cleans_up(
    sample: Callable[[str], Path], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    env = {**os.environ, "TEMP_DIR": str(work), "DATA_DIR": str(tmp_path / "data"),
           "ENCODER_PRESET": "veryslow", "IPFS_API_ADDR": "", "IPFS_GATEWAYS": ""}  # fmt: skip
    proc = subprocess.Popen(
        [*CLI, "encode", str(sample("fullhd")), "--out", str(tmp_path / "out"), "-q"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        found = wait_ffmpeg(proc.pid)
        proc.send_signal(signal.SIGTERM)  # what `timeout` or `systemctl stop` sends
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err.decode()
    assert "cancelled: ffmpeg stopped and the work folder removed" in err.decode()
    assert "Traceback" not in err.decode()
    assert wait_gone(found, timeout=10) == []
    assert not (tmp_path / "out").exists()
    assert not work.exists() or list(work.iterdir()) == []


def test_leftovers_of_a_crashed_run_are_killed_and_strangers_spared(tmp_path: Path) -> None:
    job_dir = tmp_path / "work" / ("a" * 32)
    job_dir.mkdir(parents=True)
    # a process that (unlike our children) would survive its parent: own session, no
    # death signal — as ffmpeg did before, under PID 1
    orphan = subprocess.Popen(["sleep", "300"], start_new_session=True)
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        recorder(job_dir)(orphan.pid)
        started = psutil.Process(stranger.pid).create_time()
        with (job_dir / CHILDREN_FILE).open("a") as record:  # a reused pid: other start time
            record.write(f"{stranger.pid} {started - 100:.3f}\n")
        assert kill_leftovers(tmp_path / "work") == [orphan.pid]
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert stranger.poll() is None  # never touched
        assert not (job_dir / CHILDREN_FILE).exists()
    finally:
        for proc in (orphan, stranger):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_no_traceback_when_a_bad_input_fails_early(
    sample: Callable[[str], Path], tmp_path: Path
) -> None:
    """Audio-only and not-media files fail while the ffmpeg inspection still runs: a clean
    error line, and nothing from asyncio."""
    env = {**os.environ, "TEMP_DIR": str(tmp_path / "work"), "DATA_DIR": str(tmp_path / "d"),
           "IPFS_API_ADDR": "", "IPFS_GATEWAYS": ""}  # fmt: skip
    for name in ("audio_only", "not_media"):
        done = subprocess.run(
            [*CLI, "encode", str(sample(name)), "--out", str(tmp_path / name)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 1
        assert done.stderr.strip().splitlines()[-1].startswith("error: ")
        assert "Traceback" not in done.stderr and "never retrieved" not in done.stderr
