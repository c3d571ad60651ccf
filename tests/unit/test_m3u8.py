"""Parsing and writing HLS playlists, as data."""

from __future__ import annotations

import pytest

from speak_encoder.pipeline.m3u8 import (
    MasterPlaylist,
    MediaPlaylist,
    PlaylistSyntaxError,
    Segment,
    Variant,
    check_relative_uri,
    format_attributes,
    format_master_playlist,
    format_media_playlist,
    parse_attributes,
    parse_master_playlist,
    parse_media_playlist,
    parse_playlist,
)

FFMPEG_MEDIA = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:6
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXTINF:6.000000,
seg_0.ts
#EXTINF:2.000000,
seg_1.ts
#EXT-X-ENDLIST
"""

MASTER = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=5350000,AVERAGE-BANDWIDTH=5000000,CODECS="avc1.640029,mp4a.40.2",\
RESOLUTION=1920x1080,FRAME-RATE=29.970,CLOSED-CAPTIONS=NONE
1080p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1498000,CODECS="avc1.4d401f,mp4a.40.2",RESOLUTION=854x480
480p/index.m3u8
"""


def test_parse_ffmpeg_media_playlist() -> None:
    playlist = parse_media_playlist(FFMPEG_MEDIA)
    assert playlist == MediaPlaylist(
        segments=(Segment("seg_0.ts", 6.0), Segment("seg_1.ts", 2.0)),
        version=6,
        target_duration=6,
        media_sequence=0,
        playlist_type="VOD",
        independent_segments=True,
        endlist=True,
    )
    assert playlist.duration == 8.0
    uri, duration, _ = playlist.segments[0]
    assert (uri, duration) == ("seg_0.ts", 6.0)


def test_media_round_trip_is_stable() -> None:
    playlist = parse_media_playlist(FFMPEG_MEDIA)
    text = format_media_playlist(playlist)
    assert text == FFMPEG_MEDIA
    assert parse_media_playlist(text) == playlist


def test_crlf_blank_lines_bom_and_spaces_are_tolerated() -> None:
    messy = "\ufeff\r\n" + "\r\n\r\n".join(f"  {line} " for line in FFMPEG_MEDIA.splitlines())
    assert parse_media_playlist(messy) == parse_media_playlist(FFMPEG_MEDIA)


def test_unknown_tags_are_kept_and_written_back() -> None:
    text = FFMPEG_MEDIA.replace(
        "#EXTINF:2.000000,", "#EXT-X-DISCONTINUITY\n#EXT-X-FOO:bar=1\n#EXTINF:2.0,a title"
    )
    playlist = parse_media_playlist(text)
    assert playlist.unknown_tags == ("#EXT-X-DISCONTINUITY", "#EXT-X-FOO:bar=1")
    assert playlist.segments[1] == Segment("seg_1.ts", 2.0)
    again = parse_media_playlist(format_media_playlist(playlist))
    assert again == playlist


def test_missing_tags_are_none_not_errors() -> None:
    playlist = parse_media_playlist("#EXTM3U\n#EXTINF:4,\na.ts\n")
    assert playlist.playlist_type is None
    assert playlist.target_duration is None
    assert not playlist.endlist
    assert playlist.segments == (Segment("a.ts", 4.0),)


def test_parse_master_playlist() -> None:
    master = parse_master_playlist(MASTER)
    assert master.version == 6
    assert master.independent_segments
    assert [v.uri for v in master.variants] == ["1080p/index.m3u8", "480p/index.m3u8"]
    first = master.variants[0].attributes
    assert first == {
        "BANDWIDTH": "5350000",
        "AVERAGE-BANDWIDTH": "5000000",
        "CODECS": "avc1.640029,mp4a.40.2",
        "RESOLUTION": "1920x1080",
        "FRAME-RATE": "29.970",
        "CLOSED-CAPTIONS": "NONE",
    }
    assert parse_master_playlist(format_master_playlist(master)) == master


def test_master_writer_quotes_only_quoted_string_attributes() -> None:
    master = MasterPlaylist(
        variants=(
            Variant(
                "720p/index.m3u8",
                {"BANDWIDTH": "1", "CODECS": "avc1.64001f,mp4a.40.2", "CLOSED-CAPTIONS": "NONE"},
            ),
        ),
        version=6,
        independent_segments=True,
    )
    assert format_master_playlist(master) == (
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS="avc1.64001f,mp4a.40.2",CLOSED-CAPTIONS=NONE\n'
        "720p/index.m3u8\n"
    )


def test_master_keeps_iframe_and_media_references() -> None:
    text = (
        MASTER + '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100,URI="1080p/iframes.m3u8"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",URI="audio/index.m3u8"\n'
    )
    master = parse_master_playlist(text)
    assert master.referenced_uris() == [
        "1080p/index.m3u8",
        "480p/index.m3u8",
        "1080p/iframes.m3u8",
        "audio/index.m3u8",
    ]
    assert parse_master_playlist(format_master_playlist(master)) == master


def test_parse_playlist_picks_the_kind() -> None:
    assert isinstance(parse_playlist(MASTER), MasterPlaylist)
    assert isinstance(parse_playlist(FFMPEG_MEDIA), MediaPlaylist)


def test_attribute_lists() -> None:
    assert parse_attributes('A=1,B="x,y",C=NONE,D="",E=0x1F') == {
        "A": "1",
        "B": "x,y",
        "C": "NONE",
        "D": "",
        "E": "0x1F",
    }
    assert format_attributes({"BANDWIDTH": "1", "CODECS": "a,b"}) == 'BANDWIDTH=1,CODECS="a,b"'
    with pytest.raises(ValueError, match="cannot hold"):
        format_attributes({"NAME": 'a"b'})


def test_attribute_writer_refuses_unrepresentable_values() -> None:
    with pytest.raises(ValueError, match="comma"):
        format_attributes({"BANDWIDTH": "1,2"})
    with pytest.raises(ValueError, match="name"):
        format_attributes({"bad name": "1"})


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("", "empty playlist", 0),
        ("\n\n  \n", "empty playlist", 0),
        ("<html>nope</html>", "not an HLS playlist", 1),
        ("\x00\x01binary", "not an HLS playlist", 1),
        ("#EXTM3U\n#EXTINF:6,\n", "#EXTINF without a segment URI", 2),
        ("#EXTM3U\n#EXTINF:six,\na.ts", "needs a duration", 2),
        ("#EXTM3U\n#EXTINF:-1,\na.ts", "out of range", 2),
        ("#EXTM3U\n#EXTINF:nan,\na.ts", "out of range", 2),
        ("#EXTM3U\na.ts", "without #EXTINF", 2),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:x\n", "needs an integer", 2),
        ("#EXTM3U\n#EXT-X-PLAYLIST-TYPE:LIVE\n", "PLAYLIST-TYPE", 2),
        ("#EXTM3U\n#EXTINF:1,\n#EXTINF:1,\na.ts", "two #EXTINF", 3),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nx.m3u8", "is this a master", 2),
    ],
)
def test_media_garbage_is_a_clear_error(text: str, message: str, line: int) -> None:
    with pytest.raises(PlaylistSyntaxError, match=message) as caught:
        parse_media_playlist(text)
    assert caught.value.line == line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "without a URI"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-VERSION:6\na.m3u8", "not followed"),
        ('#EXTM3U\n#EXT-X-STREAM-INF:CODECS="avc1\nx.m3u8', "unterminated"),
        ('#EXTM3U\n#EXT-X-STREAM-INF:CODECS="a"b,X=1\nx.m3u8', "garbage after"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH\nx.m3u8", "without a value"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:bandwidth=1\nx.m3u8", "invalid attribute name"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:A=1,A=2\nx.m3u8", "given twice"),
        ("#EXTM3U\nx.m3u8", "without #EXT-X-STREAM-INF"),
        ("#EXTM3U\n#EXTINF:1,\na.ts", "is this a media one"),
    ],
)
def test_master_garbage_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(PlaylistSyntaxError, match=message):
        parse_master_playlist(text)


@pytest.mark.parametrize(
    ("uri", "safe"),
    [
        ("720p/index.m3u8", True),
        ("seg_0.ts", True),
        ("1080p_12.ts", True),
        ("../x/index.m3u8", False),
        ("a/../../b.ts", False),
        ("/etc/passwd", False),
        ("https://example.com/x.m3u8", False),
        ("data:application/x-mpegurl,abc", False),
        ("file:seg.ts", False),
        ("a//b.ts", False),
        ("./a.ts", False),
        ("a\\..\\b.ts", False),
        ("seg%200.ts", False),
        ("seg.ts?x=1", False),
        ("seg 0.ts", False),
        ("", False),
    ],
)
def test_check_relative_uri(uri: str, safe: bool) -> None:
    assert (check_relative_uri(uri) is None) is safe
