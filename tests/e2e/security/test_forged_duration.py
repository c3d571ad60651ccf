"""Item 1: a container header that lies about the length must not keep ffmpeg busy for hours.

The job's length comes from the streams' own timestamps (one demux pass in the probe), an absurd
announced or measured length is refused by MAX_SOURCE_DURATION before any encoding, and a source
whose streams end far before what it announces is refused as truncated (a partial upload and a
forged header look the same).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from speak_encoder.node.models import JobState
from speak_encoder.testing.hostile import forged_duration_mkv
from tests.e2e.security.conftest import cli_env, run_cli
from tests.support.node_fixtures import NodeProcess


@pytest.mark.slow
def test_a_1000_hour_header_fails_the_job_at_once_without_a_retry(
    make_node: Callable[..., NodeProcess], hostile_dir: Path
) -> None:
    forged = forged_duration_mkv(hostile_dir, hours=1000)
    assert forged.stat().st_size < 200_000  # 1 s of 320×240 video
    node = make_node()
    job_id = node.submit(str(forged))
    node.start()
    job = node.wait_for(job_id, lambda j: j.state is JobState.FAILED, timeout=90, what="failure")
    assert job.error_kind == "MediaError" and job.attempts == 1  # permanent: never retried
    assert "announces 1000.0 h" in (job.error or "")
    assert "MAX_SOURCE_DURATION" in (job.error or "")
    assert "encode" not in job.progress  # refused at the probe: ffmpeg never ran


def test_a_forged_header_under_the_limit_is_refused_as_truncated(
    tmp_path: Path, hostile_dir: Path
) -> None:
    forged = forged_duration_mkv(hostile_dir, hours=10)
    done = run_cli(["encode", str(forged), "--out", str(tmp_path / "out"), "--json"],
                   cli_env(tmp_path))  # fmt: skip
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["kind"] == "MediaError" and error["retryable"] is False
    assert "announces 10.0 h but its streams end after 1.0 s" in error["error"]
    assert "truncated" in error["error"]
    assert not (tmp_path / "out").exists()


def test_max_source_duration_also_bounds_the_measured_length(
    tmp_path: Path, sample: Callable[[str], Path]
) -> None:
    """An honest 3 s clip with MAX_SOURCE_DURATION=2: its real length is refused."""
    env = cli_env(tmp_path, MAX_SOURCE_DURATION="2")
    done = run_cli(["encode", str(sample("no_audio")), "--out", str(tmp_path / "o"), "--json"], env)
    assert done.returncode == 1
    assert "MAX_SOURCE_DURATION (2.0 s)" in json.loads(done.stdout)["error"]


def test_the_silent_track_follows_the_real_video_length(tmp_path: Path, hostile_dir: Path) -> None:
    """The honest twin of the forged file (1 s, no audio): the output lasts 1 s, with audio."""
    honest = forged_duration_mkv(hostile_dir, hours=1 / 3600)  # the header says 1 s: the truth
    done = run_cli(["encode", str(honest), "--out", str(tmp_path / "out"), "--json"],
                   cli_env(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert abs(result["duration"] - 1.0) < 0.05
    assert result["renditions"][0]["codecs"].endswith("mp4a.40.2")
