"""The SOURCE argument: a local path, an http(s) URL or an IPFS reference (pure, no I/O but stat).

:func:`parse_source` turns what a user or a job gave into a :class:`SourceRef`;
:func:`normalize_cid_reference` reduces an ``input_cid`` to the bare CID (docs/protocols.md §4).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

from speak_encoder.errors import InvalidSourceReference
from speak_encoder.storage.cid import is_cid, parse_cid

#: Longest ``display_name`` (it names the default output folder ``<display_name>-hls``).
MAX_DISPLAY_NAME = 80
#: ``display_name`` used when nothing usable is left after sanitising.
FALLBACK_DISPLAY_NAME = "source"

SourceKind = Literal["file", "http", "ipfs"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)
#: Schemes refused even when written without ``//`` (``file:/etc/passwd``, ``data:…``).
_KNOWN_SCHEMES = {
    "file", "ftp", "ftps", "sftp", "ssh", "scp", "data", "javascript", "s3", "gs",
    "ipns", "rtmp", "rtsp", "ws", "wss", "mailto", "magnet", "dweb",
}  # fmt: skip
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CID_END = re.compile(r"[/?#]")


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a source video comes from.

    ``value`` is an absolute path (``file``), the URL as given (``http``) or the bare CID as
    written (``ipfs``). ``gateway`` is only set for ``https://host/ipfs/CID`` references: the
    base URL (everything before ``/ipfs/``) tried first, before the configured gateways.
    """

    kind: SourceKind
    value: str
    display_name: str
    gateway: str | None = None


def safe_display_name(raw: str) -> str:
    """Reduce ``raw`` to ``[A-Za-z0-9._-]``, at most 80 characters, never empty or dotted."""
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE.sub("_", ascii_text).strip("._-")
    name = name[:MAX_DISPLAY_NAME].rstrip("._-")
    return name or FALLBACK_DISPLAY_NAME


def _stem(name: str) -> str:
    stem = PurePosixPath(name).stem if name else ""
    return stem or name


def _cid_from(text: str, where: str) -> str:
    cid = _CID_END.split(text, maxsplit=1)[0]
    if not cid:
        raise InvalidSourceReference(f"{where} does not contain a CID")
    parse_cid(cid)
    return cid


def normalize_cid_reference(text: str) -> str:
    """Return the bare CID of ``Qm…``/``bafy…``, ``ipfs://CID[/…]`` or ``…/ipfs/CID[/…][?…]``.

    Raises :class:`InvalidSourceReference` when no valid CID is found.
    """
    ref = text.strip()
    if not ref:
        raise InvalidSourceReference("empty IPFS reference: expected a CID (Qm… or bafy…)")
    if ref[:7].lower() == "ipfs://":
        rest = ref[7:]
        if rest[:5].lower() == "ipfs/":  # the common typo ipfs://ipfs/CID
            rest = rest[5:]
        return _cid_from(rest, "the ipfs:// reference")
    if "/ipfs/" in ref:
        path = urlsplit(ref).path if "://" in ref else ref
        if "/ipfs/" not in path:
            raise InvalidSourceReference("the URL has no /ipfs/<CID> path")
        return _cid_from(path.split("/ipfs/", 1)[1], "the /ipfs/ URL")
    return _cid_from(ref, "the reference")


def _ipfs_ref(cid: str, gateway: str | None = None) -> SourceRef:
    return SourceRef("ipfs", cid, safe_display_name(cid), gateway)


def _parse_url(text: str, scheme: str) -> SourceRef:
    if scheme == "ipfs":
        return _ipfs_ref(normalize_cid_reference(text))
    if scheme not in ("http", "https"):
        raise InvalidSourceReference(
            f"unsupported scheme {scheme + ':'!r}: use a local path, an http(s) URL, "
            "ipfs://CID or a bare CID"
        )
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InvalidSourceReference(f"the {scheme} URL is malformed: {exc}") from None
    if not parts.hostname:
        raise InvalidSourceReference(f"the {scheme} URL has no host name")
    if "/ipfs/" in parts.path:
        gateway = text[: text.index("/ipfs/")]  # the first /ipfs/ is in the path
        return _ipfs_ref(normalize_cid_reference(text), gateway)
    last = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    return SourceRef("http", text, safe_display_name(_stem(last) or parts.hostname))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long for the file system: not an existing file
        return False


def _parse_path(text: str) -> SourceRef:
    path = Path(text).expanduser()
    if not _exists(path):
        if is_cid(text):
            return _ipfs_ref(text)
        if text.startswith("/ipfs/"):
            return _ipfs_ref(normalize_cid_reference(text))
    resolved = path.resolve()
    return SourceRef("file", str(resolved), safe_display_name(_stem(resolved.name)))


def parse_source(text: str) -> SourceRef:
    """Classify a SOURCE: local path, http(s) URL or IPFS reference.

    ``ipfs://CID[/…]``, a bare CID (that is not an existing file) and ``http(s)://host/ipfs/CID…``
    are IPFS references; other http(s) URLs are plain downloads; anything else is a local path
    (``~`` expanded, made absolute). Other schemes and empty strings raise
    :class:`InvalidSourceReference`.
    """
    ref = text.strip()
    if not ref:
        raise InvalidSourceReference("the source is empty: give a file path, a URL or a CID")
    if "\0" in ref:
        raise InvalidSourceReference("the source contains a NUL character")
    match = _SCHEME.match(ref)
    if match:
        scheme = match.group(1).lower()
        if (
            match.group(2).startswith("//")
            or scheme in _KNOWN_SCHEMES
            or scheme
            in (
                "http",
                "https",
                "ipfs",
            )
        ):
            return _parse_url(ref, scheme)
    return _parse_path(ref)


__all__ = [
    "SourceKind",
    "SourceRef",
    "normalize_cid_reference",
    "parse_source",
    "safe_display_name",
]
