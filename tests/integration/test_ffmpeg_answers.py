"""ffmpeg's -version/-filters/-encoders answers are kept in DATA_DIR: the next `encode` starts no
ffmpeg to ask them (they were the peak of a small job's process tree), a changed binary is asked
again. Real ffmpeg behind a wrapper that logs every start."""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from speak_encoder.pipeline import ffmpeg_run
from speak_encoder.pipeline.ffmpeg_answers import ANSWERS_NAME, MAX_AGE_S
from speak_encoder.pipeline.ffmpeg_run import ffmpeg_info
from tests.integration.test_cli import cli_env, run_cli

QUERIES = ("-version", "-filters", "-encoders")


def logging_ffmpeg(folder: Path) -> tuple[Path, Path]:
    """A wrapper that appends its arguments to a log, then runs the real ffmpeg."""
    real = shutil.which("ffmpeg")
    assert real is not None
    log = folder / "starts.log"
    wrapper = folder / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o700)
    return wrapper, log


def queries_in(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split()[-1] for line in lines if line.split()[-1] in QUERIES]


def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget what this process learnt (as a new `encode` process would)."""
    monkeypatch.setattr(ffmpeg_run, "_ANSWERS", {})
    monkeypatch.setattr(ffmpeg_run, "_INFO_CACHE", {})


def test_answers_are_kept_per_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wrapper, log = logging_ffmpeg(tmp_path)
    data = tmp_path / "data"
    fresh_process(monkeypatch)
    first = asyncio.run(ffmpeg_info(str(wrapper), cache_dir=data))
    assert sorted(queries_in(log)) == sorted(QUERIES)
    assert first.has_libx264 and first.version != "unknown"
    kept = data / ANSWERS_NAME
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    fresh_process(monkeypatch)
    assert asyncio.run(ffmpeg_info(str(wrapper), cache_dir=data)) == first
    assert len(queries_in(log)) == 3  # nothing asked again

    # The binary changes (an upgrade rewrites it): asked again.
    wrapper.write_text(wrapper.read_text() + "# upgraded\n")
    fresh_process(monkeypatch)
    assert asyncio.run(ffmpeg_info(str(wrapper), cache_dir=data)) == first
    assert len(queries_in(log)) == 6


@pytest.mark.parametrize(
    "damage",
    ["not json", '{"format": 999, "binaries": {}}', "[1, 2]", "big", "old"],
)
def test_a_damaged_or_stale_file_is_asked_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, damage: str
) -> None:
    wrapper, log = logging_ffmpeg(tmp_path)
    data = tmp_path / "data"
    fresh_process(monkeypatch)
    first = asyncio.run(ffmpeg_info(str(wrapper), cache_dir=data))
    kept = data / ANSWERS_NAME
    if damage == "big":
        kept.write_text(" " * (2 * 1024 * 1024) + kept.read_text())
    elif damage == "old":
        content = json.loads(kept.read_text())
        for entry in content["binaries"].values():
            entry["saved"] -= MAX_AGE_S + 60
        kept.write_text(json.dumps(content))
    else:
        kept.write_text(damage)
    fresh_process(monkeypatch)
    assert asyncio.run(ffmpeg_info(str(wrapper), cache_dir=data)) == first
    assert len(queries_in(log)) == 6
    fresh_process(monkeypatch)  # …and the rewritten file serves the next run
    asyncio.run(ffmpeg_info(str(wrapper), cache_dir=data))
    assert len(queries_in(log)) == 6


def test_an_unwritable_cache_only_costs_the_questions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrapper, log = logging_ffmpeg(tmp_path)
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    fresh_process(monkeypatch)
    assert asyncio.run(ffmpeg_info(str(wrapper), cache_dir=blocked / "data")).has_libx264
    assert len(queries_in(log)) == 3


def test_the_second_encode_starts_no_query(sample: Callable[[str], Path], tmp_path: Path) -> None:
    wrapper, log = logging_ffmpeg(tmp_path)
    env = cli_env(tmp_path, FFMPEG_PATH=str(wrapper), HARDWARE_ACCELERATION="false")
    source = sample("no_audio")
    for run in range(2):
        done = run_cli("encode", str(source), "--json", "--out", str(tmp_path / f"out{run}"),
                       env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["ffmpeg_version"]
        if run == 0:
            assert sorted(queries_in(log)) == sorted(QUERIES)
    assert len(queries_in(log)) == 3  # the second encode asked nothing
    assert len(log.read_text().splitlines()) > 3  # but it did run ffmpeg (the ladder)
