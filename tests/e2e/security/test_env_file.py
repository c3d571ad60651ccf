"""Item 9: settings are never taken from the working folder's ``.env``.

Any command run in a folder someone else can write to used to read that folder's ``.env`` —
``FFMPEG_PATH=./evil.sh`` and ``doctor`` ran it. Now only ``--env-file``,
``SPEAK_ENCODER_ENV_FILE`` or ``~/.config/speak-encoder/env`` are read, and only when the file
belongs to the user (or root) and nobody else may write to it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.e2e.security.conftest import CLI, cli_env

OTHER_UID = 65534


def evil_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with a `.env` naming an ffmpeg that leaves a mark when it runs."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    mark = tmp_path / "ran"
    evil = folder / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {mark}\necho 'ffmpeg version 9.9'\n")
    evil.chmod(0o755)
    (folder / ".env").write_text(f"FFMPEG_PATH={evil}\nFFPROBE_PATH={evil}\n")
    return folder, mark


def doctor(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "doctor", "--json", "--no-hardware"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_working_folders_env_is_ignored(tmp_path: Path) -> None:
    folder, mark = evil_folder(tmp_path)
    env = cli_env(tmp_path)
    del env["SPEAK_ENCODER_ENV_FILE"]  # nothing named: the default path only
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # which does not exist
    done = doctor(folder, env)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert not mark.exists(), "the .env of the working folder was read"
    assert "evil" not in checks["ffmpeg"]["detail"]


def test_a_named_env_file_is_read_only_when_it_is_private(tmp_path: Path) -> None:
    settings = tmp_path / "node.env"
    settings.write_text("ENCODER_CRF=99\n")  # out of range: reading it shows as an error
    settings.chmod(0o600)
    env = cli_env(tmp_path, SPEAK_ENCODER_ENV_FILE=str(settings))
    read = doctor(tmp_path, env)
    assert read.returncode == 1 and "ENCODER_CRF" in read.stderr  # it was read
    for mode, owner, why in ((0o620, None, "others may write to it"),
                             (0o606, None, "others may write to it"),
                             (0o600, OTHER_UID, "belongs to another user")):  # fmt: skip
        settings.chmod(mode)
        if owner is not None:
            os.chown(settings, owner, owner)
        refused = doctor(tmp_path, env)
        assert refused.returncode == 1 and "ENCODER_CRF" not in refused.stderr
        assert f"refusing to read the env file {settings}: " in refused.stderr
        assert why in refused.stderr


def test_env_file_flag_names_the_file(tmp_path: Path) -> None:
    settings = tmp_path / "flagged.env"
    settings.write_text("MAX_CONCURRENT_JOBS=lots\n")
    settings.chmod(0o600)
    done = doctor(tmp_path, cli_env(tmp_path), "--env-file", str(settings))
    assert done.returncode == 1 and "MAX_CONCURRENT_JOBS" in done.stderr


def test_a_missing_named_env_file_is_an_error(tmp_path: Path) -> None:
    env = cli_env(tmp_path, SPEAK_ENCODER_ENV_FILE=str(tmp_path / "nope.env"))
    done = subprocess.run([*CLI, "version"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "does not exist" in done.stderr
