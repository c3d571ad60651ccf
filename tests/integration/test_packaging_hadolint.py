"""The Dockerfile linted by hadolint (installed by scripts/install-test-deps.sh into .tools: no
container engine runs here); the other packaging checks are in tests/unit/test_packaging.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = ROOT / ".tools" / "hadolint" / "bin" / "hadolint"


def test_dockerfile_passes_hadolint() -> None:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} is missing: run scripts/install-test-deps.sh (make test-deps)")
    done = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter really runs: a root image with an unpinned ADD of a URL is refused."""
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} is missing: run scripts/install-test-deps.sh (make test-deps)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nADD https://example.org/x.tar.gz /x\nRUN apt-get install ffmpeg\n")
    done = subprocess.run(
        [str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "DL3020" in done.stdout or "DL3006" in done.stdout
