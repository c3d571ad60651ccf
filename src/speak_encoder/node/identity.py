"""The node's identity: an Ed25519 ``did:key`` and general-JWS signatures (docs/protocols.md §1).

Why this module is long: a JWS interoperates only if signing and verifying use byte-exact the
same JS-compatible JSON and did:key encoding; the canonical JSON, the DID codec, the key,
verification and the key file stay together so those rules exist once.

A node is one 32-byte Ed25519 **seed**. Its DID is ``did:key:z`` + base58btc(``0xed 0x01`` ‖
public key); everything it sends to a 3Speak gateway is a general JWS JSON object signed with it,
byte for byte what the npm libraries ``dids`` 5 + ``key-did-provider-ed25519`` 4 produce with
``DID.createJWS`` (Ed25519 is deterministic, so the vectors in ``tests/data/jws-vectors.json``
and the live comparison in ``tests/integration/test_identity_js.py`` prove it).

What "byte for byte" takes: the JS provider runs the payload and the header through
``fast-json-stable-stringify`` and ``JSON.parse`` before ``JSON.stringify`` encodes them, so

- object keys come out sorted by UTF-16 code units, **except** keys that are array indices
  (``"0"``, ``"2"``, ``"10"`` …, below 2³²−1), which a JS object always lists first, in numeric
  order (``{"2":…,"10":…,"a":…}``);
- numbers are JS numbers: ``100`` and ``100.0`` → ``100``, ``42.5`` → ``42.5``, ``-0.0`` → ``0``,
  ``1e21`` → ``1e+21``, ``1e-7`` → ``1e-7``, ``1e16`` → ``10000000000000000``. NaN/±Infinity and
  integers beyond ±(2⁵³−1) (which JS cannot carry exactly) are refused rather than silently
  changed;
- strings are UTF-8 with JSON.stringify's escapes: ``\\" \\\\ \\b \\f \\n \\r \\t``, other control
  characters as ``\\u00xx``, lone surrogates as ``\\udxxx``, everything else (``é``, ``✓``,
  U+2028) raw.

The seed is held by a :class:`NodeIdentity` that never shows it (``repr``/``str`` give the DID,
pickling is refused); it leaves the object only through :func:`write_key_file`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import os
import re
import secrets
import stat
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from speak_encoder.errors import (  # noqa: F401 (re-exported)
    ConfigError,
    InvalidDid,
    InvalidJws,
    JwsFailure,
    PermanentError,
    UsageError,
)
from speak_encoder.storage.cid import b58decode, b58encode

if TYPE_CHECKING:
    from speak_encoder.config import Settings

__all__ = [
    "DID_KEY_PREFIX",
    "KEY_FILE_NAME",
    "InvalidDid",
    "InvalidJws",
    "NodeIdentity",
    "did_public_key",
    "key_file_path",
    "load_identity",
    "normalize_did",
    "read_key_file",
    "stable_json",
    "verify_jws",
    "write_key_file",
]

#: Every DID of the network starts with this (then ``z`` = base58btc).
DID_KEY_PREFIX: Final = "did:key:"
#: The multicodec of an Ed25519 public key, as an unsigned varint (0xed → ``ed 01``).
ED25519_MULTICODEC: Final = b"\xed\x01"
#: The key file inside DATA_DIR (``speak-encoder keygen`` writes it).
KEY_FILE_NAME: Final = "identity.key"
#: The only JWS algorithm of the network.
JWS_ALG: Final = "EdDSA"
SEED_BYTES: Final = 32

_MAX_SAFE_INTEGER: Final = 2**53 - 1
_MAX_ARRAY_INDEX: Final = 2**32 - 2
_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")
_LONE_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")

# --- base64url and the JS-compatible JSON ----------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str, what: str) -> bytes:
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise InvalidJws(f"malformed JWS: {what} is not unpadded base64url", "malformed")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _is_array_index(key: str) -> bool:
    """Whether a JS object lists ``key`` first, as an integer index (ECMA-262 array index)."""
    if not key or not key.isascii() or not key.isdigit() or (key[0] == "0" and key != "0"):
        return False
    return len(key) <= 10 and int(key) <= _MAX_ARRAY_INDEX


def _js_key_order(keys: list[str]) -> list[str]:
    indices = sorted((k for k in keys if _is_array_index(k)), key=int)
    names = sorted(
        (k for k in keys if not _is_array_index(k)),
        key=lambda k: k.encode("utf-16-be", "surrogatepass"),  # UTF-16 code-unit order, as JS
    )
    return indices + names


def _js_string(text: str) -> str:
    if _LONE_SURROGATE_RE.search(text):
        # A surrogate pair held as two code points is one character to JS: join them first.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    quoted = json.dumps(text, ensure_ascii=False)  # the same escapes as JSON.stringify …
    # … except that JSON.stringify escapes a lone surrogate (Python would emit it raw).
    return _LONE_SURROGATE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _js_number(value: float) -> str:
    """``String(value)`` of a JS number (ECMA-262 Number::toString, radix 10)."""
    if not math.isfinite(value):
        raise ValueError(f"JSON for a JWS cannot hold {value!r} (JS would turn it into null)")
    if value == 0:
        return "0"  # also -0.0, as JS
    # The shortest digits that round-trip: Python's repr and JS pick the same ones.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    all_digits = "".join(map(str, digit_tuple))
    digits = all_digits.rstrip("0")
    k = len(digits)
    n = int(exponent) + len(all_digits)  # value = 0.<digits> × 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = f"0.{'0' * -n}{digits}"
    else:
        e = n - 1
        mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return ("-" if value < 0 else "") + text


def _stable(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_js_string(value))
    elif isinstance(value, int):
        if abs(value) > _MAX_SAFE_INTEGER:
            raise ValueError(
                f"the integer {value} is beyond ±(2**53-1): a JS verifier cannot read it exactly"
            )
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(_js_number(value))
    elif isinstance(value, Mapping):
        keys = list(value)
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
        out.append("{")
        for i, key in enumerate(_js_key_order(keys)):
            if i:
                out.append(",")
            out.append(_js_string(key))
            out.append(":")
            _stable(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _stable(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} cannot be part of a JWS payload")


def stable_json(value: Any) -> str:
    """JSON text exactly as the JS libraries sign it: sorted keys (JS order), no whitespace.

    Accepts ``dict`` (string keys), ``list``/``tuple``, ``str``, ``int``, ``float``, ``bool`` and
    ``None``; raises ``TypeError``/``ValueError`` on anything JS could not reproduce exactly.
    """
    out: list[str] = []
    _stable(value, out)
    return "".join(out)


# --- DIDs ----------------------------------------------------------------------------------


def normalize_did(text: str) -> str:
    """One spelling of a did:key for comparisons: ``did:key:X``, ``didX`` and ``X`` → ``did:key:X``.

    The gateway has returned all three forms. Surrounding blanks and a ``#fragment`` (as in a
    JWS ``kid``) are dropped; another DID method (``did:pkh:…``) is returned as is; a blank text
    gives ``""`` (never equal to a node's DID).
    """
    text = text.strip().split("#", 1)[0]
    if not text:
        return ""
    if text.startswith(DID_KEY_PREFIX):
        body = text[len(DID_KEY_PREFIX) :]
    elif text.startswith("did:"):
        return text
    elif text.startswith("did"):
        body = text[3:]
    else:
        body = text
    return DID_KEY_PREFIX + body if body else ""


def _did_from_public_key(public_key: bytes) -> str:
    return f"{DID_KEY_PREFIX}z{b58encode(ED25519_MULTICODEC + public_key)}"


def did_public_key(did: str) -> bytes:
    """The 32-byte Ed25519 public key of a did:key (any form :func:`normalize_did` accepts)."""
    norm = normalize_did(did)
    body = norm[len(DID_KEY_PREFIX) :] if norm.startswith(DID_KEY_PREFIX) else ""
    if not body.startswith("z"):
        raise InvalidDid(f"{did!r} is not a did:key in base58btc (did:key:z…)")
    try:
        raw = b58decode(body[1:])
    except ValueError:
        raise InvalidDid(f"{did!r} is not a did:key: invalid base58btc") from None
    if len(raw) != len(ED25519_MULTICODEC) + 32 or not raw.startswith(ED25519_MULTICODEC):
        raise InvalidDid(f"{did!r} is not an Ed25519 did:key (expected z6Mk…)")
    return raw[len(ED25519_MULTICODEC) :]


# --- the node key ----------------------------------------------------------------------------


class NodeIdentity:
    """An Ed25519 key pair and its did:key. Never shows its seed (``repr``/``str`` = the DID)."""

    __slots__ = ("_did", "_key", "_public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public_key = private_key.public_key().public_bytes_raw()
        self._did = _did_from_public_key(self._public_key)

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeIdentity:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    @classmethod
    def from_base64(cls, text: str, *, source: str = "ENCODER_PRIVATE_KEY") -> NodeIdentity:
        """Read the ``ENCODER_PRIVATE_KEY`` format: base64 (standard or url-safe, padding
        optional) of the 32-byte seed. Errors name ``source``, never the value."""
        cleaned = "".join(text.split())
        cleaned = cleaned.replace("-", "+").replace("_", "/").rstrip("=")
        try:
            seed = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                f"{source} is not valid base64: it must hold the base64 of a 32-byte Ed25519 "
                "seed (create one with `speak-encoder keygen`)"
            ) from None
        if len(seed) != SEED_BYTES:
            raise ConfigError(
                f"{source} must be the base64 of a {SEED_BYTES}-byte Ed25519 seed, but it decodes "
                f"to {len(seed)} bytes (create one with `speak-encoder keygen`)"
            )
        return cls.from_seed(seed)

    @classmethod
    def generate(cls) -> NodeIdentity:
        return cls.from_seed(secrets.token_bytes(SEED_BYTES))

    @property
    def did(self) -> str:
        """``did:key:z6Mk…``"""
        return self._did

    @property
    def kid(self) -> str:
        """The JWS key id: ``<did>#<the z… part of the did>``."""
        return f"{self._did}#{self._did.split(':')[2]}"

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        """A raw 64-byte Ed25519 signature of ``data``."""
        return self._key.sign(data)

    def sign_jws(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A general JWS JSON object of ``payload``, as ``DID.createJWS`` makes it."""
        if not isinstance(payload, Mapping):
            raise TypeError(f"a JWS payload is a JSON object, not {type(payload).__name__}")
        protected = _b64url(stable_json({"alg": JWS_ALG, "kid": self.kid}).encode("utf-8"))
        encoded = _b64url(stable_json(payload).encode("utf-8"))
        signature = _b64url(self.sign(f"{protected}.{encoded}".encode("ascii")))
        return {
            "payload": encoded,
            "signatures": [{"protected": protected, "signature": signature}],
        }

    def _seed_base64(self) -> str:
        # The one way out of the object, used by write_key_file only.
        return base64.b64encode(self._key.private_bytes_raw()).decode("ascii")

    def __repr__(self) -> str:
        return f"NodeIdentity(did={self._did!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a NodeIdentity holds the node's private key: it cannot be pickled")


# --- verification ----------------------------------------------------------------------------


def _malformed(detail: str) -> NoReturn:
    raise InvalidJws(f"malformed JWS: {detail}", "malformed")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _js_int(text: str) -> int | float:
    # JS reads every number as a double: an integer beyond 2**53 (e.g. 1e20 written out in full
    # by JS) is the double it stands for, not an exact Python int.
    value = int(text)
    return value if abs(value) <= _MAX_SAFE_INTEGER else float(text)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_int=_js_int)
    except (UnicodeDecodeError, ValueError):
        _malformed(f"{what} is not UTF-8 JSON")
    if not isinstance(value, dict):
        _malformed(f"{what} is not a JSON object")
    return value


def verify_jws(jws: Mapping[str, Any], *, expected_did: str | None = None) -> dict[str, Any]:
    """Check a general JWS JSON object signed by a did:key and return its payload.

    The public key comes from the ``kid`` of the protected header (``did:key:z…#z…``); the
    algorithm must be ``EdDSA`` and the JWS must hold exactly one signature (as the JS library
    requires). With ``expected_did`` (any :func:`normalize_did` form) the signer must be that
    DID. Raises :class:`InvalidJws` (``reason`` = ``malformed``, ``unsupported_alg``,
    ``bad_signature`` or ``did_mismatch``).
    """
    if not isinstance(jws, Mapping):
        _malformed(f"expected a general JWS JSON object, got {type(jws).__name__}")
    payload = jws.get("payload")
    signatures = jws.get("signatures")
    if not isinstance(payload, str):
        _malformed('"payload" is missing or not a string')
    if not isinstance(signatures, list) or len(signatures) != 1:
        _malformed('"signatures" must be a list of exactly one signature')
    entry = signatures[0]
    if not isinstance(entry, Mapping):
        _malformed("the signature entry is not an object")
    protected = entry.get("protected")
    signature = entry.get("signature")
    if not isinstance(protected, str) or not isinstance(signature, str):
        _malformed('"protected" and "signature" must be strings')

    header = _json_object(_b64url_decode(protected, "the protected header"), "the header")
    alg = header.get("alg")
    if alg != JWS_ALG:
        raise InvalidJws(
            f"unsupported JWS algorithm {alg!r}: only {JWS_ALG} is accepted", "unsupported_alg"
        )
    if "crit" in header:
        raise InvalidJws("unsupported JWS: a critical header extension is set", "unsupported_alg")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid.startswith(DID_KEY_PREFIX):
        _malformed('the header "kid" is not a did:key')
    signer_did, _, fragment = kid.partition("#")
    try:
        public_key = did_public_key(signer_did)
    except InvalidDid as exc:
        _malformed(f"the header kid: {exc.message}")
    if fragment and fragment != signer_did[len(DID_KEY_PREFIX) :]:
        _malformed("the kid fragment is not the key of its DID")

    raw_payload = _b64url_decode(payload, "the payload")
    raw_signature = _b64url_decode(signature, "the signature")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            raw_signature, f"{protected}.{payload}".encode("ascii")
        )
    except InvalidSignature:
        raise InvalidJws(f"invalid JWS signature (signer {signer_did})", "bad_signature") from None
    if expected_did is not None and normalize_did(expected_did) != normalize_did(signer_did):
        raise InvalidJws(
            f"the JWS is signed by {signer_did}, not by {normalize_did(expected_did) or '(none)'}",
            "did_mismatch",
        )
    return _json_object(raw_payload, "the payload")


# --- the key file ----------------------------------------------------------------------------


def key_file_path(settings: Settings) -> Path:
    """``DATA_DIR/identity.key``."""
    return settings.data_dir / KEY_FILE_NAME


def read_key_file(path: Path) -> NodeIdentity:
    """Load a key file written by :func:`write_key_file`; refuse one others can read."""
    try:
        # O_NONBLOCK: a FIFO put there must not hang the start (it is refused below).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ConfigError(
            f"no node key: {path} does not exist and ENCODER_PRIVATE_KEY is not set. Create one "
            f"with `speak-encoder keygen` (or `speak-encoder keygen --out {path}`)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the node key file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the node key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise ConfigError(
                f"the node key file {path} is readable by other users "
                f"(mode {stat.S_IMODE(info.st_mode):04o}): run `chmod 600 {path}`"
            )
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(
            f"the node key file {path} does not hold a base64 seed (recreate it with "
            "`speak-encoder keygen --force`, which replaces the node's identity)"
        ) from None
    return NodeIdentity.from_base64(text, source=f"the node key file {path}")


def load_identity(settings: Settings) -> NodeIdentity:
    """The node key: ``ENCODER_PRIVATE_KEY`` if set (non-empty), else ``DATA_DIR/identity.key``."""
    secret = settings.encoder_private_key
    if secret is not None and secret.get_secret_value().strip():
        return NodeIdentity.from_base64(secret.get_secret_value(), source="ENCODER_PRIVATE_KEY")
    return read_key_file(key_file_path(settings))


def write_key_file(path: Path, identity: NodeIdentity, *, force: bool = False) -> None:
    """Write the seed (base64 + newline) to ``path`` with mode 0600, atomically.

    Never replaces an existing file unless ``force`` (then the old identity is gone: the
    caller says so). The folder is created (0700) if missing.
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not force and (path.exists() or path.is_symlink()):
        raise UsageError(
            f"{path} already exists: it is this node's identity. Use --force to replace it "
            "(the node then gets a new DID)"
        )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (identity._seed_base64() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the path appeared meanwhile: never overwrites
            except FileExistsError:
                raise UsageError(f"{path} already exists: use --force to replace it") from None
            except OSError:  # a file system without hard links
                if path.exists() or path.is_symlink():
                    raise UsageError(f"{path} already exists: use --force to replace it") from None
                os.rename(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
