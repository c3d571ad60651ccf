"""Pure parsing and writing of HLS playlists (RFC 8216), as data.

Two kinds of playlist::

    MediaPlaylist   one rung: header tags + segments [(uri, duration)] + #EXT-X-ENDLIST
                    (an I-frame playlist: #EXT-X-I-FRAMES-ONLY, each segment a
                    #EXT-X-BYTERANGE of a media file)
    MasterPlaylist  the ladder: one Variant (uri, attributes) per #EXT-X-STREAM-INF

Parsing is tolerant of CRLF line ends, a UTF-8 byte-order mark, blank lines and surrounding
white space; tags it does not know are kept verbatim (``unknown_tags``) and written back after the
known header tags. Anything that is not a playlist raises :class:`PlaylistSyntaxError` with the
line number. No I/O here: callers read (bounded) text and hand it in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

#: Attributes whose value is a quoted-string in RFC 8216 (written back with quotes).
QUOTED_ATTRIBUTES = frozenset(
    {
        "CODECS", "AUDIO", "VIDEO", "SUBTITLES", "CLOSED-CAPTIONS", "URI", "GROUP-ID",
        "NAME", "LANGUAGE", "ASSOC-LANGUAGE", "INSTREAM-ID", "CHARACTERISTICS", "CHANNELS",
        "KEYFORMAT", "KEYFORMATVERSIONS", "IV", "DATA-ID", "VALUE", "BYTERANGE",
        "SUPPLEMENTAL-CODECS", "STABLE-VARIANT-ID", "STABLE-RENDITION-ID", "PATHWAY-ID",
    }
)  # fmt: skip
#: Enumerated values that stay unquoted even for a quoted attribute (CLOSED-CAPTIONS=NONE).
_UNQUOTED_VALUES = {("CLOSED-CAPTIONS", "NONE")}

_ATTR_NAME = re.compile(r"[A-Z0-9-]+")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_FORBIDDEN_URI_CHARS = re.compile(r"[\\%?#\s\x00-\x1f\x7f]")


class PlaylistSyntaxError(ValueError):
    """The text is not a well-formed HLS playlist; ``line`` is 1-based (0 = whole text)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


class Segment(NamedTuple):
    """One media segment: its URI (relative to the playlist) and its ``#EXTINF`` duration.

    ``byterange`` is ``(length, offset)`` of an ``#EXT-X-BYTERANGE`` sub-range (offsets that
    the playlist leaves implicit are resolved: the byte after the previous range of the URI).
    """

    uri: str
    duration: float
    byterange: tuple[int, int] | None = None


class Variant(NamedTuple):
    """One ``#EXT-X-STREAM-INF`` entry: the media playlist URI and its attributes (unquoted)."""

    uri: str
    attributes: dict[str, str]


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    """A media (rung) playlist."""

    segments: tuple[Segment, ...] = ()
    version: int | None = None
    target_duration: int | None = None
    media_sequence: int = 0
    playlist_type: str | None = None
    independent_segments: bool = False
    endlist: bool = False
    #: ``#EXT-X-MAP:URI=…`` (fMP4 init segment), if any.
    map_uri: str | None = None
    #: Tags this module does not interpret, verbatim, in order of appearance.
    unknown_tags: tuple[str, ...] = ()
    #: ``#EXT-X-I-FRAMES-ONLY``: every segment is one I-frame (a byte range).
    iframes_only: bool = False

    @property
    def duration(self) -> float:
        """Sum of the ``#EXTINF`` durations."""
        return sum(segment.duration for segment in self.segments)


@dataclass(frozen=True, slots=True)
class MasterPlaylist:
    """A master (multivariant) playlist."""

    variants: tuple[Variant, ...] = ()
    version: int | None = None
    independent_segments: bool = False
    #: ``#EXT-X-I-FRAME-STREAM-INF`` attribute lists (their ``URI`` names a playlist).
    iframe_streams: tuple[dict[str, str], ...] = ()
    #: ``#EXT-X-MEDIA`` attribute lists (alternative renditions; may carry a ``URI``).
    media: tuple[dict[str, str], ...] = ()
    unknown_tags: tuple[str, ...] = field(default=())

    def referenced_uris(self) -> list[str]:
        """Every playlist URI this master points at (variants, I-frame streams, media)."""
        uris = [variant.uri for variant in self.variants]
        uris += [attrs["URI"] for attrs in (*self.iframe_streams, *self.media) if "URI" in attrs]
        return uris


# --- attribute lists -----------------------------------------------------------------------


def parse_attributes(text: str, line: int = 0) -> dict[str, str]:
    """Parse an attribute list ``A=1,B="x,y",C=NONE`` into ``{name: value}`` (quotes removed)."""
    attrs: dict[str, str] = {}
    pos, end = 0, len(text)
    while pos < end:
        eq = text.find("=", pos)
        if eq < 0:
            raise PlaylistSyntaxError(f"attribute without a value: {text[pos:]!r}", line)
        name = text[pos:eq].strip()
        if not _ATTR_NAME.fullmatch(name):
            raise PlaylistSyntaxError(f"invalid attribute name {name!r}", line)
        pos = eq + 1
        if pos < end and text[pos] == '"':
            close = text.find('"', pos + 1)
            if close < 0:
                raise PlaylistSyntaxError(f"unterminated quoted string for {name}", line)
            value = text[pos + 1 : close]
            pos = close + 1
            if pos < end and text[pos] != ",":
                raise PlaylistSyntaxError(f"garbage after the quoted value of {name}", line)
        else:
            comma = text.find(",", pos)
            comma = end if comma < 0 else comma
            value = text[pos:comma].strip()
            pos = comma
        if name in attrs:
            raise PlaylistSyntaxError(f"attribute {name} given twice", line)
        attrs[name] = value
        pos += 1  # skip the comma
    return attrs


def format_attributes(attrs: Mapping[str, str]) -> str:
    """Write an attribute list, quoting the attributes RFC 8216 defines as quoted-strings."""
    parts = []
    for name, value in attrs.items():
        if not _ATTR_NAME.fullmatch(name):
            raise ValueError(f"invalid attribute name {name!r}")
        if '"' in value or "\n" in value or "\r" in value:
            raise ValueError(f"attribute {name} cannot hold {value!r}")
        quoted = name in QUOTED_ATTRIBUTES and (name, value) not in _UNQUOTED_VALUES
        if not quoted and "," in value:
            raise ValueError(f"unquoted attribute {name} cannot contain a comma")
        parts.append(f'{name}="{value}"' if quoted else f"{name}={value}")
    return ",".join(parts)


def check_relative_uri(uri: str) -> str | None:
    """Why ``uri`` may not be used inside a published folder, or ``None`` when it is safe.

    Safe = a plain relative path that stays inside the playlist's folder: no scheme (``http:``,
    ``data:``), not absolute, no ``..`` or empty components, no ``%``-escapes, queries,
    fragments, backslashes or white space.
    """
    if not uri:
        return "empty URI"
    if _URI_SCHEME.match(uri):
        return "URI with a scheme (a URL, not a file of the folder)"
    if uri.startswith("/"):
        return "absolute path"
    if _FORBIDDEN_URI_CHARS.search(uri):
        return "URI with a backslash, %-escape, query, fragment or white space"
    parts = uri.split("/")
    if ".." in parts:
        return "URI escapes its folder with '..'"
    if any(part in ("", ".") for part in parts):
        return "URI with an empty or '.' path component"
    return None


# --- parsing -------------------------------------------------------------------------------


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-blank, stripped lines with 1-based numbers; the first one must be ``#EXTM3U``."""
    if not isinstance(text, str):
        raise TypeError("playlist text must be str")
    numbered = (
        (number, raw.strip())
        for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1)
    )
    nonblank = ((number, line) for number, line in numbered if line)
    first = next(nonblank, None)
    if first is None:
        raise PlaylistSyntaxError("empty playlist")
    if first[1] != "#EXTM3U":
        raise PlaylistSyntaxError(f"not an HLS playlist (starts with {first[1][:40]!r})", first[0])
    yield from nonblank


def _split_tag(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name, value


def _int(value: str, tag: str, line: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise PlaylistSyntaxError(f"{tag} needs an integer, got {value!r}", line) from None
    if number < 0:
        raise PlaylistSyntaxError(f"{tag} cannot be negative", line)
    return number


def _extinf(value: str, line: int) -> float:
    duration_text = value.partition(",")[0].strip()
    try:
        duration = float(duration_text)
    except ValueError:
        raise PlaylistSyntaxError(f"#EXTINF needs a duration, got {value!r}", line) from None
    if not duration >= 0 or duration == float("inf"):
        raise PlaylistSyntaxError(f"#EXTINF duration out of range: {duration_text}", line)
    return duration


_MASTER_ONLY = {"#EXT-X-STREAM-INF", "#EXT-X-I-FRAME-STREAM-INF", "#EXT-X-MEDIA"}
_MEDIA_ONLY = {"#EXTINF", "#EXT-X-TARGETDURATION", "#EXT-X-ENDLIST", "#EXT-X-PLAYLIST-TYPE"}


def is_master_playlist(text: str) -> bool:
    """True when the text has master-only tags (``#EXT-X-STREAM-INF`` …)."""
    return any(_split_tag(line)[0] in _MASTER_ONLY for _, line in _lines(text))


@dataclass(slots=True)
class _MediaHeader:
    version: int | None = None
    target_duration: int | None = None
    media_sequence: int = 0
    playlist_type: str | None = None
    independent_segments: bool = False
    endlist: bool = False
    map_uri: str | None = None
    iframes_only: bool = False
    unknown: list[str] = field(default_factory=list)


def _byterange(value: str, line: int) -> tuple[int, int | None]:
    length_text, sep, offset_text = value.strip().partition("@")
    if not length_text.isdigit() or (sep and not offset_text.isdigit()):
        raise PlaylistSyntaxError(
            f"#EXT-X-BYTERANGE needs <length>[@<offset>], got {value!r}", line
        )
    return int(length_text), int(offset_text) if sep else None


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Parse a media playlist; raises :class:`PlaylistSyntaxError` on anything malformed."""
    header = _MediaHeader()
    segments: list[Segment] = []
    pending: tuple[int, float] | None = None
    byterange: tuple[int, int | None] | None = None
    range_ends: dict[str, int] = {}  # where the last range of each URI ended
    for number, line in _lines(text):
        if not line.startswith("#"):
            if pending is None:
                raise PlaylistSyntaxError(f"segment URI {line[:60]!r} without #EXTINF", number)
            resolved = None
            if byterange is not None:
                length, offset = byterange
                if offset is None:
                    if line not in range_ends:
                        raise PlaylistSyntaxError(
                            "#EXT-X-BYTERANGE without an offset for a new URI", number
                        )
                    offset = range_ends[line]
                resolved = (length, offset)
                range_ends[line] = offset + length
            segments.append(Segment(line, pending[1], resolved))
            pending, byterange = None, None
            continue
        tag, value = _split_tag(line)
        if tag in _MASTER_ONLY:
            raise PlaylistSyntaxError(f"{tag} in a media playlist (is this a master?)", number)
        if tag == "#EXTINF":
            if pending is not None:
                raise PlaylistSyntaxError("two #EXTINF without a segment URI between", number)
            pending = (number, _extinf(value, number))
        elif tag == "#EXT-X-BYTERANGE":
            byterange = _byterange(value, number)
        else:
            _media_tag(header, tag, value, line, number)
    if pending is not None:
        raise PlaylistSyntaxError("#EXTINF without a segment URI", pending[0])
    return MediaPlaylist(
        segments=tuple(segments),
        version=header.version,
        target_duration=header.target_duration,
        media_sequence=header.media_sequence,
        playlist_type=header.playlist_type,
        independent_segments=header.independent_segments,
        endlist=header.endlist,
        map_uri=header.map_uri,
        unknown_tags=tuple(header.unknown),
        iframes_only=header.iframes_only,
    )


def _media_tag(header: _MediaHeader, tag: str, value: str, line: str, number: int) -> None:
    if tag == "#EXT-X-VERSION":
        header.version = _int(value, tag, number)
    elif tag == "#EXT-X-TARGETDURATION":
        header.target_duration = _int(value, tag, number)
    elif tag == "#EXT-X-MEDIA-SEQUENCE":
        header.media_sequence = _int(value, tag, number)
    elif tag == "#EXT-X-PLAYLIST-TYPE":
        if value.strip() not in ("VOD", "EVENT"):
            raise PlaylistSyntaxError(f"unknown #EXT-X-PLAYLIST-TYPE {value!r}", number)
        header.playlist_type = value.strip()
    elif tag == "#EXT-X-INDEPENDENT-SEGMENTS":
        header.independent_segments = True
    elif tag == "#EXT-X-ENDLIST":
        header.endlist = True
    elif tag == "#EXT-X-I-FRAMES-ONLY":
        header.iframes_only = True
    elif tag == "#EXT-X-MAP":
        uri = parse_attributes(value, number).get("URI")
        if not uri:
            raise PlaylistSyntaxError("#EXT-X-MAP without URI", number)
        header.map_uri = uri
    else:
        header.unknown.append(line)


def parse_master_playlist(text: str) -> MasterPlaylist:
    """Parse a master playlist; raises :class:`PlaylistSyntaxError` on anything malformed."""
    version: int | None = None
    independent = False
    variants: list[Variant] = []
    iframes: list[dict[str, str]] = []
    media: list[dict[str, str]] = []
    unknown: list[str] = []
    pending: tuple[int, dict[str, str]] | None = None
    for number, line in _lines(text):
        if not line.startswith("#"):
            if pending is None:
                raise PlaylistSyntaxError(f"URI {line[:60]!r} without #EXT-X-STREAM-INF", number)
            variants.append(Variant(line, pending[1]))
            pending = None
            continue
        tag, value = _split_tag(line)
        if tag in _MEDIA_ONLY:
            raise PlaylistSyntaxError(f"{tag} in a master playlist (is this a media one?)", number)
        if pending is not None:
            raise PlaylistSyntaxError("#EXT-X-STREAM-INF not followed by a URI", pending[0])
        if tag == "#EXT-X-STREAM-INF":
            pending = (number, parse_attributes(value, number))
        elif tag == "#EXT-X-I-FRAME-STREAM-INF":
            iframes.append(parse_attributes(value, number))
        elif tag == "#EXT-X-MEDIA":
            media.append(parse_attributes(value, number))
        elif tag == "#EXT-X-VERSION":
            version = _int(value, tag, number)
        elif tag == "#EXT-X-INDEPENDENT-SEGMENTS":
            independent = True
        else:
            unknown.append(line)
    if pending is not None:
        raise PlaylistSyntaxError("#EXT-X-STREAM-INF without a URI", pending[0])
    return MasterPlaylist(
        variants=tuple(variants),
        version=version,
        independent_segments=independent,
        iframe_streams=tuple(iframes),
        media=tuple(media),
        unknown_tags=tuple(unknown),
    )


def parse_playlist(text: str) -> MediaPlaylist | MasterPlaylist:
    """Parse either kind, deciding by its tags."""
    return parse_master_playlist(text) if is_master_playlist(text) else parse_media_playlist(text)


# --- writing -------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``#EXTINF`` duration the way ffmpeg writes it (six decimals)."""
    return f"{seconds:.6f}"


def _joined(lines: Iterable[str]) -> str:
    return "\n".join(lines) + "\n"


def format_media_playlist(playlist: MediaPlaylist) -> str:
    """Write a media playlist (``\\n`` line ends, trailing newline)."""
    lines = ["#EXTM3U"]
    if playlist.version is not None:
        lines.append(f"#EXT-X-VERSION:{playlist.version}")
    if playlist.target_duration is not None:
        lines.append(f"#EXT-X-TARGETDURATION:{playlist.target_duration}")
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{playlist.media_sequence}")
    if playlist.playlist_type is not None:
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist.playlist_type}")
    if playlist.independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    if playlist.iframes_only:
        lines.append("#EXT-X-I-FRAMES-ONLY")
    if playlist.map_uri is not None:
        lines.append(f"#EXT-X-MAP:{format_attributes({'URI': playlist.map_uri})}")
    lines += playlist.unknown_tags
    for segment in playlist.segments:
        lines.append(f"#EXTINF:{format_duration(segment.duration)},")
        if segment.byterange is not None:
            length, offset = segment.byterange
            lines.append(f"#EXT-X-BYTERANGE:{length}@{offset}")
        lines.append(segment.uri)
    if playlist.endlist:
        lines.append("#EXT-X-ENDLIST")
    return _joined(lines)


def format_master_playlist(playlist: MasterPlaylist) -> str:
    """Write a master playlist (``\\n`` line ends, trailing newline)."""
    lines = ["#EXTM3U"]
    if playlist.version is not None:
        lines.append(f"#EXT-X-VERSION:{playlist.version}")
    if playlist.independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    lines += playlist.unknown_tags
    lines += [f"#EXT-X-MEDIA:{format_attributes(attrs)}" for attrs in playlist.media]
    for variant in playlist.variants:
        lines += [f"#EXT-X-STREAM-INF:{format_attributes(variant.attributes)}", variant.uri]
    lines += [
        f"#EXT-X-I-FRAME-STREAM-INF:{format_attributes(attrs)}" for attrs in playlist.iframe_streams
    ]
    return _joined(lines)


__all__ = [
    "QUOTED_ATTRIBUTES",
    "MasterPlaylist",
    "MediaPlaylist",
    "PlaylistSyntaxError",
    "Segment",
    "Variant",
    "check_relative_uri",
    "format_attributes",
    "format_duration",
    "format_master_playlist",
    "format_media_playlist",
    "is_master_playlist",
    "parse_attributes",
    "parse_master_playlist",
    "parse_media_playlist",
    "parse_playlist",
]
