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


# --- the loader without pydantic: env-file format, conversions, bounds ----------------------------


def _env_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.env"
    path.write_text(text, "utf-8")
    path.chmod(0o600)
    return path


def test_env_file_format(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("NODE_NAME", "HIVE_USERNAME", "ENCODER_PRIVATE_KEY", "GATEWAY_URL", "LOG_LEVEL"):
        monkeypatch.delenv(key, raising=False)
    path = _env_file(
        tmp_path,
        "\ufeff# a comment\n\n"
        "export NODE_NAME = node-b   # trailing comment\n"
        "HIVE_USERNAME='lit$eral # not a comment'\n"
        'ENCODER_PRIVATE_KEY="p\\"a$HOME\\\\ss"  # comment\n'
        "GATEWAY_URL=http://127.0.0.1:1/#frag\n"
        "log_level=debug\n"
        "UNKNOWN_THING=ignored\n",
    )
    settings = load_settings(env_file=path)
    assert settings.node_name == "node-b"
    assert settings.hive_username == "lit$eral # not a comment"  # single quotes: literal
    key = settings.encoder_private_key
    assert key is not None and key.get_secret_value() == 'p"a$HOME\\ss'  # no ${VAR} expansion
    assert settings.gateway_url == "http://127.0.0.1:1/#frag"  # '#' without a space before it
    assert settings.log_level == "DEBUG"  # keys in any case, values checked like the env's


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("NODE_NAME=a\nthis is not a setting\n", "line 2"),
        ("NODE_NAME='open\n", "line 1 (NODE_NAME)"),
        ('NODE_NAME="open\n', "line 1 (NODE_NAME)"),
        ("NODE_NAME='a' b\n", "line 1 (NODE_NAME)"),
        ("1NODE=a\n", "line 1"),
    ],
)
def test_a_malformed_env_file_line_is_named_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, line: str
) -> None:
    path = _env_file(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=path)
    assert f"{path}, {line}" in info.value.message
    assert "not a setting" not in info.value.message and "open" not in info.value.message


def test_env_file_size_and_encoding_are_bounded(tmp_path: Path) -> None:
    from speak_encoder.config_values import MAX_ENV_FILE_BYTES

    big = _env_file(tmp_path, "# " + "x" * MAX_ENV_FILE_BYTES + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_settings(env_file=big)
    binary = tmp_path / "binary.env"
    binary.write_bytes(b"NODE_NAME=\xff\xfe\n")
    binary.chmod(0o600)
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(env_file=binary)


@pytest.mark.parametrize(
    ("key", "text", "field", "expected"),
    [
        ("HARDWARE_ACCELERATION", "off", "hardware_acceleration", False),
        ("HARDWARE_ACCELERATION", " Yes ", "hardware_acceleration", True),
        ("OUTPUT_EXTRAS", "0", "output_extras", False),
        ("MAX_CONCURRENT_JOBS", " 4 ", "max_concurrent_jobs", 4),
        ("WEBHOOK_TIMEOUT", "2.5", "webhook_timeout", 2.5),
        ("FETCH_STALL_TIMEOUT", "1e2", "fetch_stall_timeout", 100.0),
        ("TEMP_DIR", "", "temp_dir", None),  # empty = not set, for an optional setting
        ("VAAPI_DEVICE", "", "vaapi_device", None),
        ("X264_RC_LOOKAHEAD", "preset", "x264_rc_lookahead", None),
        ("X264_RC_LOOKAHEAD", "20", "x264_rc_lookahead", 20),
        ("IPFS_GATEWAYS", " http://127.0.0.1:8080 ,, ", "ipfs_gateways", "http://127.0.0.1:8080"),
    ],
)
def test_text_becomes_the_declared_type(
    monkeypatch: pytest.MonkeyPatch, key: str, text: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(key, text)
    value = getattr(load_settings(), field)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("ENCODER_CRF", "-1", "ENCODER_CRF: must be at least 0 (got '-1')"),
        ("ENCODER_CRF", "19.5", "ENCODER_CRF: must be a whole number"),
        ("WEBHOOK_TIMEOUT", "0", "WEBHOOK_TIMEOUT: must be greater than 0"),
        ("WEBHOOK_TIMEOUT", "nan", "WEBHOOK_TIMEOUT: must be a finite number"),
        ("HTTP_HEADER_TIMEOUT", "601", "HTTP_HEADER_TIMEOUT: must be at most 600"),
        ("OUTPUT_EXTRAS", "", "OUTPUT_EXTRAS: must be true or false"),
        ("DATA_DIR", " ", "DATA_DIR: must be a path, not empty"),
        ("X264_THREADS", "1", "X264_THREADS: must be 0 (automatic) or at least 2"),
        ("DIRECT_API_KEY", "tiny-key-42", "DIRECT_API_KEY: must be at least 16 characters"),
    ],
)
def test_each_wrong_value_gets_its_own_message(
    monkeypatch: pytest.MonkeyPatch, key: str, text: str, message: str
) -> None:
    monkeypatch.setenv(key, text)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in info.value.message
    if key == "DIRECT_API_KEY":
        assert "tiny-key-42" not in info.value.message  # a secret's value is never echoed


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCODER_CRF", "99")
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "ENCODER_CRF:" in info.value.message and "LOG_FORMAT:" in info.value.message


def test_the_upper_case_key_wins_and_flags_win_over_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("node_name", "lower")
    monkeypatch.setenv("NODE_NAME", "upper")
    assert load_settings().node_name == "upper"
    assert load_settings(node_name="flag").node_name == "flag"
    with pytest.raises(TypeError, match="not settings: no_such_setting"):
        load_settings(no_such_setting=1)


def test_python_values_are_checked_like_text(tmp_path: Path) -> None:
    from speak_encoder.config import SecretStr, Settings

    settings = Settings(data_dir=str(tmp_path), dashboard_token="t" * 16)  # type: ignore[arg-type]
    assert settings.data_dir == tmp_path
    assert settings.dashboard_token == SecretStr("t" * 16)
    assert "t" * 16 not in repr(settings) and "**********" in repr(settings)
    with pytest.raises(ConfigError, match="MAX_CONCURRENT_JOBS: must be a whole number"):
        Settings(max_concurrent_jobs=True)
