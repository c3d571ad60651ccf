"""SOURCE parsing: paths, URLs, IPFS references, display names (pure, table-driven)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from speak_encoder.errors import InvalidSourceReference
from speak_encoder.pipeline.source import (
    SourceRef,
    normalize_cid_reference,
    parse_source,
    safe_display_name,
)
from tests.support.fetch_fixtures import CID_V0, CID_V1

SAFE = re.compile(r"[A-Za-z0-9._-]{1,80}")


@pytest.mark.parametrize(
    ("text", "kind", "value", "name", "gateway"),
    [
        (f"ipfs://{CID_V0}", "ipfs", CID_V0, CID_V0, None),
        (f"ipfs://{CID_V0}/sub/video.mp4", "ipfs", CID_V0, CID_V0, None),
        (f"ipfs://ipfs/{CID_V1}", "ipfs", CID_V1, CID_V1, None),
        (f"IPFS://{CID_V1}?filename=a.mp4", "ipfs", CID_V1, CID_V1, None),
        (CID_V0, "ipfs", CID_V0, CID_V0, None),
        (f"  {CID_V1}\n", "ipfs", CID_V1, CID_V1, None),
        (f"/ipfs/{CID_V0}", "ipfs", CID_V0, CID_V0, None),
        (
            f"https://gw.example/ipfs/{CID_V1}/file.mp4?x=1",
            "ipfs",
            CID_V1,
            CID_V1,
            "https://gw.example",
        ),
        (
            f"http://127.0.0.1:8080/prefix/ipfs/{CID_V0}",
            "ipfs",
            CID_V0,
            CID_V0,
            "http://127.0.0.1:8080/prefix",
        ),
        ("https://cdn.example/videos/clip.mp4", "http", None, "clip", None),
        (
            "http://cdn.example/a/My%20Holiday.final.MOV?sig=abc",
            "http",
            None,
            "My_Holiday.final",
            None,
        ),
        ("https://cdn.example/", "http", None, "cdn.example", None),
        ("https://cdn.example/ipfs-like/video.webm", "http", None, "video", None),
    ],
)
def test_parse_urls_and_cids(
    text: str, kind: str, value: str | None, name: str, gateway: str | None
) -> None:
    ref = parse_source(text)
    assert ref == SourceRef(kind, value or text.strip(), name, gateway)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected_name"),
    [
        ("clip.mp4", "clip"),
        ("./some dir/my video.mkv", "my_video"),
        ("../../etc/passwd", "passwd"),
        ("vidéo 日本語.mp4", "video"),
        ("日本語.mp4", "source"),
        (".hidden.mp4", "hidden"),
        ("name:with:colons.mp4", "name_with_colons"),
    ],
)
def test_relative_paths_become_absolute_files(
    text: str, expected_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ref = parse_source(text)
    assert ref.kind == "file"
    assert Path(ref.value).is_absolute()
    assert ref.value == str((tmp_path / text).resolve())
    assert ref.display_name == expected_name


def test_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    ref = parse_source("~/videos/talk.mp4")
    assert ref == SourceRef("file", str(tmp_path / "videos" / "talk.mp4"), "talk")


def test_existing_file_named_like_a_cid_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / CID_V0).write_bytes(b"x")
    assert parse_source(CID_V0).kind == "file"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ftp://example.com/video.mp4", "unsupported scheme"),
        ("file:///etc/passwd", "unsupported scheme"),
        ("file:/etc/passwd", "unsupported scheme"),
        ("rtmp://live.example/app", "unsupported scheme"),
        ("ipns://k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8", "unsupported"),
        ("ipfs://QmNotAValidCid", "not a valid CID"),
        ("ipfs://", "does not contain a CID"),
        ("https://gw.example/ipfs/notacid/x.mp4", "not a valid CID"),
        ("https:///nohost/video.mp4", "no host"),
        ("a\0b", "NUL"),
        ("http://[::1/video.mp4", "malformed"),
    ],
)
def test_invalid_references(text: str, message: str) -> None:
    with pytest.raises(InvalidSourceReference, match=message):
        parse_source(text)


@pytest.mark.parametrize(
    ("text", "cid"),
    [
        (CID_V0, CID_V0),
        (f" {CID_V1} ", CID_V1),
        (f"ipfs://{CID_V0}", CID_V0),
        (f"ipfs://{CID_V0}/manifest.m3u8", CID_V0),
        (f"https://ipfs.3speak.tv/ipfs/{CID_V1}", CID_V1),
        (f"https://gw.example/ipfs/{CID_V1}/file.mp4?x=1#frag", CID_V1),
        (f"/ipfs/{CID_V0}", CID_V0),
    ],
)
def test_normalize_cid_reference(text: str, cid: str) -> None:
    assert normalize_cid_reference(text) == cid


@pytest.mark.parametrize(
    "text",
    ["", "hello", "https://example.com/video.mp4", "ipfs://", "Qm123", "https://gw/ipfs/"],
)
def test_normalize_cid_reference_refuses(text: str) -> None:
    with pytest.raises(InvalidSourceReference):
        normalize_cid_reference(text)


@pytest.mark.parametrize(
    "raw",
    [
        "../../etc/passwd",
        "..",
        ".",
        "",
        "a" * 300,
        "é" * 300,
        "x/" * 200,
        "spaces   and\ttabs\nnewlines",
        "<script>alert(1)</script>",
        "-rf",
        "日本語のビデオ",
        "__--..__",
    ],
)
def test_display_names_are_always_safe(raw: str) -> None:
    name = safe_display_name(raw)
    assert SAFE.fullmatch(name), name
    assert name not in (".", "..")
    assert not name.startswith(("-", "."))


def test_long_file_names_are_cut_to_80(tmp_path: Path) -> None:
    ref = parse_source(str(tmp_path / ("long" * 75 + ".mp4")))
    assert ref.display_name == ("long" * 75)[:80]
    url = parse_source("https://cdn.example/" + "b" * 300 + ".mp4")
    assert url.display_name == "b" * 80
