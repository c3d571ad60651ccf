"""Packaging for operators: .env.example in step with config.py, the Dockerfile checked for what an
operator relies on (Debian + distribution ffmpeg, non-root, HEALTHCHECK on /health, no secret);
hadolint lints it in tests/integration/test_packaging_hadolint.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from speak_encoder.config import setting_fields

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SECRET_NAMES = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|DATABASE_URL)", re.IGNORECASE)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    result = []
    for item in joined:
        word, _, rest = item.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


# --- .env.example ------------------------------------------------------------------------------


def test_env_example_is_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-env-example.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (
        done.stderr + "\n(run: .venv/bin/python scripts/gen-env-example.py)"
    )


def test_env_example_lists_every_setting_with_a_meaning() -> None:
    text = (ROOT / ".env.example").read_text("utf-8")
    lines = text.splitlines()
    for name in setting_fields():
        key = f"# {name.upper()}="
        index = next((i for i, line in enumerate(lines) if line.startswith(key)), None)
        assert index is not None, f"{name.upper()} missing from .env.example"
        assert lines[index - 1].startswith("# ") and len(lines[index - 1]) > 5, name
    assert "# ENCODER_CRF=19\n" in text and "# MAX_CONCURRENT_JOBS=1\n" in text
    assert "# DIRECT_API_KEY=\n" in text  # secrets: never a value


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_structure() -> None:
    steps = instructions(DOCKERFILE.read_text("utf-8"))
    kinds = [kind for kind, _ in steps]
    froms = [args for kind, args in steps if kind == "FROM"]
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in steps if k == "ARG" and "=" in a}
    base = args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.1[1-9]-slim-(bookworm|trixie)", base), base
    assert all("${PYTHON_IMAGE}" in f for f in froms), "every stage on the Debian python image"

    runs = " ".join(a for k, a in steps if k == "RUN")
    assert "apt-get install -y --no-install-recommends ffmpeg" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert "--constraint requirements.lock" in runs

    users = [a for k, a in steps if k == "USER"]
    assert users, "a USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN"), (
        "no RUN after dropping root (nothing runs as root at run time)"
    )

    health = [a for k, a in steps if k == "HEALTHCHECK"]
    assert len(health) == 1 and "speak-encoder" in health[0] and "healthcheck" in health[0]
    assert "--interval=" in health[0] and "--timeout=" in health[0]

    cmd = [a for k, a in steps if k == "CMD"]
    assert cmd == ['["speak-encoder", "run"]']
    assert ("VOLUME", '["/data"]') in steps
    env = " ".join(a for k, a in steps if k == "ENV")
    assert "DATA_DIR=/data" in env

    for kind, arguments in steps:
        assert kind != "ADD", "COPY, never ADD (no URLs, no archives unpacked by surprise)"
        if kind in ("ENV", "ARG"):
            for assignment in arguments.split():
                name = assignment.split("=", 1)[0]
                assert not SECRET_NAMES.search(name), f"{kind} {name}: no secret in the image"
    assert "COPY . " not in DOCKERFILE.read_text("utf-8"), "only named files are copied"


def test_dockerignore_keeps_secrets_and_state_out_of_the_build_context() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".git", ".env", ".env.*", "*.key", "*.sqlite3", ".venv", ".tools", "tests"):
        assert entry in ignored, entry
