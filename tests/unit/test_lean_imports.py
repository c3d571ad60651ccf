"""`speak-encoder encode` of a local file does not load the HTTP stack.

httpx (with its TLS setup and the CLI it imports when click and rich are installed) costs
~0.2 s of start-up and ~5 MB of RSS: on the encode of a local file that is pure overhead
beside ffmpeg (issue 12's ``encode`` ÷ bare ffmpeg and peak-RSS goals). The fetch package
imports its HTTP modules only for a remote source.
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


def test_the_lazy_names_of_the_fetch_package_resolve() -> None:
    from speak_encoder.pipeline import fetch
    from speak_encoder.pipeline.fetch import http_origin, origins, transfer

    assert fetch.REFUSED_HOP is http_origin.REFUSED_HOP
    assert fetch.RESUME_BACKOFF is transfer.RESUME_BACKOFF
    assert fetch.kubo_api_url is origins.kubo_api_url
    assert fetch.kubo_api_url("/ip4/127.0.0.1/tcp/5001") == "http://127.0.0.1:5001"
