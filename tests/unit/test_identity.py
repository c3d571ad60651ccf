"""The node identity (docs/protocols.md §1): did:key, general JWS, the key file and `keygen`.

Byte-compatibility is proven twice: here against the committed vectors
(tests/data/jws-vectors.json, made by the npm libraries), and live against the real npm libraries
in tests/integration/test_identity_js.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest

from speak_encoder.cli_identity import add_identity_commands
from speak_encoder.config import Settings, load_settings
from speak_encoder.errors import ConfigError, PermanentError, UsageError
from speak_encoder.node.identity import (
    InvalidDid,
    InvalidJws,
    NodeIdentity,
    did_public_key,
    load_identity,
    normalize_did,
    read_key_file,
    stable_json,
    verify_jws,
    write_key_file,
)

DATA = Path(__file__).resolve().parents[1] / "data"  # tests/data
VECTORS = json.loads((DATA / "jws-vectors.json").read_text("utf-8"))
SEED_B64: str = VECTORS["seed_base64"]


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def settings_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str | None) -> Settings:
    monkeypatch.delenv("ENCODER_PRIVATE_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return load_settings(data_dir=tmp_path / "data", encoder_private_key=key)


# --- the committed vectors ------------------------------------------------------------------------


def test_vector_did_and_kid() -> None:
    identity = NodeIdentity.from_base64(SEED_B64)
    assert identity.did == VECTORS["did"]
    assert identity.did.startswith("did:key:z6Mk")
    assert identity.kid == f"{VECTORS['did']}#{VECTORS['did'].removeprefix('did:key:')}"
    assert NodeIdentity.from_seed(base64.b64decode(SEED_B64)).public_key == identity.public_key
    assert did_public_key(identity.did) == identity.public_key


@pytest.mark.parametrize("index", range(len(VECTORS["vectors"])))
def test_vectors_reproduced_byte_for_byte(index: int) -> None:
    vector = VECTORS["vectors"][index]
    identity = NodeIdentity.from_base64(SEED_B64)
    jws = identity.sign_jws(vector["payload"])
    assert jws == vector["jws"]
    assert json.dumps(jws) == json.dumps(vector["jws"])  # same key order too
    assert verify_jws(vector["jws"], expected_did=VECTORS["did"]) == vector["payload"]


# --- the JS-compatible JSON -----------------------------------------------------------------------


JS_JSON_CASES: list[tuple[Any, str]] = [
    (
        {"b": 1, "a": {"d": [3, {"z": 0, "y": None}], "c": True}},
        '{"a":{"c":true,"d":[3,{"y":null,"z":0}]},"b":1}',
    ),
    ({"10": 1, "2": 2, "a": 3, "01": 4}, '{"2":2,"10":1,"01":4,"a":3}'),  # JS hoists indices
    (
        [42.5, 100, 100.0, -0.0, 1e21, 1e-7, 1.5e-6, 1e16, 0.1, 5e-324],
        "[42.5,100,100,0,1e+21,1e-7,0.0000015,10000000000000000,0.1,5e-324]",
    ),
    (
        [1.2345678901234567e20, 1.7976931348623157e308, -2.5e-10, 2**53 - 1],
        "[123456789012345670000,1.7976931348623157e+308,-2.5e-10,9007199254740991]",
    ),
    (
        {"é": "✓ \u2028 \x7f", "ctl": '\x00\x1f"\\\b\f\n\r\t'},
        '{"ctl":"\\u0000\\u001f\\"\\\\\\b\\f\\n\\r\\t","é":"✓ \u2028 \x7f"}',
    ),
    ("\ud83d\ude00 \ud800", '"😀 \\ud800"'),  # a pair joined, a lone surrogate escaped
    ({"\ue000": 1, "😀": 2}, '{"😀":2,"\ue000":1}'),  # UTF-16 code units: U+D83D < U+E000
    ({}, "{}"),
]


@pytest.mark.parametrize(("value", "expected"), JS_JSON_CASES)
def test_stable_json_matches_js(value: Any, expected: str) -> None:
    assert stable_json(value) == expected


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, 2**53, -(2**53), {1: "int key"}, {"s": {1, 2}}, b"bytes"]
)
def test_stable_json_refuses_what_js_cannot_reproduce(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        stable_json(value)


# --- verification failures ------------------------------------------------------------------------


def _signed(identity: NodeIdentity, header: dict[str, Any], payload_bytes: bytes) -> dict[str, Any]:
    protected = b64url(json.dumps(header, separators=(",", ":")).encode())
    payload = b64url(payload_bytes)
    sig = b64url(identity.sign(f"{protected}.{payload}".encode()))
    return {"payload": payload, "signatures": [{"protected": protected, "signature": sig}]}


def test_verify_accepts_non_canonical_but_valid_jws() -> None:
    identity = NodeIdentity.generate()
    jws = _signed(identity, {"kid": identity.kid, "alg": "EdDSA"}, b'{ "b": 1, "a": 2 }')
    assert verify_jws(jws) == {"b": 1, "a": 2}
    # a kid without fragment is the same key
    assert verify_jws(_signed(identity, {"alg": "EdDSA", "kid": identity.did}, b"{}")) == {}


def _flip(text: str, index: int = 10) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return text[:index] + alphabet[(alphabet.index(text[index]) + 1) % 64] + text[index + 1 :]


def _bad_jws_cases() -> list[tuple[str, Any, str]]:
    me = NodeIdentity.from_base64(SEED_B64)
    good = me.sign_jws({"job_id": "x"})
    sig = good["signatures"][0]
    other_sig = NodeIdentity.generate().sign_jws({"job_id": "x"})["signatures"][0]["signature"]
    secp256k1_did = "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"

    def entry(**changes: str) -> dict[str, Any]:
        return {**good, "signatures": [{**sig, **changes}]}

    def header(payload: bytes = b"{}", **fields: Any) -> dict[str, Any]:
        return _signed(me, fields, payload)

    return [
        ("tampered payload", {**good, "payload": b64url(b'{"job_id":"y"}')}, "bad_signature"),
        ("tampered signature", entry(signature=_flip(sig["signature"])), "bad_signature"),
        ("signature of another key", entry(signature=other_sig), "bad_signature"),
        ("truncated signature", entry(signature=sig["signature"][:40]), "bad_signature"),
        ("alg ES256K", header(alg="ES256K", kid=me.kid), "unsupported_alg"),
        ("alg none", header(alg="none", kid=me.kid), "unsupported_alg"),
        ("no alg", header(kid=me.kid), "unsupported_alg"),
        ("crit header", header(alg="EdDSA", kid=me.kid, crit=["x"]), "unsupported_alg"),
        ("not a dict", "eyJ.eyJ.sig", "malformed"),
        ("empty dict", {}, "malformed"),
        ("no signatures", {"payload": good["payload"], "signatures": []}, "malformed"),
        ("two signatures", {**good, "signatures": [sig, sig]}, "malformed"),
        ("signature entry not an object", {**good, "signatures": ["x"]}, "malformed"),
        ("payload not a string", {**good, "payload": 1}, "malformed"),
        ("padded base64", {**good, "payload": good["payload"] + "=="}, "malformed"),
        ("not base64url", {**good, "payload": "a+b/c"}, "malformed"),
        ("header not JSON", entry(protected=b64url(b"garbage")), "malformed"),
        ("header not an object", entry(protected=b64url(b"[1]")), "malformed"),
        ("no kid", header(alg="EdDSA"), "malformed"),
        ("kid of another method", header(alg="EdDSA", kid="did:web:example.com"), "malformed"),
        ("kid not Ed25519", header(alg="EdDSA", kid=secp256k1_did), "malformed"),
        ("kid with bad base58", header(alg="EdDSA", kid="did:key:z6Mk0OIl"), "malformed"),
        ("kid fragment of another key", header(alg="EdDSA", kid=f"{me.did}#z6Mk1"), "malformed"),
        ("payload not UTF-8", header(b"\xff\xfe", alg="EdDSA", kid=me.kid), "malformed"),
        ("payload an array", header(b"[1,2]", alg="EdDSA", kid=me.kid), "malformed"),
        ("payload with NaN", header(b'{"a":NaN}', alg="EdDSA", kid=me.kid), "malformed"),
    ]


@pytest.mark.parametrize(
    ("jws", "reason"),
    [pytest.param(jws, reason, id=case) for case, jws, reason in _bad_jws_cases()],
)
def test_verify_rejects(jws: Any, reason: str) -> None:
    with pytest.raises(InvalidJws) as info:
        verify_jws(jws)
    assert info.value.reason == reason, info.value.message
    assert isinstance(info.value, PermanentError)
    assert SEED_B64 not in info.value.message


def test_verify_checks_the_expected_did_in_every_form() -> None:
    me = NodeIdentity.from_base64(SEED_B64)
    jws = me.sign_jws({"a": 1})
    z_part = me.did.removeprefix("did:key:")
    for form in (me.did, f"did{z_part}", z_part, f" {me.did} ", me.kid):
        assert verify_jws(jws, expected_did=form) == {"a": 1}
    with pytest.raises(InvalidJws) as info:
        verify_jws(jws, expected_did=NodeIdentity.generate().did)
    assert info.value.reason == "did_mismatch"
    assert me.did in info.value.message


# --- DIDs -----------------------------------------------------------------------------------------


def test_normalize_did_forms() -> None:
    did = VECTORS["did"]
    z_part = did.removeprefix("did:key:")
    forms = {did, f"did{z_part}", z_part, f"  {did}\n", f"{did}#{z_part}"}
    assert {normalize_did(form) for form in forms} == {did}
    assert normalize_did("did:pkh:eip155:1:0xabc") == "did:pkh:eip155:1:0xabc"
    assert normalize_did("") == normalize_did("  ") == normalize_did("did:key:") == ""


@pytest.mark.parametrize(
    "text",
    ["", "did:key:", "did:web:example.com", "did:key:abc", "did:key:z0OIl",
     "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", "did:key:z6Mk"],
)  # fmt: skip
def test_did_public_key_rejects(text: str) -> None:
    with pytest.raises(InvalidDid):
        did_public_key(text)


# --- secrecy --------------------------------------------------------------------------------------


def test_seed_never_shown() -> None:
    identity = NodeIdentity.from_base64(SEED_B64)
    seed = base64.b64decode(SEED_B64)
    shown = [repr(identity), str(identity), f"{identity}", f"{identity!r}", repr([identity])]
    for text in shown:
        assert identity.did in text
        assert SEED_B64 not in text and seed.hex() not in text and str(list(seed)) not in text
    assert not hasattr(identity, "__dict__")  # no vars()/dataclass dump
    with pytest.raises(TypeError):
        pickle.dumps(identity)


def test_bad_key_errors_never_echo_the_value() -> None:
    secrets_tried = ["not-base64-!!!" + "x" * 20, base64.b64encode(b"k" * 16).decode()]
    for value in secrets_tried:
        with pytest.raises(ConfigError) as info:
            NodeIdentity.from_base64(value)
        assert "ENCODER_PRIVATE_KEY" in info.value.message
        assert value not in info.value.message and value not in repr(info.value)
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__
    with pytest.raises(ConfigError, match="16 bytes"):
        NodeIdentity.from_base64(base64.b64encode(b"k" * 16).decode())
    # url-safe alphabet, missing padding and blanks are the same key
    raw = base64.b64decode(SEED_B64)
    for text in (base64.urlsafe_b64encode(raw).decode().rstrip("="), f" {SEED_B64}\n"):
        assert NodeIdentity.from_base64(text).did == VECTORS["did"]


# --- load_identity and the key file ---------------------------------------------------------------


def test_load_identity_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(tmp_path, monkeypatch, SEED_B64)
    assert load_identity(settings).did == VECTORS["did"]
    assert SEED_B64 not in repr(settings)


@pytest.mark.parametrize("value", ["%%%not base64%%%", base64.b64encode(bytes(33)).decode()])
def test_load_identity_bad_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    settings = settings_for(tmp_path, monkeypatch, value)
    with pytest.raises(ConfigError) as info:
        load_identity(settings)
    assert "ENCODER_PRIVATE_KEY" in info.value.message
    assert value not in info.value.message


def test_load_identity_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(tmp_path, monkeypatch, "")  # an empty variable = not set
    identity = NodeIdentity.generate()
    write_key_file(settings.data_dir / "identity.key", identity)
    assert load_identity(settings).did == identity.did
    # the environment wins over the file
    env_settings = settings_for(tmp_path, monkeypatch, SEED_B64)
    assert load_identity(env_settings).did == VECTORS["did"]


def test_load_identity_without_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(tmp_path, monkeypatch, None)
    with pytest.raises(ConfigError, match="speak-encoder keygen") as info:
        load_identity(settings)
    assert "ENCODER_PRIVATE_KEY" in info.value.message


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_readable_key_file_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    settings = settings_for(tmp_path, monkeypatch, None)
    path = settings.data_dir / "identity.key"
    write_key_file(path, NodeIdentity.from_base64(SEED_B64))
    path.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        load_identity(settings)
    assert f"{mode:04o}" in info.value.message and SEED_B64 not in info.value.message
    path.chmod(0o400)  # stricter than 0600 is fine
    assert load_identity(settings).did == VECTORS["did"]


def test_garbage_key_file(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"\xff\x00 definitely not a key")
    os.close(fd)
    with pytest.raises(ConfigError) as info:
        read_key_file(path)
    assert str(path) in info.value.message and "definitely" not in info.value.message
    with pytest.raises(ConfigError, match="not a regular file"):
        read_key_file(tmp_path)


def test_write_key_file_0600_atomic_no_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "new" / "identity.key"
    first = NodeIdentity.generate()
    old_umask = os.umask(0)  # the mode must not depend on the umask
    try:
        write_key_file(path, first)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path).did == first.did
    assert len(base64.b64decode(path.read_text().strip())) == 32
    with pytest.raises(UsageError, match="--force"):
        write_key_file(path, NodeIdentity.generate())
    assert read_key_file(path).did == first.did
    second = NodeIdentity.generate()
    write_key_file(path, second, force=True)
    assert read_key_file(path).did == second.did
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["identity.key"]  # no temp file left
    # a dangling symlink is an existing path too: never written through
    link = tmp_path / "link.key"
    link.symlink_to(tmp_path / "elsewhere.key")
    with pytest.raises(UsageError):
        write_key_file(link, first)
    assert not (tmp_path / "elsewhere.key").exists()


# --- speak-encoder keygen -------------------------------------------------------------------------


def keygen(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="speak-encoder")
    add_identity_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keygen", *argv])
    code: int = args.func(args, settings)
    return code


def test_keygen_writes_0600_and_prints_only_the_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path, monkeypatch, None)
    assert keygen(settings) == 0
    out, err = capsys.readouterr()
    path = settings.data_dir / "identity.key"
    seed_text = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    did = load_identity(settings).did
    assert did in out and str(path) in out
    for secret in (seed_text, base64.b64decode(seed_text).hex()):
        assert secret not in out + err

    with pytest.raises(UsageError):  # refuses to overwrite: `main` turns it into exit code 2
        keygen(settings)
    assert path.read_text().strip() == seed_text

    assert keygen(settings, "--show-did") == 0
    assert capsys.readouterr().out.strip() == did

    assert keygen(settings, "--force", "--json") == 0
    out, err = capsys.readouterr()
    answer = json.loads(out)
    new_seed = path.read_text().strip()
    assert answer == {"did": load_identity(settings).did, "path": str(path)}
    assert answer["did"] != did and new_seed not in out + err


def test_keygen_out_and_show_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path, monkeypatch, SEED_B64)
    out_path = tmp_path / "elsewhere" / "node.key"
    assert keygen(settings, "--out", str(out_path), "--json") == 0
    out, err = capsys.readouterr()
    made = json.loads(out)
    assert made["path"] == str(out_path) and stat.S_IMODE(out_path.stat().st_mode) == 0o600
    assert out_path.read_text().strip() not in out + err
    assert keygen(settings, "--show-did", "--out", str(out_path)) == 0
    assert capsys.readouterr().out.strip() == made["did"]
    # the configured key is ENCODER_PRIVATE_KEY here
    assert keygen(settings, "--show-did", "--json") == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"did": VECTORS["did"], "source": "ENCODER_PRIVATE_KEY"}
    assert SEED_B64 not in out + err
    # a new default key file while ENCODER_PRIVATE_KEY is set: a warning says which one wins
    assert keygen(settings) == 0
    assert "ENCODER_PRIVATE_KEY" in capsys.readouterr().err


def test_verify_reads_numbers_as_js() -> None:
    identity = NodeIdentity.generate()
    jws = _signed(identity, {"alg": "EdDSA", "kid": identity.kid}, b'{"big":123456789012345670000}')
    big = verify_jws(jws)["big"]
    assert isinstance(big, float) and big == 1.2345678901234567e20
