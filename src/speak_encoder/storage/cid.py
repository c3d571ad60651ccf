"""Content identifiers (CIDs): parsing, validation and formatting, pure and dependency-free.

Supports what the 3Speak network uses: CIDv0 (``Qm…``, base58btc sha2-256 multihash, implicit
dag-pb) and CIDv1 in base32 (``bafy…``/``bafk…``) or base58btc (``z…``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from speak_encoder.errors import InvalidSourceReference

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(B58_ALPHABET)}

#: Multicodec codes of the IPLD formats we meet.
DAG_PB = 0x70
RAW = 0x55
DAG_CBOR = 0x71
#: Multihash code of sha2-256 and its digest length.
SHA2_256 = 0x12
SHA2_256_LEN = 32


def b58encode(data: bytes) -> str:
    num = int.from_bytes(data, "big")
    out = []
    while num:
        num, rem = divmod(num, 58)
        out.append(B58_ALPHABET[rem])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    num = 0
    for char in text:
        try:
            num = num * 58 + _B58_INDEX[char]
        except KeyError:
            raise ValueError(f"invalid base58 character {char!r}") from None
    pad = len(text) - len(text.lstrip("1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * pad + body


def b32encode(data: bytes) -> str:
    """RFC 4648 base32, lower case, no padding (multibase ``b``)."""
    return base64.b32encode(data).decode("ascii").lower().rstrip("=")


def b32decode(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except (ValueError, base64.binascii.Error) as exc:  # type: ignore[attr-defined]
        raise ValueError(f"invalid base32: {exc}") from None


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128 varint (multiformats / protobuf)."""
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Return (value, next position)."""
    shift = 0
    value = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


@dataclass(frozen=True, slots=True)
class CID:
    """A parsed CID. ``multihash`` is the full multihash (code ‖ length ‖ digest)."""

    version: int
    codec: int
    multihash: bytes

    @classmethod
    def v0(cls, sha256_digest: bytes) -> CID:
        return cls(0, DAG_PB, bytes([SHA2_256, SHA2_256_LEN]) + sha256_digest)

    @classmethod
    def v1(cls, codec: int, sha256_digest: bytes) -> CID:
        return cls(1, codec, bytes([SHA2_256, SHA2_256_LEN]) + sha256_digest)

    def to_bytes(self) -> bytes:
        """Binary form (as used inside dag-pb links and CAR files)."""
        if self.version == 0:
            return self.multihash
        return encode_varint(1) + encode_varint(self.codec) + self.multihash

    def encode(self, base: str = "base32") -> str:
        """String form: CIDv0 is always base58btc; CIDv1 in base32 (default) or base58btc."""
        if self.version == 0:
            return b58encode(self.multihash)
        if base == "base58btc":
            return "z" + b58encode(self.to_bytes())
        return "b" + b32encode(self.to_bytes())

    def __str__(self) -> str:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CID:
        if len(data) == 34 and data[0] == SHA2_256 and data[1] == SHA2_256_LEN:
            return cls(0, DAG_PB, bytes(data))
        version, pos = decode_varint(data)
        if version != 1:
            raise ValueError(f"unsupported CID version {version}")
        codec, pos = decode_varint(data, pos)
        _check_multihash(data[pos:])
        return cls(1, codec, bytes(data[pos:]))


def _check_multihash(mh: bytes) -> None:
    code, pos = decode_varint(mh)
    length, pos = decode_varint(mh, pos)
    if len(mh) - pos != length:
        raise ValueError("multihash length does not match its digest")
    if code == SHA2_256 and length != SHA2_256_LEN:
        raise ValueError("sha2-256 digest must be 32 bytes")


def parse_cid(text: str) -> CID:
    """Parse a CID string; raises :class:`InvalidSourceReference` with a readable reason."""
    text = text.strip()
    try:
        if len(text) == 46 and text.startswith("Qm"):
            return CID.from_bytes(b58decode(text))
        if text.startswith(("b", "B")) and len(text) > 8:
            return CID.from_bytes(b32decode(text[1:]))
        if text.startswith("z") and len(text) > 8:
            return CID.from_bytes(b58decode(text[1:]))
    except ValueError as exc:
        raise InvalidSourceReference(f"{text!r} is not a valid CID: {exc}") from None
    raise InvalidSourceReference(f"{text[:80]!r} is not a valid CID (expected Qm… or bafy…)")


def is_cid(text: str) -> bool:
    try:
        parse_cid(text)
    except InvalidSourceReference:
        return False
    return True


__all__ = [
    "B58_ALPHABET",
    "CID",
    "DAG_CBOR",
    "DAG_PB",
    "RAW",
    "SHA2_256",
    "SHA2_256_LEN",
    "b32decode",
    "b32encode",
    "b58decode",
    "b58encode",
    "decode_varint",
    "encode_varint",
    "is_cid",
    "parse_cid",
]
