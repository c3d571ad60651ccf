"""Settings: one typed object, env + .env + flags, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from speak_encoder.config import load_settings
from speak_encoder.errors import ConfigError


def test_env_names_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NODE_NAME", "node-a")
    monkeypatch.setenv("MAX_CONCURRENT_JOBS", "3")
    monkeypatch.setenv("TEMP_DIR", str(tmp_path / "w"))
    settings = load_settings()
    assert settings.node_name == "node-a"
    assert settings.max_concurrent_jobs == 3
    assert settings.work_dir == tmp_path / "w"
    assert settings.direct_api_host == "127.0.0.1"  # never all interfaces by default
    assert settings.encoder_preset == "medium" and settings.encoder_crf == 19


def test_env_file_then_env_then_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "node.env"
    env_file.write_text("ENCODER_PRESET=fast\nENCODER_CRF=23\nNODE_NAME=from-file\n")
    env_file.chmod(0o600)
    monkeypatch.setenv("SPEAK_ENCODER_ENV_FILE", str(env_file))
    monkeypatch.setenv("ENCODER_CRF", "21")
    settings = load_settings(encoder_preset="veryfast", node_name=None)
    assert settings.encoder_preset == "veryfast"  # flag beats .env
    assert settings.encoder_crf == 21  # env beats .env
    assert settings.node_name == "from-file"  # a flag not given (None) changes nothing


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("MAX_CONCURRENT_JOBS", "abc", "MAX_CONCURRENT_JOBS"),
        ("ENCODER_PRESET", "turbo", "ENCODER_PRESET"),
        ("ENCODER_CRF", "99", "ENCODER_CRF"),
        ("DIRECT_API_PORT", "70000", "DIRECT_API_PORT"),
        ("HARDWARE_ACCELERATION", "maybe", "HARDWARE_ACCELERATION"),
    ],
)
def test_bad_value_names_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key: str, value: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_secret_values_are_never_echoed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENCODER_PRIVATE_KEY", "super-secret-seed")
    monkeypatch.setenv("MAX_CONCURRENT_JOBS", "0")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "super-secret-seed" not in str(info.value)
    assert "super-secret-seed" not in repr(load_settings(max_concurrent_jobs=1))
