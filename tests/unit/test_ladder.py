"""The ladder is data an operator can change (docs/encoding.md §2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speak_encoder.errors import ConfigError
from speak_encoder.pipeline.ladder import load_ladder, parse_ladder


def test_builtin_ladder_is_the_network_table() -> None:
    ladder = load_ladder()
    rows = [
        (r.name, r.height, r.video_kbps, r.max_kbps, r.buffer_kbps, r.profile, r.level,
         r.audio_kbps)
        for r in ladder.rungs
    ]  # fmt: skip
    assert rows == [
        ("1080p", 1080, 5000, 5350, 7500, "high", "4.1", 128),
        ("720p", 720, 2800, 2996, 4200, "high", "4.0", 128),
        ("480p", 480, 1400, 1498, 2100, "main", "3.1", 96),
    ]


def test_operator_file_replaces_the_table(tmp_path: Path) -> None:
    path = tmp_path / "ladder.toml"
    path.write_text(
        '[[rung]]\nname="360p"\nheight=360\nvideo_kbps=800\nmax_kbps=900\nbuffer_kbps=1200\n'
        'profile="main"\nlevel="3.0"\naudio_kbps=64\n'
        '[[rung]]\nname="2k"\nheight=1440\nvideo_kbps=9000\nmax_kbps=9600\nbuffer_kbps=12000\n'
        'profile="high"\nlevel="5.0"\naudio_kbps=160\n'
    )
    ladder = load_ladder(path)
    assert ladder.names() == ["2k", "360p"]  # highest first whatever the file order


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one"),
        ("[[rung]]\nname='x'", "missing the key"),
        ("not toml ==", "not valid TOML"),
        ("[[rung]]\nname='a b'\nheight=480\nvideo_kbps=1\nmax_kbps=1\nbuffer_kbps=1\n"
         "profile='main'\nlevel='3.1'\naudio_kbps=96", "name must be"),
        ("[[rung]]\nname='a'\nheight=481\nvideo_kbps=1\nmax_kbps=1\nbuffer_kbps=1\n"
         "profile='main'\nlevel='3.1'\naudio_kbps=96", "even number"),
        ("[[rung]]\nname='a'\nheight=480\nvideo_kbps=1\nmax_kbps=1\nbuffer_kbps=1\n"
         "profile='ultra'\nlevel='3.1'\naudio_kbps=96", "profile must be"),
    ],
)  # fmt: skip
def test_bad_ladder_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_ladder(text, "LADDER_FILE 'x'")


def test_missing_ladder_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LADDER_FILE"):
        load_ladder(tmp_path / "nope.toml")
