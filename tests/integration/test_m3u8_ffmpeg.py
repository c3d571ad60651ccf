"""Parsing ffmpeg's own HLS playlists (a real ladder, made once per session by ffmpeg)."""

from __future__ import annotations

from pathlib import Path

from speak_encoder.pipeline.m3u8 import (
    format_media_playlist,
    parse_master_playlist,
    parse_media_playlist,
)


def test_real_ffmpeg_playlists_parse(hls_ladder_raw: Path) -> None:
    master = parse_master_playlist((hls_ladder_raw / "manifest.m3u8").read_text())
    assert len(master.variants) == 3
    for variant in master.variants:
        media = parse_media_playlist((hls_ladder_raw / variant.uri).read_text())
        assert media.playlist_type == "VOD"
        assert media.endlist
        assert len(media.segments) == 4
        assert parse_media_playlist(format_media_playlist(media)) == media
