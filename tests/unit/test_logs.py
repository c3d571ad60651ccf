"""Logging: human and JSON lines, level from the settings, the live-log ring, and redaction."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from speak_encoder.config import Settings
from speak_encoder.logs import (
    MASK,
    Redactor,
    RingBufferHandler,
    bind_job_id,
    current_ring,
    redact,
    secrets_of,
    setup_from_settings,
    setup_logging,
)

PRIVATE_KEY = "q4kHcF6b0yTj9Yl1nO2pS3uV4wX5zA6bC7dE8fG9hI0="
API_KEY = "direct-api-key-0123456789abcdef"
DB_PASSWORD = "p@ss/w0rd!"


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    setup_logging_secrets_cleared()


def setup_logging_secrets_cleared() -> None:
    from speak_encoder.logs import REDACTOR

    REDACTOR.clear()


def settings(**extra: object) -> Settings:
    values: dict[str, object] = {
        "encoder_private_key": PRIVATE_KEY,
        "direct_api_key": API_KEY,
        "webhook_secret": "whsec-abcdefgh",
        "ipfs_cluster_token": "cluster-token-xyz",
        "database_url": "postgresql+psycopg://encoder:p%40ss%2Fw0rd%21@db.example/jobs",
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ("X-API-Key: abc123secret", "X-API-Key: ***", "abc123secret"),
        ("authorization: Bearer eyJhbGciOi.payload.sig", "Bearer ***", "eyJhbGciOi"),
        ("Authorization: Basic dXNlcjpwYXNz", "Basic ***", "dXNlcjpwYXNz"),
        ("headers={'x-api-key': 'k-123456', 'accept': 'json'}", "'accept': 'json'", "k-123456"),
        ('{"api_key": "ak-9999", "owner": "alice"}', '"owner": "alice"', "ak-9999"),
        ('{"token":"t-1\\"quoted", "n": 1}', '"token":"***"', "t-1"),
        ('{"password": "hunter22"}', '"password": "***"', "hunter22"),
        ('{"webhook_secret": "s3cr3t-val"}', '"webhook_secret": "***"', "s3cr3t-val"),
        ("connect postgresql://bob:hunter22@db:5432/x", "postgresql://bob:***@db", "hunter22"),
        ("GET https://ghp_tok3n@github.com/x.git", "https://***@github.com", "ghp_tok3n"),
        ("GET https://h/v.mp4?token=abc&w=1&sig=zz", "w=1", "abc"),
        ("https://s3/x?X-Amz-Signature=f00&X-Amz-Credential=AK", "X-Amz-Signature=***", "f00"),
        ("https://api/x?key=AIzaKEY&page=2", "page=2", "AIzaKEY"),
        ("password=hunter22 user=bob", "user=bob", "hunter22"),
        ("Cookie: session=abc; other=def", "Cookie: ***", "session=abc"),
        ("ENCODER_PRIVATE_KEY=Zm9vYmFy+/= rest", "rest", "Zm9vYmFy"),
    ],
)
def test_redact_masks_secrets_and_keeps_the_rest(text: str, kept: str, gone: str) -> None:
    out = redact(text)
    assert gone not in out, out
    assert kept in out, out
    assert MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "job 3f2a completed: QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
        "the token expired, 3 tokens left",
        "DIRECT_API_KEY: must be set when DIRECT_API_ENABLED",
        "https://ipfs.3speak.tv/ipfs/QmX/manifest.m3u8",
        "🧠 Memory: 120 MB encoder + 0 MB ffmpeg, 3000 MB free",
    ],
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


def test_configured_secret_values_are_masked_wherever_they_appear() -> None:
    found = secrets_of(settings())
    assert PRIVATE_KEY in found and API_KEY in found
    assert "p%40ss%2Fw0rd%21" in found or DB_PASSWORD in found
    redactor = Redactor(found)
    text = (
        f"seed={PRIVATE_KEY[:40]} full {PRIVATE_KEY} key {API_KEY} "
        f"in a url https://x/?k={API_KEY} quoted {DB_PASSWORD} enc p%40ss%2Fw0rd%21 "
        "whsec-abcdefgh cluster-token-xyz"
    )
    out = redactor.redact(text)
    for secret in (PRIVATE_KEY, API_KEY, DB_PASSWORD, "p%40ss", "whsec-abcdefgh", "cluster-token"):
        assert secret not in out, (secret, out)
    assert Redactor(["ab"]).redact("ab cab") == "ab cab"  # too short to mask by value


def test_json_lines_with_job_id_args_and_tracebacks_redacted() -> None:
    stream = io.StringIO()
    setup_from_settings(settings(), log_format="json")
    # setup_from_settings writes to stderr; point the console at our stream instead.
    setup_logging("INFO", "json", secrets=secrets_of(settings()), stream=stream)
    log = logging.getLogger("speak_encoder.test")
    log.info("submitted with key %s", API_KEY, extra={"job_id": "a" * 32})
    try:
        raise RuntimeError(f"connect failed: Authorization: Bearer {API_KEY}")
    except RuntimeError:
        log.exception("request to %s failed", "https://u:hunter22@h/x")

    async def in_a_job() -> None:
        bind_job_id("b" * 32)
        log.warning("stage %s done", "encode")

    asyncio.run(in_a_job())
    log.info("outside any job")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4, lines
    docs = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "msg"} <= set(d) for d in docs)
    assert docs[0]["job_id"] == "a" * 32 and docs[0]["msg"] == "submitted with key ***"
    assert docs[0]["level"] == "INFO" and docs[0]["logger"] == "speak_encoder.test"
    assert docs[0]["ts"].endswith("+00:00")
    assert docs[1]["msg"] == "request to https://u:***@h/x failed"
    assert "RuntimeError" in docs[1]["exc"] and API_KEY not in docs[1]["exc"]
    assert docs[2]["job_id"] == "b" * 32
    assert "job_id" not in docs[3]
    assert API_KEY not in stream.getvalue() and "hunter22" not in stream.getvalue()


def test_human_format_is_the_default_and_level_comes_from_the_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_from_settings(settings(log_level="WARNING"))
    log = logging.getLogger("speak_encoder.node")
    log.info("not shown")
    log.warning("disk low, key %s", API_KEY, extra={"job_id": "c" * 32})
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "WARNING" in err[0] and "speak_encoder.node: [job cccccccc] disk low, key ***" in err[0]
    assert not err[0].startswith("{")
    setup_from_settings(settings(), verbose=True)
    log.debug("now visible")
    assert "now visible" in capsys.readouterr().err


def test_setup_replaces_its_handlers_instead_of_stacking_them() -> None:
    logging.basicConfig(force=True)
    for _ in range(3):
        setup_logging("INFO", "human", stream=io.StringIO())
    root = logging.getLogger()
    ours = [h for h in root.handlers if type(h).__name__ in ("_NodeStreamHandler", "StreamHandler")]
    rings = [h for h in root.handlers if isinstance(h, RingBufferHandler)]
    assert len(ours) == 1 and len(rings) == 1
    assert logging.getLogger("httpx").level == logging.WARNING
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        setup_logging("INFO", "xml")


def test_ring_buffer_is_bounded_redacted_and_readable_since_a_sequence_number() -> None:
    setup_logging("INFO", "human", secrets=[API_KEY], stream=io.StringIO(), ring_lines=5)
    ring = current_ring()
    assert ring is not None and ring.capacity == 5
    log = logging.getLogger("speak_encoder.ring")
    for i in range(20):
        log.info("line %d key %s", i, API_KEY)
    entries = ring.entries()
    assert [e.seq for e in entries] == [16, 17, 18, 19, 20]
    assert entries[-1].msg == "line 19 key ***"
    assert [e.seq for e in ring.entries(after=18)] == [19, 20]
    assert ring.lines(after=19)[0].endswith("INFO speak_encoder.ring: line 19 key ***")
    assert entries[0].to_json()["msg"] == "line 15 key ***"
    assert ring.wait(after=20, timeout=0.01) is False
    log.info("one more")
    assert ring.wait(after=20, timeout=0.01) is True
