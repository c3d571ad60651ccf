"""Sample media (generated once, cached under .cache/test-media) and encode settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from speak_encoder.config import Settings, load_settings
from speak_encoder.testing.media import generate

#: Generated samples survive between runs (keyed by recipe), so the second run is fast.
MEDIA_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "test-media"


@pytest.fixture(scope="session")
def sample() -> Callable[[str], Path]:
    """``sample("portrait_rotated")`` → path of that generated clip."""

    def make(name: str) -> Path:
        return generate(name, MEDIA_CACHE)

    return make


@pytest.fixture
def encode_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for real encodes in tests: a fast preset, private work/data folders."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "temp_dir": tmp_path / "work",
            "data_dir": tmp_path / "data",
            "encoder_preset": "veryfast",
            "ipfs_api_addr": "",
            "ipfs_gateways": "",
            "disk_reserve_mb": 0,
        }
        values.update(overrides)
        return load_settings(**values)

    return build
