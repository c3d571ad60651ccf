"""`speak-encoder encode` of a local file loads only what it uses.

httpx (with its TLS setup and the CLI it imports when click and rich are installed) costs
~0.2 s of start-up and ~8 MB of RSS, cryptography (the node key) ~6.5 MB, rich (the progress
bar, the doctor's table) ~2.5 MB, importlib.metadata (for the version) ~3 MB, pydantic (which
the settings were once built on; now only the node's request models use it) ~10 MB: on the encode of
a local file that is pure overhead beside ffmpeg (issue 12's ``encode`` ÷ bare ffmpeg and
peak-RSS goals). The fetch package imports its HTTP modules only for a remote source; every
other command imports what it needs when it runs, not when the parser is built.
"""

from __future__ import annotations

import json
import subprocess
import sys


def modules_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_local_encode_path_imports_no_http_client() -> None:
    loaded = modules_after(
        "import speak_encoder.cli, speak_encoder.console, speak_encoder.pipeline.encode_job"
    )
    assert "speak_encoder.pipeline.encode_job" in loaded
    assert not {m for m in loaded if m.split(".")[0] in {"httpx", "httpcore", "h11"}}


#: Packages `encode --json` of a local file must not load (what each costs: the docstring).
NOT_FOR_A_LOCAL_ENCODE = {
    "httpx", "httpcore", "h11", "click", "pygments", "rich", "cryptography", "sqlalchemy",
    "psycopg", "starlette", "uvicorn", "anyio", "pydantic", "pydantic_core", "pydantic_settings",
    "dotenv", "email",
}  # fmt: skip


def test_the_whole_command_line_of_a_local_encode_loads_nothing_it_does_not_use() -> None:
    loaded = modules_after(
        "from speak_encoder import cli\n"
        "args = cli.build_parser().parse_args(['encode', 'clip.mp4', '--json'])\n"
        "assert args.func is cli.cmd_encode\n"
        "from speak_encoder.logs import secrets_of, setup_logging\n"
        "settings = cli.load_settings()\n"
        "setup_logging('WARNING', settings.log_format, secrets=secrets_of(settings))\n"
        "from speak_encoder.console import ProgressDisplay\n"
        "import speak_encoder.pipeline.encode_job\n"
        "ProgressDisplay(enabled=False)"
    )
    assert "speak_encoder.pipeline.encode_job" in loaded
    assert not {m for m in loaded if m.split(".")[0] in NOT_FOR_A_LOCAL_ENCODE}


def test_the_version_is_the_installed_distribution_s() -> None:
    from importlib.metadata import version

    from speak_encoder import __version__

    assert version("speak-encoder") == __version__


def test_the_lazy_names_of_the_fetch_package_resolve() -> None:
    from speak_encoder.pipeline import fetch
    from speak_encoder.pipeline.fetch import http_origin, origins, transfer

    assert fetch.REFUSED_HOP is http_origin.REFUSED_HOP
    assert fetch.RESUME_BACKOFF is transfer.RESUME_BACKOFF
    assert fetch.kubo_api_url is origins.kubo_api_url
    assert fetch.kubo_api_url("/ip4/127.0.0.1/tcp/5001") == "http://127.0.0.1:5001"
