"""``speak-encoder keygen``: create the node's Ed25519 key, or show the DID of the configured one.

The key (seed) is written to a 0600 file and never printed; only the DID and the path are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from speak_encoder.config import Settings

# node.identity (cryptography, ~6.5 MB of RSS) is imported by the command itself, not when the
# parser is built for every other command.


def cmd_keygen(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.node.identity import (
        NodeIdentity,
        key_file_path,
        load_identity,
        read_key_file,
        write_key_file,
    )

    out: Path | None = args.out
    if args.show_did:
        identity = read_key_file(out) if out is not None else load_identity(settings)
        source = (
            str(out)
            if out is not None
            else "ENCODER_PRIVATE_KEY"
            if _env_key_set(settings)
            else str(key_file_path(settings))
        )
        if args.json:
            print(json.dumps({"did": identity.did, "source": source}))
        else:
            print(identity.did)
        return 0

    path = out if out is not None else key_file_path(settings)
    identity = NodeIdentity.generate()
    write_key_file(path, identity, force=args.force)
    if args.json:
        print(json.dumps({"did": identity.did, "path": str(path)}))
    else:
        print(f"New node key written to {path} (mode 0600). Back it up: it is the node's identity.")
        print(f"DID: {identity.did}")
    if _env_key_set(settings) and out is None:
        print(
            "note: ENCODER_PRIVATE_KEY is set and takes precedence over this file; unset it for "
            "the node to use the new key",
            file=sys.stderr,
        )
    return 0


def _env_key_set(settings: Settings) -> bool:
    secret = settings.encoder_private_key
    return secret is not None and bool(secret.get_secret_value().strip())


def add_identity_commands(subparsers: Any) -> None:
    """Register ``keygen`` on the ``speak-encoder`` sub-command parser."""
    keygen = subparsers.add_parser(
        "keygen",
        help="create the node's Ed25519 key (did:key) or show its DID",
        description="Write a new Ed25519 seed (base64) to DATA_DIR/identity.key with mode 0600 "
        "and print the node's DID. The key itself is never printed. With --show-did, print the "
        "DID of the configured key (ENCODER_PRIVATE_KEY, else the key file) instead.",
    )
    keygen.add_argument(
        "--out", type=Path, metavar="PATH", help="key file (default DATA_DIR/identity.key)"
    )
    keygen.add_argument(
        "--force", action="store_true", help="replace an existing key file (a new identity)"
    )
    keygen.add_argument(
        "--show-did", action="store_true", help="print the DID of the configured key, write nothing"
    )
    keygen.add_argument("--json", action="store_true", help="print one JSON object")
    keygen.set_defaults(func=cmd_keygen)


__all__ = ["add_identity_commands"]
