"""``speak-encoder cid | car | pins``: content addressing and the pending-pin queue.

* ``cid PATH [--cid-version 0|1] [--json]`` prints the CID ``ipfs add`` gives: a file's own CID,
  or for a folder the root of the wrapped upload the encoder makes (docs/protocols.md §6, the same
  as ``ipfs add -r -w`` of the folder's contents).
* ``car PATH -o OUT.car [--cid-version 0|1]`` writes a CARv1 of that DAG (streaming) and prints
  its root.
* ``pins [list] [--all] [--json]`` lists the pending pins; ``pins retry [--force] [--json]``
  retries the due ones (``--force``: every pending one, ignoring the back-off).

Wire it with :func:`add_storage_commands`; each sub-command sets ``func(args, settings) -> int``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from speak_encoder.config import Settings

if TYPE_CHECKING:
    from speak_encoder.node.store import JobStore
    from speak_encoder.storage.pins import PendingPin

# What each command needs is imported inside it: building the parser (every command, `encode`
# included) must not load the IPFS client and its HTTP stack (tests/unit/test_lean_imports.py).


def _cid_version(text: str) -> int:
    if text not in {"0", "1"}:
        raise argparse.ArgumentTypeError("must be 0 or 1")
    return int(text)


def add_storage_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``cid``, ``car`` and ``pins`` on the main parser's sub-parsers."""
    cid = subparsers.add_parser(
        "cid",
        help="print the IPFS CID of a file or folder (as `ipfs add` would give it)",
        description="Compute the CID locally (256 KiB chunks, balanced DAG, CIDv0 by default); "
        "a folder is wrapped as the root, exactly like the encoder's upload.",
    )
    cid.add_argument("path", type=Path, help="file or folder")
    cid.add_argument("--cid-version", type=_cid_version, default=0, help="0 (Qm…) or 1 (bafy…)")
    cid.add_argument("--json", action="store_true", help="print a JSON object")
    cid.set_defaults(func=run_cid)

    car = subparsers.add_parser(
        "car",
        help="export a file or folder as a CARv1 file (for `ipfs dag import`)",
        description="Write the UnixFS DAG of PATH to a CARv1 file, streaming.",
    )
    car.add_argument("path", type=Path, help="file or folder")
    car.add_argument("-o", "--output", type=Path, required=True, help="the .car file to write")
    car.add_argument("--cid-version", type=_cid_version, default=0, help="0 (Qm…) or 1 (bafy…)")
    car.add_argument("--json", action="store_true", help="print a JSON object")
    car.set_defaults(func=run_car)

    pins = subparsers.add_parser(
        "pins",
        help="list or retry the pending pins (failed uploads/pins kept for retry)",
        description="The persistent queue of pins that failed, in DATA_DIR/pins.sqlite3.",
    )
    pins.add_argument("action", nargs="?", choices=["list", "retry"], default="list")
    pins.add_argument("--all", action="store_true", help="list: also done and expired entries")
    pins.add_argument("--force", action="store_true", help="retry: ignore the back-off")
    pins.add_argument("--json", action="store_true", help="print JSON")
    pins.set_defaults(func=run_pins)


def run_cid(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.storage.unixfs import import_path

    entry = import_path(args.path, cid_version=args.cid_version)
    if args.json:
        print(json.dumps({"cid": str(entry), "size": entry.size, "bytes": entry.file_size}))
    else:
        print(entry)
    return 0


def run_car(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.storage.car import write_car

    entry = write_car(args.path, args.output, cid_version=args.cid_version)
    if args.json:
        print(json.dumps({"root": str(entry), "car": str(args.output)}))
    else:
        print(entry)
    return 0


def _describe(pin: PendingPin, now: float) -> str:
    due = pin.next_attempt_at - now
    when = "due now" if due <= 0 else f"next in {due:.0f} s"
    where = f" from {pin.folder}" if pin.folder else ""
    error = f" — {pin.last_error}" if pin.last_error else ""
    return (
        f"#{pin.id} {pin.status:<7} {pin.target:<15} {pin.cid}{where} "
        f"(attempts {pin.attempts}, {when}){error}"
    )


def run_pins(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.node.store import JobStore

    store = JobStore.open(settings)
    try:
        return _pins(args, settings, store)
    finally:
        store.close()


def _pins(args: argparse.Namespace, settings: Settings, store: JobStore) -> int:
    queue = store.pin_queue(settings)
    if args.action == "retry":
        from speak_encoder.storage.targets import retry_pending

        summary = asyncio.run(retry_pending(settings, queue, force=args.force))
        if args.json:
            print(
                json.dumps(
                    {
                        "done": [p.as_dict() for p in summary.done],
                        "failed": [p.as_dict() for p in summary.failed],
                        "expired": [p.as_dict() for p in summary.expired],
                    }
                )
            )
        else:
            print(
                f"retried {summary.attempted}: {len(summary.done)} pinned, "
                f"{len(summary.failed)} still failing, {len(summary.expired)} given up"
            )
            now = time.time()
            for pin in summary.failed + summary.expired:
                print(_describe(pin, now))
        return 0 if not summary.failed and not summary.expired else 1
    entries = queue.entries(None if args.all else "pending")
    if args.json:
        print(json.dumps([p.as_dict() for p in entries]))
        return 0
    if not entries:
        print("no pending pins", file=sys.stderr)
        return 0
    now = time.time()
    for pin in entries:
        print(_describe(pin, now))
    return 0


__all__ = ["add_storage_commands"]
