"""The node identity (docs/protocols.md §1), live against the npm libraries.

Byte-compatibility is proven twice: against the committed vectors (tests/data/jws-vectors.json,
made by the npm libraries; tests/unit/test_identity.py) and here live against the real npm
libraries `dids`, `key-did-provider-ed25519` and `key-did-resolver`, installed by
scripts/install-test-deps.sh into .tools/did-js and driven through scripts/did-js/jws.mjs.
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from speak_encoder.node.identity import (
    InvalidJws,
    NodeIdentity,
    verify_jws,
)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"  # tests/data
VECTORS = json.loads((DATA / "jws-vectors.json").read_text("utf-8"))
SEED_B64: str = VECTORS["seed_base64"]
DID_JS_SCRIPT = REPO / "scripts" / "did-js" / "jws.mjs"
DID_JS_LOCK = REPO / "scripts" / "did-js" / "package-lock.json"
DID_JS_MODULES = REPO / ".tools" / "did-js" / "node_modules"
NPM_PACKAGES = ("dids", "key-did-provider-ed25519", "key-did-resolver")
INSTALL_HINT = "run `make test-deps` (or scripts/install-test-deps.sh) to install them"


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- byte-compatibility with the real npm libraries -----------------------------------------------


def _random_double(rng: random.Random) -> float:
    while True:
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            return value


def _compat_payloads() -> list[dict[str, Any]]:
    rng = random.Random(5)
    return [
        {},
        {"progressPct": 42.5, "download_pct": 100, "whole_float": 100.0, "neg_zero": -0.0},
        {"floats": [0.1, 0.2 + 0.1, 1e21, 1e-7, 1.5e-6, 1e16, 1.2345678901234567e20, 5e-324,
                    1.7976931348623157e308, -2.5e-10, 2**53 - 1, -(2**53 - 1), 123e-20]},
        {"random_doubles": [_random_double(rng) for _ in range(300)],
         "random_decimals": [round(rng.uniform(-1e6, 1e6), rng.randint(0, 12))
                             for _ in range(300)]},
        {"b": {"z": [1, {"y": 2, "a": [[], {}, [[]]]}], "a": None}, "a": True, "c": False},
        {"ünïcode": "é ✓", "emoji 😀": "😀", "\u2028": "line separator", "\ue000": "private use",
         "𝄞": "astral key", "ｆｕｌｌ": 1, "ctrl": "\x00\x01\x1f\x7f\"\\\b\f\n\r\t/<>&'",
         "lone surrogate": "\ud800x"},
        {"10": 1, "2": 2, "a": 3, "01": 4, "-1": 5, "4294967294": 6, "4294967295": 7, "1.5": 8,
         "": 9, "0": 10, "B": 11, "_": 12},
        {"job_id": "0b9d5c1e-7c1a-4f7e-9a55-2f1d3c4b5a6e",
         "error": {"error": "ffmpeg exited with code 1", "timestamp": "2026-11-28T12:00:00.000Z",
                   "retryable": False, "encoder_version": "0.1.0"},
         "timestamp": "2026-11-28T12:00:00.000Z", "encoder_time": 1764331200000},
    ]  # fmt: skip


def _lock_version(package: str) -> str:
    lock = json.loads(DID_JS_LOCK.read_text("utf-8"))
    version: str = lock["packages"][f"node_modules/{package}"]["version"]
    return version


def run_did_js(command: str, request: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            f"Node.js is not installed, needed for the npm did:key libraries: {INSTALL_HINT}"
        )
    for package in NPM_PACKAGES:
        manifest = DID_JS_MODULES / package / "package.json"
        if not manifest.is_file():
            pytest.fail(
                f"the npm package {package} is missing from {DID_JS_MODULES}: {INSTALL_HINT}"
            )
        installed = json.loads(manifest.read_text("utf-8"))["version"]
        if installed != _lock_version(package):
            pytest.fail(
                f"{package} {installed} is installed but the lock says {_lock_version(package)}: "
                f"{INSTALL_HINT}"
            )
    proc = subprocess.run(
        [node, str(DID_JS_SCRIPT), command, str(DID_JS_MODULES)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"jws.mjs {command} failed:\n{proc.stderr}"
    answer: dict[str, Any] = json.loads(proc.stdout, parse_int=_js_int)
    return answer


def _js_int(text: str) -> int | float:
    """Read numbers as JS does: an integer beyond 2**53 is a double."""
    value = int(text)
    return value if abs(value) <= 2**53 - 1 else float(text)


@pytest.fixture(scope="module")
def js_signed() -> tuple[str, str, list[dict[str, Any]]]:
    """A random seed, its DID and the JWS of every compat payload, all made by the npm libraries."""
    seed = base64.b64encode(os.urandom(32)).decode()
    answer = run_did_js("sign", {"seed": seed, "payloads": _compat_payloads()})
    return seed, answer["did"], answer["jws"]


def test_npm_versions_are_the_vectors_versions() -> None:
    assert _lock_version("dids") == "5.0.3"
    assert _lock_version("key-did-provider-ed25519") == "4.0.2"
    assert "dids 5.0.3" in VECTORS["description"]
    assert "key-did-provider-ed25519 4.0.2" in VECTORS["description"]
    package = json.loads((DID_JS_LOCK.parent / "package.json").read_text("utf-8"))
    for name in NPM_PACKAGES:
        assert package["dependencies"][name] == _lock_version(name)  # exact pins


def test_js_jws_verified_in_python(js_signed: tuple[str, str, list[dict[str, Any]]]) -> None:
    _seed, did, jws_list = js_signed
    for payload, jws in zip(_compat_payloads(), jws_list, strict=True):
        assert verify_jws(jws, expected_did=did) == payload


def test_python_jws_identical_to_js(js_signed: tuple[str, str, list[dict[str, Any]]]) -> None:
    seed, did, jws_list = js_signed
    identity = NodeIdentity.from_base64(seed)
    assert identity.did == did
    for payload, jws in zip(_compat_payloads(), jws_list, strict=True):
        mine = identity.sign_jws(payload)
        assert b64url_decode(mine["payload"]) == b64url_decode(jws["payload"]), payload
        assert mine == jws


def test_python_jws_verified_by_js() -> None:
    identity = NodeIdentity.generate()
    payloads = _compat_payloads()
    signed = [identity.sign_jws(p) for p in payloads]
    tampered = identity.sign_jws({"job_id": "x"})
    tampered["payload"] = b64url(b'{"job_id":"y"}')
    foreign = NodeIdentity.generate().sign_jws({"job_id": "x"})
    foreign["signatures"][0]["protected"] = signed[0]["signatures"][0]["protected"]
    answer = run_did_js("verify", {"jws": [*signed, tampered, foreign]})
    results = answer["results"]
    for payload, result in zip(payloads, results, strict=False):
        assert result["ok"], result
        assert result["kid"] == identity.kid
        assert result["payload"] == payload
    # the JS verifier is not vacuous: it refuses what Python refuses
    assert [r["ok"] for r in results[len(payloads) :]] == [False, False]
    for jws in (tampered, foreign):
        with pytest.raises(InvalidJws):
            verify_jws(jws)


def test_dids_match_js_for_random_seeds() -> None:
    seeds = [base64.b64encode(os.urandom(32)).decode() for _ in range(8)]
    seeds.append(base64.b64encode(bytes(32)).decode())  # all zeros
    seeds.append(SEED_B64)
    answer = run_did_js("did", {"seeds": seeds})
    assert answer["dids"] == [NodeIdentity.from_base64(s).did for s in seeds]
    assert answer["dids"][-1] == VECTORS["did"]


def test_missing_npm_install_fails_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(f"{__name__}.DID_JS_MODULES", tmp_path / "node_modules")
    with pytest.raises(pytest.fail.Exception, match=r"make test-deps.*install-test-deps\.sh"):
        run_did_js("did", {"seeds": [SEED_B64]})
